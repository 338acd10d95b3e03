"""Scale-out: the ftgd and probe stages on the executor's workers give the serial results bit for bit — local
worker processes, submitit's local cluster (real subprocesses) and its debug cluster — and a failed or killed
worker loses nothing finished."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import full, pipeline_params

from taskspace.blimp.data import source_files
from taskspace.config import ExecutorConfig, ProbeConfig
from taskspace.errors import ConfigError
from taskspace.pipeline import stages as pipeline
from taskspace.pipeline.executor import JobFailed, deal, run_jobs
from taskspace.pipeline.progress import RunProgress, run_progress
from taskspace.pipeline.settings import Settings

RUN = ("tiny", "step30")


def _quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def base(tmp_path_factory, blimp) -> tuple[Path, dict]:
    """A project with splits, the tiny model and eval1 (two replicates and a control: four units of tasks)."""
    root = tmp_path_factory.mktemp("executor")
    p = pipeline_params(blimp)
    p["probing"] = full(ProbeConfig(metric="margin", grad_projection=0, eval_batch_size=64, control=True,
                                    ftgd_seeds=(0, 1), split_seeds=(0, 0)))  # fmt: skip
    cwd = os.getcwd()
    os.chdir(root)
    try:
        p["data_files"] = source_files(p["data"]["source"])
        s = Settings.from_dict(p)
        pipeline.stage_prepare(s, _quiet)
        pipeline.stage_tiny(s, "tiny", _quiet)
        pipeline.stage_eval(s, s.run(*RUN), _quiet)
    finally:
        os.chdir(cwd)
    return root, p


def _run(
    base,
    tmp_path,
    executor: dict | None,
    said: list | None = None,
    ftgd: dict | None = None,
    probing: dict | None = None,
) -> dict[str, bytes]:
    """ftgd + probe of one run in a copy of the base project (or again in the same copy, with `ftgd` settings
    changed); every output file's bytes by relative path."""
    root, p = base
    work = tmp_path / (executor or {}).get("kind", "serial")
    if not work.exists():
        shutil.copytree(root, work)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        q = {**p, "executor": {"folder": str(work / "jobs"), "poll_seconds": 0.2, **(executor or {})},
             "ftgd": {**p["ftgd"], **(ftgd or {})}, "probing": {**p["probing"], **(probing or {})},
             "data_files": source_files(p["data"]["source"])}  # fmt: skip
        say = said.append if said is not None else _quiet
        s = Settings.from_dict(q)
        pipeline.stage_ftgd(s, s.run(*RUN), say)
        pipeline.stage_probe(s, s.run(*RUN), say)
    finally:
        os.chdir(cwd)
    out = {}
    for f in sorted((work / "data").rglob("*")):
        if f.is_file() and f.name != "run.json" and f.relative_to(work / "data").parts[0] in ("ftgd", "probe"):
            out[str(f.relative_to(work))] = f.read_bytes()  # run.json: when and where, not what
    hidden = [str(f.relative_to(work)) for f in (work / "data").rglob(".*")]
    assert not hidden, f"stash, temp or link files inside the outputs (DVC would commit them): {hidden[:5]}"
    return out


@pytest.fixture(scope="module")
def serial(base, tmp_path_factory) -> dict[str, bytes]:
    return _run(base, tmp_path_factory.mktemp("serial"), None)


def _same(a: dict[str, bytes], b: dict[str, bytes]) -> None:
    assert sorted(a) == sorted(b)
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, f"differ from serial: {differ[:5]}"


def test_two_local_cpu_workers_match_serial_bit_for_bit(base, serial, tmp_path):
    said: list[str] = []
    got = _run(base, tmp_path, {"kind": "local", "devices": ["cpu", "cpu"]}, said)
    _same(serial, got)
    assert any(line.startswith("tiny@step30: ftgd") and "on 2 local worker(s)" in line for line in said)
    assert any("tiny@step30: probe 12/12 tasks" in line for line in said)  # 3 tasks × (2 replicates + their controls)
    assert len(list((tmp_path / "local" / "jobs" / "ftgd" / "tiny-step30").glob("job-*.log"))) == 2
    progress = run_progress(Settings.from_dict(base[1], base[0] / "params.yaml"), tmp_path / "local" / "data")
    step30 = [r for r in progress if r.label == "tiny@step30"]
    assert step30 == [RunProgress("tiny@step30", 12, 12, 12)]  # read from the folders, as the TUI does


