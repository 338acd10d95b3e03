"""Where workers run: local workers stay on the GPUs the stage was given (its CUDA_VISIBLE_DEVICES, indices or
UUID/MIG names, several workers per GPU), a worker that expected a GPU and has none fails in one line, jobs
submitted from inside a SLURM job do not inherit its settings, and a rerun deals with the jobs a killed submitter
left running. Real worker processes and submitit's local cluster throughout; no GPU is needed, since what is
checked is the environment each worker gets."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from taskspace.config import ExecutorConfig
from taskspace.errors import ConfigError
from taskspace.pipeline.executor import SUBMITTED, JobFailed, local_devices, map_devices, pin, run_jobs, visible_gpus

UUID = "GPU-8f6c0a1e-53d2-4c1b-9a0e-2b1c3d4e5f60"
MIG = "MIG-GPU-8f6c0a1e-53d2-4c1b-9a0e-2b1c3d4e5f60/1/0"


def _no_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks a machine without a GPU")


# ---- which GPU each local worker gets ----------------------------------------------------------------------


def test_cuda_i_is_the_ith_gpu_the_stage_sees():
    assert map_devices(["cuda:0", "cuda:1"], "2,3") == ["cuda:2", "cuda:3"]
    assert map_devices([], "2, 3") == ["cuda:2", "cuda:3"]  # every visible GPU
    assert map_devices(["cuda:0", "cuda:0", "cpu"], "2,3") == ["cuda:2", "cuda:2", "cpu"]  # two workers share GPU 2
    assert map_devices(["cuda:1", "cuda"], None, count=2) == ["cuda:1", "cuda:0"]  # nothing set: the GPUs themselves
    assert map_devices([], None, count=2) == ["cuda:0", "cuda:1"]
    assert map_devices(["cuda:1", "cuda:0"], f"{UUID},{MIG}") == [f"cuda:{MIG}", f"cuda:{UUID}"]  # names carried
    assert map_devices([UUID, f"cuda:{MIG}", "MIG-5c2e"], "0") == [f"cuda:{UUID}", f"cuda:{MIG}", "cuda:MIG-5c2e"]
    assert visible_gpus("0,1,-1,2") == ["0", "1"]  # as CUDA reads it: up to the first entry it cannot parse
    assert visible_gpus("") == [] and visible_gpus(None) is None


def test_a_gpu_beyond_the_visible_ones_is_refused_in_one_line(monkeypatch):
    with pytest.raises(ConfigError, match=r"^executor.devices: cuda:2 is not visible here: this process sees "
                                          r"cuda:0 = GPU 2, cuda:1 = GPU 3 \(CUDA_VISIBLE_DEVICES=2,3\)$"):  # fmt: skip
        map_devices(["cuda:0", "cuda:2"], "2,3")
    with pytest.raises(ConfigError, match=r"no executor.devices, and no GPU is visible \(CUDA_VISIBLE_DEVICES=-1\)"):
        map_devices([], "-1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    with pytest.raises(ConfigError, match=r"cuda:1 is not visible here: this process sees cuda:0 = GPU 5 "):
        local_devices(ExecutorConfig(kind="local", devices=["cuda:1"]))
    assert ExecutorConfig(devices=[UUID, MIG, "cuda:0", "cuda:0"]).devices == (UUID, MIG, "cuda:0", "cuda:0")
    with pytest.raises(ConfigError, match=r"executor.devices = \['gpu0'\] is invalid"):
        ExecutorConfig(devices=["gpu0"])


def _report(job: tuple[str, str]) -> None:
    """A local worker: pinned as shards.work pins it, it writes down the CUDA_VISIBLE_DEVICES it got."""
    device, out = job
    with contextlib.suppress(JobFailed):  # no such GPU here: the environment is what is checked
        pin(device, 0)
    Path(out).write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))


@pytest.mark.parametrize(
    ("visible", "devices", "got"),
    [
        ("2,3", ["cuda:1", "cuda:0", "cuda:0"], ["3", "2", "2"]),  # the stage's GPUs; two workers share GPU 2
        (f"{UUID},{MIG}", [], [UUID, MIG]),  # every visible GPU, by name
    ],
)
def test_local_workers_are_pinned_to_the_gpus_the_stage_was_given(tmp_path, monkeypatch, visible, devices, got):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    cfg = ExecutorConfig(kind="local", devices=devices, poll_seconds=0.1)
    outs = [str(tmp_path / f"worker-{i}") for i in range(len(got))]
    jobs = list(zip(local_devices(cfg), outs, strict=True))  # as shards.spread deals them
    run_jobs(cfg, _report, jobs, [f"worker {i}" for i in range(len(jobs))], tmp_path / "jobs")
    assert [Path(o).read_text() for o in outs] == got


# ---- a worker that expected a GPU and has none ---------------------------------------------------------------


def _ran(job: tuple[str, str]) -> None:
    """A worker body: pinned (when it has a device), then it would run its tasks on whatever torch found."""
    device, out = job
    if device:
        pin(device, 0)
    Path(out).write_text("ran on the CPU")


def test_a_local_worker_pinned_to_a_gpu_it_lacks_fails_in_one_line(tmp_path, monkeypatch):
    _no_gpu()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # the stage was given GPU 0; torch finds none
    cfg = ExecutorConfig(kind="local", devices=["cuda:0"], poll_seconds=0.1)
    out = tmp_path / "ran"
    with pytest.raises(JobFailed) as e:
        run_jobs(cfg, _ran, [(d, str(out)) for d in local_devices(cfg)], ["wh_island"], tmp_path / "jobs")
    msg = str(e.value)
    assert "\n" not in msg
    assert re.search(r"job 1 of 1 \(wh_island\) failed: JobFailed: local worker pinned to GPU 0 \(executor.devices, "
                     r"CUDA_VISIBLE_DEVICES=0\), but (this torch .* is built without CUDA|torch sees no GPU).*: "
                     r"check nvidia-smi .* executor.devices=\[cpu\]", msg), msg  # fmt: skip
    assert not out.exists()


def test_a_slurm_job_that_asked_for_a_gpu_and_has_none_fails_in_one_line(tmp_path, monkeypatch):
    _no_gpu()
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))  # the job unpickles _ran from this module
    cfg = ExecutorConfig(kind="slurm", poll_seconds=0.1, slurm={"cluster": "local", "gpus_per_job": 1})
    out = tmp_path / "ran"
    with pytest.raises(JobFailed) as e:
        run_jobs(cfg, _ran, [("", str(out))], ["wh_island"], tmp_path / "jobs")
    msg = str(e.value)
    assert re.search(r"job 1 of 1 \(wh_island\) failed: .*JobFailed: SLURM job \d+ asked for 1 GPU\(s\) "
                     r"\(executor.slurm.gpus_per_job = 1\), but .*gpus_per_job=0 to run on CPUs", msg), msg  # fmt: skip
    assert not out.exists()


# ---- submitting from inside a SLURM job ----------------------------------------------------------------------


def _slurm_env(out: str) -> None:
    Path(out).write_text(json.dumps({k: v for k, v in os.environ.items() if k.startswith(("SLURM_", "SLURMD_"))}))


def test_jobs_submitted_from_a_slurm_job_do_not_inherit_its_slurm_settings(tmp_path, monkeypatch):
    """The README's `sbatch -W --wrap "dvc repro"`: the stage runs in a SLURM job; its jobs must not get its
    SLURM_* variables (CPU count, memory, job id), which srun and torch would read as their own."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    outer = {"SLURM_JOB_ID": "4242", "SLURM_CPUS_PER_TASK": "2", "SLURM_MEM_PER_NODE": "4000", "SLURMD_NODENAME": "n1"}
    for key, value in outer.items():
        monkeypatch.setenv(key, value)
    cfg = ExecutorConfig(kind="slurm", poll_seconds=0.1, slurm={"cluster": "local", "gpus_per_job": 0})
    run_jobs(cfg, _slurm_env, [str(tmp_path / "env.json")], ["a"], tmp_path / "jobs")
    assert json.loads((tmp_path / "env.json").read_text()) == {}
    assert {k: os.environ.get(k) for k in outer} == outer  # the stage's own environment is as it was


