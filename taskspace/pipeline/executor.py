"""Where a stage's per-task work runs: in its own process (serial), one worker process per device (local), or a
SLURM job array through submitit (slurm). DVC sees none of it: a stage stays one process with one output hash,
workers only write per-task files into its output folder, and no DVC command ever runs on a worker.

The interface is narrow — `run_jobs(cfg, fn, jobs, names, poll)` calls `fn(job)` for each job somewhere and
returns when all have finished — so another backend (Ray, …) is one small function.
"""

from __future__ import annotations

import contextlib
import getpass
import multiprocessing as mp
import os
import re
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from taskspace.config import ExecutorConfig
from taskspace.errors import ConfigError, TaskspaceError
from taskspace.io import read_record, write_json


class JobFailed(TaskspaceError):
    """A worker failed, timed out or was killed; the message names its tasks and its log file."""


def deal(tasks: Sequence[str], n: int) -> list[list[str]]:
    """Deal tasks into at most n non-empty shards, round robin (neighbouring tasks, often alike in length,
    land in different shards)."""
    n = max(1, min(n, len(tasks)))
    return [list(tasks[i::n]) for i in range(n)] if tasks else []


NAMED_GPU = re.compile(r"^(GPU|MIG)-[0-9A-Za-z./-]+$")  # a GPU's UUID or a MIG instance, as nvidia-smi -L names them


def visible_gpus(value: str | None) -> list[str] | None:
    """The GPUs a CUDA_VISIBLE_DEVICES value names (indices, GPU-… UUIDs, MIG-… names), read as CUDA reads it: up
    to the first entry it cannot parse, so "" and "-1" hide every GPU; None when unset (every GPU is visible)."""
    if value is None:
        return None
    gpus = []
    for entry in value.split(","):
        entry = entry.strip()
        if not (entry.isdigit() or NAMED_GPU.match(entry)):
            break
        gpus.append(entry)
    return gpus


def map_devices(devices: Sequence[str], visible: str | None, count: int = 0) -> list[str]:
    """Each local worker's device as what it is pinned to: "cpu" or "cuda:<GPU>", <GPU> being the worker's whole
    CUDA_VISIBLE_DEVICES. cuda:i is the i-th GPU this process sees — the i-th entry of its CUDA_VISIBLE_DEVICES
    (`visible`) when set, else GPU i of `count` — so workers stay on the GPUs the stage was given; GPU-/MIG- names
    are used as given; [] is every visible GPU. A device listed twice shares its GPU between two workers."""
    seen = visible_gpus(visible)
    gpus = seen if seen is not None else [str(i) for i in range(count)]
    where = f"CUDA_VISIBLE_DEVICES={visible}" if seen is not None else f"CUDA_VISIBLE_DEVICES unset, torch sees {count}"
    if not devices:
        if not gpus:
            raise ConfigError(
                f"executor.kind = local with no executor.devices, and no GPU is visible ({where}): "
                "list the devices, e.g. executor.devices=[cpu,cpu], or use executor.kind=serial"
            )
        return [f"cuda:{g}" for g in gpus]
    pinned = []
    for d in devices:
        name = d.removeprefix("cuda:")
        if d == "cpu" or NAMED_GPU.match(name):
            pinned.append(d if d == "cpu" else f"cuda:{name}")
            continue
        i = int(name) if name.isdigit() else 0  # "cuda" alone is cuda:0
        if i >= len(gpus):
            listed = ", ".join(f"cuda:{k} = GPU {g}" for k, g in enumerate(gpus)) or "no GPU"
            raise ConfigError(f"executor.devices: {d} is not visible here: this process sees {listed} ({where})")
        pinned.append(f"cuda:{gpus[i]}")
    return pinned


def local_devices(cfg: ExecutorConfig) -> list[str]:
    """The local executor's devices (see map_devices), read against this process's CUDA_VISIBLE_DEVICES."""
    visible, count = os.environ.get("CUDA_VISIBLE_DEVICES"), 0
    if visible is None and any(re.fullmatch(r"cuda(:\d+)?", d) for d in cfg.devices or ["cuda"]):
        import torch

        count = torch.cuda.device_count()
    return map_devices(cfg.devices, visible, count)


