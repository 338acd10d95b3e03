"""The real pipeline: dvc repro / exp run / push / pull on a temp git repo with the tiny model, and the index."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
import yaml
from conftest import PIPELINE_N_EVAL as N_EVAL
from conftest import PIPELINE_TASKS as TASKS
from conftest import sh

from taskspace.index import Index
from taskspace.pipeline.dvcfile import stamp


@pytest.fixture(scope="module")
def repo(pipeline_repo):
    return pipeline_repo


def counts(db: Path) -> dict:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("runs", "tasks", "scores", "similarities", "analysis")
        }
    finally:
        con.close()


def test_repro_builds_index_with_expected_rows(repo):
    c = counts(repo / "data" / "index" / "taskspace.duckdb")
    runs, t = 2, len(TASKS)
    assert c["runs"] == runs and c["tasks"] == t
    assert c["scores"] == runs * (t * N_EVAL + t * t * N_EVAL)  # eval1 + eval2 of each tuned model
    # transfer, normalised, margin, first order, gradient, sharing; each transfer cell's p, q and interval
    assert c["similarities"] == runs * 10 * t * t
    assert c["analysis"] > 0
    metrics = json.loads((repo / "data" / "analyze" / "metrics.json").read_text())
    assert set(metrics) == {"tiny@step30", "tiny@step60"}
    for m in metrics.values():  # probing.transfer both: first order beside exact, with their agreement
        assert -1 <= m["linear_pearson"] <= 1 and -1 <= m["linear_spearman"] <= 1
    idx = Index(repo / "data" / "index" / "taskspace.duckdb")
    try:
        run = idx.runs()[0]
        assert "transfer_linear" in idx.kinds(run["run_id"])
        stored = idx.analysis(run["run_id"])["transfer_linear"]["agreement_pearson"]
        assert stored == pytest.approx(metrics[run["label"]]["linear_pearson"])
        _, q = idx.matrix(run["run_id"], "transfer_q")  # every transfer cell tested on its own pairs
        off = ~np.eye(len(q), dtype=bool)
        assert np.isfinite(q[off]).all() and np.isnan(np.diag(q)).all()
        share = metrics[run["label"]]["transfer_cells_q05"]
        assert share == pytest.approx((q[off] < 0.05).mean())
    finally:
        idx.close()
    shown = sh(repo, "taskspace", "metrics").stdout  # what the main job prints
    for run, m in metrics.items():
        assert run in shown and f"{m['transfer_mantel_r']:+.3f}" in shown and f"{m['transfer_mantel_p']:.3f}" in shown


def test_finished_work_carried_to_a_fresh_clone_is_used_not_redone(repo, tmp_path):
    """A run's finished eval2 travels as a bundle without its deltas: a fresh clone (another machine, nothing
    built) imports it, `dvc repro` remakes the deltas bit for bit and keeps every carried eval2. (Run before any
    experiment: the stash holds what the last run of each task wrote.)"""
    bundle = tmp_path / "carry.tar.gz"
    said = " ".join(sh(repo, "taskspace", "resume", "export", str(bundle)).stderr.split())  # unwrapped
    assert f"{2 * 2 * len(TASKS)} files" in said and "delta.safetensors and grad.npy left out" in said
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert sum(n.endswith("/eval2.parquet") for n in names) == 2 * len(TASKS)
    assert not [n for n in names if n.endswith((".safetensors", ".npy"))]
    clone = repo.parent / f"clone-{tmp_path.name}"  # beside the repo: its relative data_files path holds there too
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    assert "files added to .taskspace/resume" in sh(clone, "taskspace", "resume", "import", str(bundle)).stderr
    assert "already there kept" in sh(clone, "taskspace", "resume", "import", str(bundle)).stderr  # nothing lost
    res = sh(clone, "dvc", "repro")
    out = " ".join((res.stdout + res.stderr).split())
    for rev in ("step30", "step60"):
        assert f"tiny@{rev}: eval2 of {len(TASKS)} of {len(TASKS)} tasks finished earlier: kept" in out
        a, b = (np.load(r / "data" / "probe" / "tiny" / rev / "matrices.npz") for r in (repo, clone))
        assert set(a.files) == set(b.files)
        assert all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a.files)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bundle.read_bytes()[:200])
    res = sh(clone, "taskspace", "resume", "import", str(bad), check=False)
    assert res.returncode != 0 and "truncated or not a .tar.gz bundle" in res.stderr and "Traceback" not in res.stderr


def test_second_repro_does_nothing(repo):
    res = sh(repo, "dvc", "repro")
    assert "Running stage" not in res.stdout
    assert "up to date" in res.stdout


def test_reindexing_is_idempotent(repo):
    db = repo / "data" / "index" / "taskspace.duckdb"
    before = counts(db)
    for _ in range(2):
        sh(repo, "taskspace", "index", "--db", str(db))
    assert counts(db) == before
    stamp = db.stat().st_mtime_ns
    shown = sh(repo, "taskspace", "index", "--counts").stdout  # read-only: what main.sh shows
    assert db.stat().st_mtime_ns == stamp and f"{before['scores']:,}" in shown
    sh(repo, "dvc", "commit", "-f", "index")  # an index rebuilt by hand is recorded like any output (README)
    assert "index" not in sh(repo, "dvc", "status").stdout


def test_push_delete_cache_pull_restores_deltas(repo):
    delta = repo / "data" / "ftgd" / "tiny" / "step60" / "tasks" / TASKS[0] / "delta.safetensors"
    content = delta.read_bytes()
    metrics = (repo / "data" / "analyze" / "metrics.json").read_bytes()
    sh(repo, "dvc", "push")
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data" / "ftgd")
    shutil.rmtree(repo / "data" / "analyze")
    sh(repo, "dvc", "pull")
    assert delta.read_bytes() == content
    assert (repo / "data" / "analyze" / "metrics.json").read_bytes() == metrics  # metrics and plots are cached
    assert "up to date" in sh(repo, "dvc", "status").stdout  # explore elsewhere: nothing left to compute


def test_compute_here_explore_there(repo):
    """Push from the machine that computed; clone and pull on another: index, metrics and plots are there at
    once and nothing is left to compute. (The clone sits beside the project, so the relative BLiMP folder it
    depends on is found the same way.)"""
    sh(repo, "git", "add", "dvc.lock", "params.yaml")  # what DVC asks to commit (outputs stay out of Git)
    sh(repo, "git", "commit", "-qm", "computed", check=False)  # nothing new when run alone
    sh(repo, "dvc", "push")
    clone = repo.parent / "clone"
    sh(repo.parent, "git", "clone", "-q", str(repo), str(clone))
    sh(clone, "dvc", "pull")
    assert "up to date" in sh(clone, "dvc", "status").stdout
    idx = Index(clone / "data" / "index" / "taskspace.duckdb")
    try:
        assert len(idx.runs()) == 2
    finally:
        idx.close()
    shown = sh(clone, "taskspace", "metrics").stdout
    assert "tiny@step30" in shown and "tiny@step60" in shown
    assert (clone / "data" / "analyze" / "plots" / "stability" / "tiny.csv").exists()
    shown = json.loads(sh(clone, "dvc", "plots", "show", "--json").stdout)["data"]
    images = [k for k in shown if k.endswith(".png")]
    assert any("tiny-transfer.png" in k for k in images) and any("tiny-stability.png" in k for k in images)


def test_exp_run_variant_shows_in_exp_show(repo):
    sh(repo, "dvc", "exp", "run", "-n", "sparse20", "-S", "ftgd.sparsity=0.2")
    rows = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    exps = {}
    for commit in rows:
        for exp in [commit] + [e for ref in commit.get("experiments") or [] for e in ref.get("revs", [])]:
            data = exp.get("data") or {}
            name = exp.get("name") or data.get("name") or exp.get("rev")
            metrics = (data.get("metrics") or {}).get("data/analyze/metrics.json", {}).get("data", {})
            if metrics:
                exps[name] = metrics
    assert "sparse20" in exps and len(exps) >= 3  # workspace (= the applied experiment), baseline, sparse20
    assert exps["workspace"] == exps["sparse20"]
    base = next(v for k, v in exps.items() if k not in ("sparse20", "workspace"))
    assert exps["sparse20"] != base
    shown = json.loads(sh(repo, "taskspace", "exps", "--format", "json").stdout)  # readable: what differs
    sparse = [r for r in shown if r["experiment"] == "sparse20"]
    assert {r["run"] for r in sparse} == {"tiny@step30", "tiny@step60"} and all(
        r["ftgd.sparsity"] == 0.2 for r in sparse
    )
    assert {k for k in sparse[0] if "." in k} == {"ftgd.sparsity"}  # only the setting that differs, no runs.*
    assert sparse[0]["transfer_mantel_r"] == exps["sparse20"]["tiny@step30"]["transfer_mantel_r"]
    table = sh(repo, "taskspace", "exps").stdout  # 80 columns: the setting by its last name
    assert "sparsity" in table and "sparse20" in table and "0.2" in table
    # the index keeps both variants: runs are keyed by their params hash
    c = counts(repo / "data" / "index" / "taskspace.duckdb")
    assert c["runs"] == 4


def kill_after_first_task(repo: Path, cmd: list[str], first: Path, timeout: float = 300) -> None:
    """Start a DVC command and SIGKILL it (and its stages) as soon as the first task's record changes."""
    old = first.read_text()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + timeout
    while time.time() < deadline and (not first.exists() or first.read_text() == old):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.read_text() != old, "first task did not finish before the deadline"


