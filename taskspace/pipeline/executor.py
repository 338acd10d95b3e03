"""Where a stage's per-task work runs: in its own process (serial), one worker process per device (local), or a
SLURM job array through submitit (slurm). DVC sees none of it: a stage stays one process with one output hash,
workers only write per-task files into its output folder, and no DVC command ever runs on a worker.

The interface is narrow — `run_jobs(cfg, fn, jobs, names, poll)` calls `fn(job)` for each job somewhere and
returns when all have finished — so another backend (Ray, …) is one small function.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import re
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from taskspace.config import ExecutorConfig
from taskspace.errors import TaskspaceError


class JobFailed(TaskspaceError):
    """A worker failed, timed out or was killed; the message names its tasks and its log file."""


def deal(tasks: Sequence[str], n: int) -> list[list[str]]:
    """Deal tasks into at most n non-empty shards, round robin (neighbouring tasks, often alike in length,
    land in different shards)."""
    n = max(1, min(n, len(tasks)))
    return [list(tasks[i::n]) for i in range(n)] if tasks else []


def local_devices(cfg: ExecutorConfig) -> list[str]:
    """The local executor's devices: those listed, else every visible GPU."""
    if cfg.devices:
        return list(cfg.devices)
    import torch

    n = torch.cuda.device_count()
    if not n:
        raise JobFailed(
            "executor.kind = local with no executor.devices, and this machine has no GPU: "
            "list the devices, e.g. executor.devices=[cpu,cpu], or use executor.kind=serial"
        )
    return [f"cuda:{i}" for i in range(n)]


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
def _terminated_on_signal() -> Iterator[None]:
    """SIGTERM (DVC or the user stopping the stage) raises SystemExit, so workers are stopped too."""

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    try:
        old = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (tests driving a stage from a worker): nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# ---- local: one spawned process per job (each pinned to its device) ---------------------------------------


def _local(fn: Callable, jobs: Sequence, folder: Path, every: float, poll: Callable[[], None]) -> list:
    ctx = mp.get_context("spawn")  # CUDA cannot be shared with a forked child
    logs = [folder / f"job-{i + 1}.log" for i in range(len(jobs))]
    procs = [ctx.Process(target=_child, args=(fn, job, str(log))) for job, log in zip(jobs, logs)]
    with _terminated_on_signal():
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
    """Pin this process to one device before CUDA initialises; returns the device name to load onto."""
    if device.startswith("cuda"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.partition(":")[2] or "0"
        return "cuda"
    if threads:
        import torch

        torch.set_num_threads(threads)
    return device


# ---- slurm: a submitit job array (its local and debug clusters run the same jobs on this machine) --------


def _slurm(cfg: ExecutorConfig, fn: Callable, jobs: Sequence, folder: Path, poll: Callable[[], None]) -> list:
    try:
        import submitit
    except ImportError:
        raise JobFailed(
            "executor.kind = slurm needs submitit: pip install 'taskspace[slurm]' (or .venv/bin/pip install submitit)"
        ) from None
    s = cfg.slurm
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
    submitted = []
    with _terminated_on_signal():
        try:
            submitted = ex.map_array(fn, list(jobs))
            while not all(j.done() for j in submitted):
                poll()
                time.sleep(cfg.poll_seconds)
        except BaseException:
            for j in submitted:
                with contextlib.suppress(Exception):
                    j.cancel(check=False)
            raise
    failures = []
    for i, j in enumerate(submitted):
        try:
            j.result()
        except Exception as e:  # FailedJobError carries the remote traceback, then where the logs are
            failures.append((i, f"failed: {_raised(str(e)) or type(e).__name__}", j.paths.stderr))
    return failures


def _raised(text: str) -> str:
    """The exception line of a traceback quoted in a submitit error ("RuntimeError: …"), else its first line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    raised = [ln for ln in lines if EXCEPTION_LINE.match(ln)]
    return (raised or lines or [""])[-1 if raised else 0]


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Failed)\b:?")