def run_jobs(
    cfg: ExecutorConfig,
    fn: Callable,
    jobs: Sequence,
    names: Sequence[str],
    folder: Path,
    poll: Callable[[], None] = lambda: None,
) -> None:
    """Run fn(job) for every job with cfg's executor; `names` say which tasks each job holds (for errors),
    `folder` takes their logs, `poll` is called while waiting (progress). Raises JobFailed naming every failed
    job; finished jobs' files stay whatever happens to the others."""
    folder.mkdir(parents=True, exist_ok=True)
    if cfg.kind == "local":
        failures = _local(fn, jobs, folder, cfg.poll_seconds, poll)
    elif cfg.kind == "slurm":
        failures = _slurm(cfg, fn, jobs, folder, poll)
    else:
        raise ValueError(f"run_jobs is for local and slurm executors, not {cfg.kind}")
    poll()
    if failures:
        lines = [f"job {i + 1} of {len(jobs)} ({names[i]}) {why}; log: {log}" for i, why, log in failures]
        raise JobFailed("; ".join(lines) + ". Finished tasks are kept: rerun the stage to do the rest")


@contextlib.contextmanager
def _handling(signum: int, handler: Callable | None = None) -> Iterator[None]:
    """`handler` for `signum` inside, the old one after; by default SystemExit (SIGTERM stops the workers too)."""
    with contextlib.ExitStack() as restore:
        with contextlib.suppress(ValueError):  # not the main thread (tests driving a stage from a worker): nothing
            restore.callback(signal.signal, signum, signal.signal(signum, handler or (lambda n, _: sys.exit(128 + n))))
        yield


# ---- local: one spawned process per job (each pinned to its device) ---------------------------------------


def _local(fn: Callable, jobs: Sequence, folder: Path, every: float, poll: Callable[[], None]) -> list:
    ctx = mp.get_context("spawn")  # CUDA cannot be shared with a forked child
    logs = [folder / f"job-{i + 1}.log" for i in range(len(jobs))]
    procs = [ctx.Process(target=_child, args=(fn, job, str(log))) for job, log in zip(jobs, logs)]
    with _handling(signal.SIGTERM):
        try:
            for p in procs:
                p.start()
            while alive := [p for p in procs if p.is_alive()]:
                poll()
                alive[0].join(timeout=every)
        except BaseException:
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join()
            raise
    return [(i, _why(p.exitcode, log), log) for i, (p, log) in enumerate(zip(procs, logs)) if p.exitcode != 0]


def _why(exitcode: int | None, log: Path) -> str:
    """The worker's own last error line (written by _child), or how it died."""
    err = log.with_suffix(".error")
    if err.exists():
        return f"failed: {err.read_text().strip()}"
    if exitcode is not None and exitcode < 0:
        return f"was killed (signal {-exitcode})"
    return f"exited with code {exitcode}"


def _child(fn: Callable, job, log: str) -> None:
    """A local worker: output to its log, its device pinned before torch touches CUDA, then fn(job)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    Path(log).with_suffix(".error").unlink(missing_ok=True)
    try:
        fn(job)
    except BaseException as e:
        traceback.print_exc()
        Path(log).with_suffix(".error").write_text(f"{type(e).__name__}: {e}")
        sys.exit(1)


def pin(device: str, threads: int) -> str:
    """Pin this process to one device before CUDA initialises (`device` from local_devices: "cuda:<GPU>", the GPU
    as CUDA_VISIBLE_DEVICES names it); returns the device name to load onto."""
    if device.startswith("cuda"):
        gpu = device.partition(":")[2] or "0"
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        expect_gpu(
            f"local worker pinned to GPU {gpu} (executor.devices, CUDA_VISIBLE_DEVICES={gpu})",
            "check nvidia-smi lists that GPU and torch is a CUDA build, or set executor.devices=[cpu] "
            "(or executor.kind=serial) to run on the CPU",
        )
        return "cuda"
    if threads:
        import torch

        torch.set_num_threads(threads)
    return device


def expect_gpu(what: str, fix: str) -> None:
    """Fail in one line where a GPU was expected and torch sees none (a CPU-only torch, a node without it, a device
    that is not there), rather than load onto the CPU and run for hours in fp32."""
    import torch

    if torch.cuda.is_available():
        return
    if torch.version.cuda is None:
        why = f"this torch ({torch.__version__}) is built without CUDA"
    else:
        why = f"torch sees no GPU (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
    raise JobFailed(f"{what}, but {why}: {fix}")


@dataclass(frozen=True)
class _OnGPU:
    """A SLURM job's body when it asked for GPUs: check they are there (expect_gpu), then fn(job)."""

    fn: Callable
    gpus: int

    def __call__(self, job):
        jid = ""
        with contextlib.suppress(Exception):
            import submitit

            jid = f" {submitit.JobEnvironment().job_id}"
        expect_gpu(
            f"SLURM job{jid} asked for {self.gpus} GPU(s) (executor.slurm.gpus_per_job = {self.gpus})",
            "use a GPU partition (executor.slurm.partition) and a CUDA build of torch, "
            "or set executor.slurm.gpus_per_job=0 to run on CPUs",
        )
        return self.fn(job)