def test_killed_stage_resumes_without_redoing_finished_tasks(repo):
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["ftgd"]["steps"] = 40  # slow enough to be caught mid-way
    (repo / "params.yaml").write_text(yaml.safe_dump(p))
    first = repo / "data" / "ftgd" / "tiny" / "step30" / "tasks" / TASKS[0] / "ftgd.json"
    kill_after_first_task(repo, ["dvc", "repro"], first)
    done = first.read_text()
    last = repo / "data" / "ftgd" / "tiny" / "step60" / "tasks" / TASKS[-1] / "ftgd.json"
    want = {rev: stamp("ftgd", p, f"tiny-{rev}") for rev in ("step30", "step60")}
    assert json.loads(done)["config"] == want["step30"]
    assert json.loads(last.read_text())["config"] != want["step60"]  # killed before the last task
    res = sh(repo, "dvc", "repro")
    tuned = [line for line in (res.stdout + res.stderr).splitlines() if "tuned" in line]
    assert tuned[0].startswith("tiny@step30: tuned") and f" of {len(TASKS)} tasks" in tuned[0]
    assert int(tuned[0].split("tuned ")[1].split(" ")[0]) < len(TASKS)  # finished work kept, not redone
    assert first.read_text() == done and json.loads(last.read_text())["config"] == want["step60"]