def test_first_order_alone_on_local_workers_runs_no_eval2_and_matches_serial(base, tmp_path):
    """With `probing.transfer: linear` the workers tune but do no eval2: a Gemma 67-task run once spent its workers
    on the T² exact passes the setting exists to skip. Its spaces are serial's bit for bit."""
    linear = {"transfer": "linear"}
    serial_lin = _run(base, tmp_path / "s", None, probing=linear)
    said: list[str] = []
    got = _run(base, tmp_path / "l", {"kind": "local", "devices": ["cpu", "cpu"]}, said, probing=linear)
    _same(serial_lin, got)
    assert not [k for k in got if "eval2" in Path(k).name], "eval2 written for a first-order-only run"
    assert any("ftgd" in line and "on 2 local worker(s)" in line for line in said)
    assert not any("probe" in line and "worker(s)" in line for line in said)
    assert any(k.endswith("matrices.npz") for k in got)


@pytest.mark.parametrize("cluster", ["local", "debug"])
def test_submitit_clusters_match_serial(base, serial, tmp_path, cluster):
    got = _run(base, tmp_path, {"kind": "slurm", "slurm": {"cluster": cluster, "jobs": 2, "gpus_per_job": 0}})
    _same(serial, got)


@pytest.fixture(scope="module")
def serial_rerun(base, tmp_path_factory) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Serial ftgd + probe, then again with other FTGD settings in the same project: the second run restores every
    task from the resume stash onto the very file it was stashed from (the workspace kept it), then retunes it."""
    work = tmp_path_factory.mktemp("rerun-serial")
    return _run(base, work, None), _run(base, work, None, ftgd={"steps": 5})


RERUN_EXECUTORS = [
    {"kind": "local", "devices": ["cpu", "cpu"]},
    {"kind": "slurm", "slurm": {"cluster": "local", "jobs": 2, "gpus_per_job": 0}},
]


@pytest.mark.slow
@pytest.mark.parametrize("executor", RERUN_EXECUTORS, ids=["local", "slurm-local"])
def test_a_rerun_with_other_settings_leaves_no_link_file_and_matches_serial(serial_rerun, base, tmp_path, executor):
    """No `.delta.safetensors.link` / `.grad.npy.link` (nor any temp file) in the task folders after either run
    (`_run` checks: DVC would commit them), and the workers' results are serial's, byte for byte, file for file."""
    first, again = _run(base, tmp_path, executor), _run(base, tmp_path, executor, ftgd={"steps": 5})
    assert sorted(first) == sorted(again) == sorted(serial_rerun[1])  # nothing left over from the first settings
    _same(serial_rerun[0], first)
    _same(serial_rerun[1], again)


def test_a_stage_whose_worker_is_pinned_to_a_missing_gpu_fails_in_one_line(base, tmp_path, monkeypatch):
    """The real worker checks its GPU before loading the model: one line naming the job, the GPU and the fix, not a
    model loaded onto the CPU (or an error about another setting)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks a machine without a GPU")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # the stage was given GPU 0; torch finds none
    with pytest.raises(JobFailed) as e:
        _run(base, tmp_path, {"kind": "local", "devices": ["cuda:0"]})
    msg = str(e.value)
    assert "\n" not in msg
    pinned = r"local worker pinned to GPU 0 \(executor.devices, CUDA_VISIBLE_DEVICES=0\), but "
    assert re.match(rf"job 1 of 1 \(12 task\(s\): .*\) failed: JobFailed: {pinned}.*executor.devices=\[cpu\]", msg), msg


def test_serial_params_hash_ignores_the_executor(base):
    """Switching executor changes no stage's settings: DVC outputs stay valid."""
    root, p = base
    a = Settings.from_dict(p, root / "params.yaml")
    b = Settings.from_dict({**p, "executor": {"kind": "slurm", "slurm": {"jobs": 3}}}, root / "params.yaml")
    assert b.executor.slurm.jobs == 3 and a.executor.kind == "serial"
    run = a.run(*RUN)
    for stage in ("eval", "ftgd", "probe"):
        assert a.stamp(stage, run) == b.stamp(stage, run)
    assert a.settings_hash(run) == b.settings_hash(run)


def _explode(job: int) -> None:
    if job == 1:
        raise RuntimeError("task wh_island: out of memory")
    Path(f"done-{job}").write_text("ok")