# ---- slurm: a submitit job array (its local and debug clusters run the same jobs on this machine) --------


def _slurm(cfg: ExecutorConfig, fn: Callable, jobs: Sequence, folder: Path, poll: Callable[[], None]) -> list:
    try:
        import submitit
    except ImportError:
        raise JobFailed(
            "executor.kind = slurm needs submitit: pip install 'taskspace[slurm]' (or .venv/bin/pip install submitit)"
        ) from None
    s = cfg.slurm
    outer = os.environ.get("SLURM_JOB_ID", "")  # the stage's own SLURM job (sbatch -W --wrap "dvc repro"), if any
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=s.cluster or None)
    ex.update_parameters(
        timeout_min=s.timeout_min,
        gpus_per_node=s.gpus_per_job,
        cpus_per_task=s.cpus_per_job,
        mem_gb=s.mem_gb,
        slurm_array_parallelism=s.array_parallelism,
        **({"slurm_partition": s.partition} if s.partition else {}),
        **({"slurm_additional_parameters": dict(s.additional)} if s.additional else {}),
    )
    record = folder / SUBMITTED
    _supersede(record)
    submitted = []
    with _handling(signal.SIGTERM):
        try:  # jobs submitted from a SLURM job must not inherit its SLURM_*; nor SIGINT ignored (see _cancel)
            with submitit.helpers.clean_env(), _handling(signal.SIGINT, signal.default_int_handler):
                submitted = ex.map_array(_OnGPU(fn, s.gpus_per_job) if s.gpus_per_job else fn, list(jobs))
            if ex.cluster != "debug":  # debug jobs run inside this process: nothing can outlive it
                write_json(_submission(ex.cluster, [j.job_id for j in submitted], outer), record)
            while not all(j.done() for j in submitted):
                poll()
                time.sleep(cfg.poll_seconds)
        except BaseException:
            if ex.cluster == "local":  # its controllers may ignore j.cancel's SIGINT (see _cancel)
                _cancel("local", [j.job_id for j in submitted])
            for j in submitted:
                with contextlib.suppress(Exception):
                    j.cancel(check=False)
            raise
        finally:
            record.unlink(missing_ok=True)  # left behind only when this process is killed outright
    failures = []
    for i, j in enumerate(submitted):
        try:
            j.result()
        except Exception as e:  # FailedJobError carries the remote traceback, then where the logs are
            failures.append((i, f"failed: {_raised(str(e)) or type(e).__name__}", j.paths.stderr))
    return failures


# ---- a submission's record: what a killed submitter left queued or running ----------------------------------

SUBMITTED = "submitted.json"  # in the run's and stage's job folder, while its jobs run


def _submission(cluster: str, ids: list[str], outer: str) -> dict:
    """Who submitted which jobs: enough for a rerun to tell whether anyone still waits on them."""
    return {"cluster": cluster, "jobs": ids, "host": socket.gethostname(), "pid": os.getpid(),
            "started": _started(os.getpid()), "slurm_job": outer}  # fmt: skip