def test_adding_a_revision_computes_only_that_revision(repo):
    db = repo / "data" / "index" / "taskspace.duckdb"
    runs_before = counts(db)["runs"]
    kept = [
        repo / "data" / stage / "tiny" / rev / sub
        for rev in ("step30", "step60")
        for stage, sub in (("eval", "eval1.parquet"), ("ftgd", f"tasks/{TASKS[0]}/ftgd.json"))
    ] + [repo / "data" / "probe" / "tiny" / "step60" / "tasks" / TASKS[1] / "eval2.parquet"]
    stamps = {f: f.stat().st_mtime_ns for f in kept}
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["models"]["tiny"]["revisions"] = ["step0", "step30", "step60"]  # the tiny model also saved step0
    (repo / "params.yaml").write_text(yaml.safe_dump(p))
    analysis = (repo / "data" / "analyze" / "analysis.json").read_bytes()
    stale = sh(repo, "dvc", "repro", check=False)  # `runs` no longer matches `models`: said, with the fix
    assert stale.returncode != 0
    assert "`runs` does not match `models` (missing tiny-step0)" in stale.stdout + stale.stderr
    # the check stage runs first: nothing was deleted or recomputed before it stopped
    assert (repo / "data" / "analyze" / "analysis.json").read_bytes() == analysis
    sh(repo, "taskspace", "stage", "runs")
    res = sh(repo, "dvc", "repro")
    ran = {line.split("'")[1] for line in res.stdout.splitlines() if line.startswith("Running stage")}
    assert {"eval@tiny-step0", "ftgd@tiny-step0", "probe@tiny-step0", "analyze", "index"} <= ran
    assert not ran & {f"{s}@tiny-{r}" for s in ("eval", "ftgd", "probe") for r in ("step30", "step60")}
    assert {f: f.stat().st_mtime_ns for f in kept} == stamps  # finished revisions are not recomputed
    assert (repo / "data" / "probe" / "tiny" / "step0" / "matrices.npz").exists()
    assert counts(db)["runs"] == runs_before + 1  # the other revisions keep their run keys: no duplicates