# ---- the jobs a killed submitter left running ------------------------------------------------------------------

SUBMITTER = (
    "import sys, time; from pathlib import Path; from taskspace.config import ExecutorConfig; "
    "from taskspace.pipeline.executor import run_jobs; "
    "run_jobs(ExecutorConfig(kind='slurm', poll_seconds=0.2, slurm={'cluster': 'local', 'gpus_per_job': 0}), "
    "time.sleep, [600], ['wh_island'], Path(sys.argv[1]))"
)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _gone(pids: list[int], within: float = 30) -> bool:
    deadline = time.time() + within
    while time.time() < deadline and any(map(_alive, pids)):
        time.sleep(0.1)
    return not any(map(_alive, pids))


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _ignoring_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a job of a background shell (`dvc repro &`) starts


def _ignores(pid: int, sig: signal.Signals) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    return bool(int(re.search(r"^SigIgn:\s*([0-9a-f]+)", status, re.M).group(1), 16) >> (sig - 1) & 1)


@contextlib.contextmanager
def _earlier_submission(folder: Path, preexec: Callable[[], None] | None = None):
    """A stage process whose one job (submitit's local cluster) sleeps for 10 minutes; yields it and the pids of
    its job (the controller, then the task) once the submission is recorded. Whatever is left is killed after."""
    proc = subprocess.Popen([sys.executable, "-c", SUBMITTER, str(folder)], preexec_fn=preexec)
    job: list[int] = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (folder / SUBMITTED).exists() and proc.poll() is None:
            time.sleep(0.1)
        assert (folder / SUBMITTED).exists(), "the submitted jobs were not recorded in the job folder"
        job = [int(j) for j in json.loads((folder / SUBMITTED).read_text())["jobs"]]
        while time.time() < deadline and not _children(job[0]):  # the controller starts its task
            time.sleep(0.1)
        job += _children(job[0])
        assert len(job) == 2 and all(map(_alive, job))
        yield proc, job
    finally:
        left = job or [p for c in _children(proc.pid) for p in (c, *_children(c))]  # unrecorded: the submitter's
        proc.kill()
        proc.wait()
        for pid in left:  # only while still the job's own processes
            with contextlib.suppress(OSError):
                if _alive(pid) and "submitit" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                    os.kill(pid, signal.SIGKILL)


