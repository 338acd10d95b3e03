"""The documentation is true: the site builds strictly, every CLI command and params.yaml key is in the reference,
and the tutorial's and the sharing guide's commands, as written, run on a fresh copy of the project (the offline
profile) and a second clone, ending in a TUI that lists the runs and a `dvc status` with nothing to run."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

DOCS = ROOT / "docs"
VENV = ROOT / ".venv"
FENCE = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def bash_blocks(page: Path) -> list[str]:
    """The ```bash blocks of a page, in order."""
    return FENCE.findall(page.read_text())


def run_block(block: str, cwd: Path, env: dict, **subs: str) -> str:
    """Run one documented block as a bash script (stopping at the first failing line), placeholders `<name>`
    replaced; the interactive TUI is left out (the test drives it with its Pilot instead)."""
    for name, value in subs.items():
        block = block.replace(f"<{name}>", value)
    lines = [line for line in block.splitlines() if not line.rstrip().endswith("taskspace tui")]
    assert not re.search(r"<[a-z-]+>", "\n".join(lines)), f"an unreplaced placeholder in:\n{block}"
    res = subprocess.run(["bash", "-euxo", "pipefail", "-c", "\n".join(lines)], cwd=cwd, env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, f"documented commands failed in {cwd}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def test_the_site_builds_strictly(tmp_path):
    mkdocs = VENV / "bin" / "mkdocs"
    if not mkdocs.exists():
        pytest.fail("mkdocs is missing from .venv: scripts/setup.sh installs it (the docs extra)")
    res = subprocess.run([str(mkdocs), "build", "--strict", "-q", "-d", str(tmp_path / "site")], cwd=ROOT,
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr[-4000:]
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    from taskspace.cli import main

    for name, command in main.commands.items():
        if not command.hidden:
            assert f"taskspace {name}" in cli, f"the CLI reference lacks `taskspace {name}`"
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "load_space" in api and "Index" in api


def test_every_params_key_is_in_the_reference():
    from taskspace import config

    page = (DOCS / "reference" / "params.md").read_text()
    sections = {
        "data": config.DataConfig, "ftgd": config.FTGDConfig, "probing": config.ProbeConfig,
        "analysis": config.AnalysisConfig, "compute": config.ComputeConfig, "executor": config.ExecutorConfig,
        "executor.slurm": config.SlurmConfig, "tiny_models.<name>": config.TinyConfig,
        "models.<name>": config.ModelEntry,
    }  # fmt: skip
    missing = [
        f"{where}.{f.name}"
        for where, cls in sections.items()
        for f in dataclasses.fields(cls)
        if f.name != "name" and f"`{where}.{f.name}`" not in page
    ]
    assert not missing, f"docs/reference/params.md lacks {missing}"


@pytest.mark.slow
async def test_the_tutorial_and_the_sharing_recipe_run_as_written(tmp_path, blimp):
    """docs/tutorial.md on a fresh copy of the project (a clone of a bare 'hub' repository, as from GitHub), then
    docs/how-to/sharing.md: its first block in that copy, its second in a new clone, whose TUI lists the
    experiment's runs and whose `dvc status` is clean."""
    stamp = (VENV / ".taskspace-setup").read_text().strip() if (VENV / ".taskspace-setup").exists() else ""
    want = subprocess.run("cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16", shell=True, cwd=ROOT,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    if stamp != want:  # else scripts/setup.sh in the copies would reinstall into the shared .venv
        pytest.fail(".venv is not set up for this pyproject.toml: run scripts/setup.sh first")
    env = {
        **os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "TASKSPACE_BLIMP": str(blimp),
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }  # fmt: skip
    hub, project = tmp_path / "hub.git", tmp_path / "project"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")  # fmt: skip
    src = tmp_path / "src"
    for name in filter(None, files):
        if (ROOT / name).is_file() and not name.startswith(("data/", "carry/")):  # outputs and bundles stay behind
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    git = ["git", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", "--bare", str(hub)], check=True)
    for cmd in ([*git, "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "taskspace"],
                ["git", "push", "-q", str(hub), "HEAD:main"]):  # fmt: skip
        subprocess.run(cmd, cwd=src, env=env, check=True, capture_output=True)
    subprocess.run(["git", "clone", "-q", str(hub), str(project)], env=env, check=True)
    (project / ".venv").symlink_to(VENV)  # set up already: setup.sh finds its stamp and installs nothing

    for block in bash_blocks(DOCS / "tutorial.md"):
        run_block(block, project, env)
    figures = project / "figures"
    for name in ("smollm2-transfer.png", "smollm2.md", "smollm2.heatmap.png", "tiny-stability.png"):
        assert (figures / name).stat().st_size > 1000, name
    exps = subprocess.run([str(VENV / "bin" / "taskspace"), "exps", "--format", "csv"], cwd=project, env=env,
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "tiny-lr3e-3" in exps and "models.tiny.ftgd.lr" in exps

    compute, explore = bash_blocks(DOCS / "how-to" / "sharing.md")
    run_block(compute, project, env, store=str(tmp_path / "store"), experiment="shared-offline", profile="offline")
    explore = explore.replace("./scripts/setup.sh", f"ln -s {VENV} .venv && ./scripts/setup.sh")
    out = run_block(explore, tmp_path, env, repository=str(hub), experiment="shared-offline")
    assert "Data and pipelines are up to date" in out
    clone = tmp_path / "taskspace-results"

    from taskspace_tui.app import TaskspaceApp
    from taskspace_tui.screens.runs import RunsScreen

    app = TaskspaceApp(db=clone / "data" / "index" / "taskspace.duckdb", project=clone)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        labels = {r["label"] for r in app.screen.rows}
        assert {"smollm2@main", "tiny@step100", "tiny@step200", "tiny@step300"} <= labels


def test_every_index_table_and_view_is_in_the_reference():
    from taskspace.index import schema

    page = (DOCS / "reference" / "index-schema.md").read_text()
    missing = [n for n in (*schema.TABLES, *schema.VIEW_NAMES) if f"| `{n}` |" not in page]
    assert not missing, f"docs/reference/index-schema.md lacks {missing}"