def _supersede(record: Path) -> None:
    """Before submitting, deal with jobs of an earlier submission for this run and stage still queued or running.

    Policy: cancel them only when their submitter is known to be gone (its process on this host, or its own SLURM
    job, has ended). Then nobody waits on them, every task they finished is already kept, and letting them run
    would spend the allocation twice on the same tasks, two jobs writing each task's files. When the submitter may
    still be alive (its process or SLURM job still runs, or it ran on another host without a SLURM job to ask
    about), cancelling would fail a stage someone is waiting on: refuse, naming the jobs and how to cancel them."""
    old = read_record(record)
    if not old or not old.get("jobs"):
        return
    cluster = old.get("cluster", "slurm")
    active = _active(cluster, [str(j) for j in old["jobs"]])
    if not active:
        return
    ids, outer = " ".join(active), old.get("slurm_job")
    who = f"pid {old.get('pid')} on {old.get('host')}" + (f", in SLURM job {outer}" if outer else "")
    if _submitter_alive(old) is not False:
        how = f"kill -INT {ids}" if cluster == "local" else f"scancel {' '.join({j.split('_')[0]: 0 for j in active})}"
        raise JobFailed(
            f"jobs {ids} of an earlier submission of this stage and run are still queued or running, and their "
            f"submitter ({who}) may still be waiting on them: let it finish, or stop it (or cancel them: {how}) "
            f"and rerun; record: {record}"
        )
    _cancel(cluster, active)
    print(f"executor: cancelled jobs {ids} left by an earlier submission of this stage and run, whose submitter "
          f"({who}) is gone; the tasks they finished are kept", file=sys.stderr, flush=True)  # fmt: skip


def _proc(pid: int, what: str) -> str:
    """/proc/<pid>/<what>; "" when there is no such process."""
    try:
        return Path(f"/proc/{pid}/{what}").read_text(errors="replace")
    except OSError:
        return ""


def _started(pid: int) -> str | None:
    """When a live process started (clock ticks since boot): with its pid, it names one process even after pids
    are reused. None when there is no such process (or it is a zombie)."""
    fields = _proc(pid, "stat").rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


def _submitter_alive(old: dict) -> bool | None:
    """Whether an earlier submission's submitter still runs: None when this host cannot tell."""
    if old.get("host") == socket.gethostname() and Path("/proc/self").exists():
        return old.get("started") is not None and _started(int(old.get("pid", 0))) == old["started"]
    if old.get("slurm_job"):
        return str(old["slurm_job"]) in _squeue()
    return None


def _active(cluster: str, ids: list[str]) -> list[str]:
    """The jobs of `ids` still queued or running: SLURM's queue, or live local-cluster controllers (id = pid)."""
    if cluster == "local":
        return [j for j in ids if j.isdigit() and _started(int(j)) and "submitit" in _proc(int(j), "cmdline")]
    queued = _squeue() if cluster != "debug" else set()
    return [j for j in ids if j in queued]


def _squeue() -> set[str]:
    """This user's queued and running SLURM jobs, one id per array task."""
    cmd = ["squeue", "--noheader", "--array", "--format=%i", f"--user={getpass.getuser()}"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise JobFailed(f"cannot list your SLURM jobs to check an earlier submission ({' '.join(cmd)}: {e})") from None
    if out.returncode:
        lines = out.stderr.strip().splitlines() or [f"exit code {out.returncode}"]
        raise JobFailed(f"cannot list your SLURM jobs to check an earlier submission (squeue: {lines[-1]})")
    return set(out.stdout.split())


def _cancel(cluster: str, ids: list[str], grace: float = 3.0) -> None:
    """Cancel jobs: scancel, or SIGINT to local-cluster controllers (which stop their tasks), then SIGTERM and SIGKILL
    to what of them and their tasks runs `grace` s later (one started from a background shell ignores SIGINT)."""
    if cluster == "local":
        pids = [int(j) for j in ids]
        tasks = [int(c) for p in pids for c in _proc(p, f"task/{p}/children").split()]
        started = {p: _started(p) for p in pids + tasks}  # a pid names one process while its start time is the same
        for sig, targets in ((signal.SIGINT, pids), (signal.SIGTERM, pids + tasks), (signal.SIGKILL, pids + tasks)):
            for p in (p for p in targets if started[p] and _started(p) == started[p]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(t and _started(p) == t for p, t in started.items()):
                time.sleep(0.05)
        return
    out = subprocess.run(["scancel", *ids], capture_output=True, text=True)
    if out.returncode:
        raise JobFailed(f"could not cancel earlier jobs {' '.join(ids)}: scancel: {out.stderr.strip()}")


def _raised(text: str) -> str:
    """The exception line of a traceback quoted in a submitit error ("RuntimeError: …"), else its first line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    raised = [ln for ln in lines if EXCEPTION_LINE.match(ln)]
    return (raised or lines or [""])[-1 if raised else 0]


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Failed)\b:?")