def test_a_failed_worker_is_named_with_its_tasks_and_log_and_the_others_finish(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = ExecutorConfig(kind="local", devices=("cpu", "cpu"), poll_seconds=0.1)
    with pytest.raises(JobFailed) as e:
        run_jobs(cfg, _explode, [0, 1], ["a, b", "wh_island"], tmp_path / "jobs")
    msg = str(e.value)
    assert "job 2 of 2 (wh_island) failed: RuntimeError: task wh_island: out of memory" in msg
    assert str(tmp_path / "jobs" / "job-2.log") in msg and "Finished tasks are kept" in msg
    assert (tmp_path / "done-0").read_text() == "ok"
    assert "Traceback" in (tmp_path / "jobs" / "job-2.log").read_text()


def test_submitit_failure_names_the_job_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))  # the jobs unpickle _explode from this module
    cfg = ExecutorConfig(kind="slurm", poll_seconds=0.1, slurm={"cluster": "local", "gpus_per_job": 0})
    with pytest.raises(JobFailed, match=r"job 2 of 2 \(wh_island\) failed: .*out of memory; log: .*\.err"):
        run_jobs(cfg, _explode, [0, 1], ["a", "wh_island"], tmp_path / "jobs")


def test_deal_spreads_tasks_round_robin():
    assert deal(list("abcde"), 2) == [["a", "c", "e"], ["b", "d"]]
    assert deal(list("ab"), 4) == [["a"], ["b"]]  # never an empty shard
    assert deal([], 3) == []


def test_bad_executor_settings_are_one_line():
    with pytest.raises(ConfigError, match=r"executor.kind = 'gpus' is invalid: use one of serial, local, slurm"):
        ExecutorConfig(kind="gpus")
    with pytest.raises(ConfigError, match=r"executor.devices = 'cuda:0'"):
        ExecutorConfig(devices="cuda:0")
    with pytest.raises(ConfigError, match=r"did you mean 'executor.slurm.partition'"):
        ExecutorConfig(slurm={"partiton": "gpu"})


def _workers(pid: int) -> list[int]:
    """The spawned worker processes of a stage process (not multiprocessing's resource tracker)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    found = []
    for w in map(int, out.split()):
        try:
            if "spawn_main" in Path(f"/proc/{w}/cmdline").read_text(errors="replace"):
                found.append(w)
        except OSError:  # exited meanwhile
            pass
    return found


@pytest.mark.slow
def test_a_killed_worker_fails_the_stage_in_one_line_and_the_rerun_does_only_the_rest(base, tmp_path, monkeypatch):
    """SIGKILL one worker after the first task is finished: the stage fails naming that job's tasks and log;
    the rerun tunes only what is missing and leaves the finished tasks' files as they were."""
    root, p = base
    work = tmp_path / "killed"
    shutil.copytree(root, work)
    monkeypatch.chdir(work)
    q = {**p, "executor": {"kind": "local", "devices": ["cpu", "cpu"], "poll_seconds": 0.2},
         "ftgd": {**p["ftgd"], "steps": 40}, "data_files": source_files(p["data"]["source"])}  # fmt: skip
    (work / "params.yaml").write_text(yaml.safe_dump(q))
    ftgd = work / "data" / "ftgd" / "tiny" / "step30"
    cmd = [str(Path(sys.executable).parent / "taskspace"), "stage", "ftgd", "--model", "tiny", "--revision", "step30"]
    log = tmp_path / "stage.log"
    proc = subprocess.Popen(cmd, cwd=work, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline and not list(ftgd.rglob("ftgd.json")) and proc.poll() is None:
        time.sleep(0.05)
    victim = _workers(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    assert proc.wait(timeout=600) != 0
    said = log.read_text()
    assert "was killed (signal 9)" in said and "job-" in said and "Finished tasks are kept" in said, said
    kept = {f: f.read_bytes() for f in ftgd.rglob("ftgd.json")}
    assert 0 < len(kept) < 12  # the other worker's tasks and the victim's finished ones
    res = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = (res.stdout + res.stderr).splitlines()
    tuned = sum(int(line.split("tuned ")[1].split(" ")[0]) for line in lines if " tuned " in line)
    assert tuned == 12 - len(kept)  # 3 tasks × 4 units, the finished ones kept
    assert all(f.read_bytes() == b for f, b in kept.items())


def test_stopping_the_stage_stops_its_local_workers(tmp_path):
    """SIGTERM to the stage process (DVC or a user stopping it) terminates its worker processes too."""
    code = (
        "import time; from pathlib import Path; from taskspace.config import ExecutorConfig; "
        "from taskspace.pipeline.executor import run_jobs; "
        f"run_jobs(ExecutorConfig(kind='local', devices=('cpu', 'cpu')), time.sleep, [120, 120], ['a', 'b'], "
        f"Path({str(tmp_path)!r}) / 'jobs')"
    )
    stage = subprocess.Popen([sys.executable, "-c", code])
    deadline, workers = time.time() + 60, []
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.2)
        workers = _workers(stage.pid)
    assert len(workers) == 2
    stage.send_signal(signal.SIGTERM)
    assert stage.wait(timeout=30) != 0
    time.sleep(0.5)
    alive = [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text()]
    assert not alive, f"workers {alive} outlived the stage"