def test_killed_exp_run_resumes_without_redoing_finished_tasks(repo):
    """`dvc exp run` resets outputs to the baseline before it runs; finished tasks come back from
    .taskspace/resume instead of being tuned again."""
    first = repo / "data" / "ftgd" / "tiny" / "step30" / "tasks" / TASKS[0] / "ftgd.json"
    cmd = ["dvc", "exp", "run", "-S", "ftgd.steps=50"]
    kill_after_first_task(repo, cmd, first)
    res = sh(repo, *cmd)
    assert f"tiny@step30: tuned {len(TASKS) - 1} of {len(TASKS)} tasks" in res.stdout + res.stderr


def test_stages_run_from_the_venvs_dvc_without_activating_it(repo):
    """dvc.yaml runs ./scripts/ts, which finds the project's .venv: `.venv/bin/dvc repro` with a bare PATH."""
    venv = repo / ".venv" / "bin"
    venv.mkdir(parents=True, exist_ok=True)
    (venv / "taskspace").unlink(missing_ok=True)
    (venv / "taskspace").symlink_to(Path(sys.executable).parent / "taskspace")
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["analysis"]["permutations"] = 150  # reruns check, analyze and index
    (repo / "params.yaml").write_text(yaml.safe_dump(p))
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro"], cwd=repo, env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Running stage 'analyze'" in res.stdout


def test_a_models_ftgd_override_reruns_its_tuning_not_its_eval1(repo):
    """eval1 depends on what a run loads (spec, revision, weights, prefix), not on the whole run entry: a per-model
    FTGD override reruns ftgd and probe, never eval; and re-indexing with nothing new keeps the index's md5."""
    p = yaml.safe_load((repo / "params.yaml").read_text())
    # below the shared lr: earlier tests raised ftgd.steps, and the repo stays valid for the tests after this one
    p["models"]["tiny"]["ftgd"] = {"lr": 0.0005}
    (repo / "params.yaml").write_text(yaml.safe_dump(p))
    sh(repo, "taskspace", "stage", "runs")
    out = sh(repo, "dvc", "repro").stdout
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert {"ftgd@tiny-step30", "probe@tiny-step30"} <= ran and not [s for s in ran if s.startswith("eval@")], ran
    lock = (repo / "dvc.lock").read_text()
    sh(repo, "dvc", "repro", "-s", "-f", "index")  # this stage alone, rerun
    assert (repo / "dvc.lock").read_text() == lock  # the rebuilt index is the same file: no new md5, no cache object
