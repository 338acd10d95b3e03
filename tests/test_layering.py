"""The layers of architecture.md, checked: import-linter's contracts (pyproject.toml) over every import, those
inside functions included, and what is actually imported at run time."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_in(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.split()


def lint_imports(config: Path = ROOT / "pyproject.toml") -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "lint-imports"
    cmd = [str(exe) if exe.exists() else shutil.which("lint-imports"), "--config", str(config), "--no-cache"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def test_import_contracts_are_kept():
    """Packages by role, no cycles, the TUI never loads a model, the maths never knows where results are."""
    res = lint_imports()
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "Contracts: 8 kept, 0 broken." in res.stdout


def test_a_reintroduced_cycle_is_caught(tmp_path):
    """The contracts are live: the pipeline's old stages ↔ shards cycle (a worker importing from the stage
    module) breaks the acyclic contract, counted even as an import inside a function."""
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "taskspace", tree / "taskspace", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "taskspace_tui", tree / "taskspace_tui", ignore=shutil.ignore_patterns("__pycache__"))
    shards = tree / "taskspace" / "pipeline" / "shards.py"
    shards.write_text(shards.read_text() + "\n\ndef _late():\n    from taskspace.pipeline import stages  # noqa\n")
    shutil.copy(ROOT / "pyproject.toml", tree)
    exe = Path(sys.executable).parent / "lint-imports"
    res = subprocess.run([str(exe), "--no-cache"], cwd=tree, capture_output=True, text=True,
                         env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert res.returncode == 1, res.stdout[-2000:]
    assert "No import cycles, inside any package BROKEN" in res.stdout
    assert "in taskspace.pipeline" in res.stdout and ".stages -> .shards" in res.stdout  # the cycle, named


def test_library_imports_without_textual():
    """taskspace/ is the core: it must import (CLI included) without pulling in the TUI toolkit."""
    mods = "taskspace.cli, taskspace.index, taskspace.pipeline.stages, taskspace.method.probing, taskspace.stats.spaces"
    code = f"import sys, {mods}; print('textual' in sys.modules, 'taskspace_tui' in sys.modules)"
    assert imported_in(code) == ["False", "False"]


def test_tui_never_loads_torch_or_a_model():
    """The TUI reads the index; it never imports torch or transformers (a model would take seconds and GBs)."""
    screens = ", ".join(f"taskspace_tui.screens.{s}" for s in ("runs", "heatmap", "compare", "task", "pipeline"))
    code = f"import sys, taskspace_tui.app, {screens}; print('torch' in sys.modules, 'transformers' in sys.modules)"
    assert imported_in(code) == ["False", "False"]


def test_cli_answers_help_without_torch():
    assert imported_in("import sys, taskspace.cli; print('torch' in sys.modules)") == ["False"]