def _touch(out: str) -> None:
    Path(out).write_text("done")


def test_a_rerun_cancels_the_jobs_a_killed_submitter_left_running(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    folder = tmp_path / "jobs" / "ftgd" / "tiny-step30"
    cfg = ExecutorConfig(kind="slurm", poll_seconds=0.1, slurm={"cluster": "local", "gpus_per_job": 0})
    with _earlier_submission(folder) as (proc, job):
        proc.kill()  # SIGKILL: no handler runs, the job is left running with nobody waiting on it
        proc.wait()
        assert all(map(_alive, job))
        run_jobs(cfg, _touch, [str(tmp_path / "rerun")], ["wh_island"], folder)
        assert (tmp_path / "rerun").read_text() == "done"
        assert _gone(job), "the earlier job still runs beside the rerun's"
    err = capfd.readouterr().err
    assert f"executor: cancelled jobs {job[0]} left by an earlier submission" in err
    assert f"(pid {proc.pid} on " in err and "is gone" in err
    assert not (folder / SUBMITTED).exists()  # the rerun finished: nothing of it left to cancel


def test_a_rerun_refuses_while_the_earlier_submitter_still_waits_on_its_jobs(tmp_path, monkeypatch):
    """Another stage process still waiting on the jobs (a second `dvc repro`, a shared executor.folder): its jobs
    are not cancelled under it, and none are submitted twice."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    folder = tmp_path / "jobs" / "ftgd" / "tiny-step30"
    cfg = ExecutorConfig(kind="slurm", poll_seconds=0.1, slurm={"cluster": "local", "gpus_per_job": 0})
    with _earlier_submission(folder) as (proc, job):
        with pytest.raises(JobFailed) as e:
            run_jobs(cfg, _touch, [str(tmp_path / "rerun")], ["wh_island"], folder)
        msg = str(e.value)
        assert "\n" not in msg
        assert msg.startswith(f"jobs {job[0]} of an earlier submission of this stage and run are still queued or "
                              f"running, and their submitter (pid {proc.pid} on "), msg  # fmt: skip
        assert f"(or cancel them: kill -INT {job[0]})" in msg
        assert not (tmp_path / "rerun").exists() and all(map(_alive, job)) and proc.poll() is None
        proc.terminate()  # SIGTERM, as DVC stopping the stage: it cancels its own job and clears its record
        assert proc.wait(timeout=60) != 0
        assert _gone(job) and not (folder / SUBMITTED).exists()


def test_a_rerun_cancels_in_seconds_the_jobs_of_a_submitter_started_in_a_background_shell(tmp_path, monkeypatch):
    """A stage run from a background shell (`dvc repro &`) ignores SIGINT, and its jobs would too: it submits them
    with SIGINT's default action, so a rerun's SIGINT stops them at once."""
    from taskspace.pipeline.executor import _supersede

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    folder = tmp_path / "jobs" / "ftgd" / "tiny-step30"
    with _earlier_submission(folder, _ignoring_sigint) as (proc, job):
        assert _ignores(proc.pid, signal.SIGINT) and not any(_ignores(pid, signal.SIGINT) for pid in job)
        proc.kill()
        proc.wait()
        start = time.monotonic()
        _supersede(folder / SUBMITTED)  # what a rerun does first: the submitter is gone, so its jobs are cancelled
        # measured ~1.1 s (a controller gives its task 1 s); one ignoring SIGINT would wait for SIGTERM, 3 s later
        assert time.monotonic() - start < 3 and not any(map(_alive, job))


STUBBORN = (  # a controller that ignores SIGINT and SIGTERM (and forwards nothing), its task one that ignores SIGTERM
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "task = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "print(task.pid, flush=True)\n"
    "time.sleep(600)\n"
)


def test_cancelling_a_local_job_escalates_to_sigterm_and_sigkill(tmp_path):
    """A local-cluster job that SIGINT does not stop gets SIGTERM, then SIGKILL, `grace` seconds apart: its
    controller and its task alike (submitit's tasks ignore SIGTERM)."""
    from taskspace.pipeline.executor import _cancel

    controller = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True,
                                  preexec_fn=_ignoring_sigint)  # fmt: skip
    task = int(controller.stdout.readline())
    try:
        assert _ignores(controller.pid, signal.SIGINT) and _ignores(task, signal.SIGTERM)
        start = time.monotonic()
        _cancel("local", [str(controller.pid)], grace=0.5)
        assert controller.wait(timeout=10) == -signal.SIGKILL and _gone([task], within=10)
        assert time.monotonic() - start < 10
    finally:
        for pid in (controller.pid, task):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        controller.wait()
