"""A run's pending tasks dealt into shards for the executor's workers (taskspace.pipeline.executor).

The ftgd and probe stages hand every task not yet finished — over all replicates and the control — to the
workers: each loads the model once and runs its share exactly as the serial loop would (the same functions,
stamps and atomic per-task files), so results are bit-identical and a rerun redoes only what is missing. The
stage then checks every task is finished and, for probe, reduces to the spaces in its own process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

from taskspace.pipeline import executor
from taskspace.pipeline.replicates import Say, load_run_model, progress_line, replicates, unit_name
from taskspace.pipeline.settings import Settings
from taskspace.runs import Run

Unit = tuple[int, bool]  # (replicate, control)


@dataclass(frozen=True)
class Shard:
    """What one worker does: a stage's tasks of one run, as (replicate, control, task) items."""

    stage: str  # eval | ftgd | probe
    settings: Settings
    model: str
    revision: str
    items: tuple[tuple[int, bool, str], ...]
    root: str  # the project folder: workers resolve data/ and the resume stash from it
    device: str = ""  # local: the device this worker is pinned to ("" = the job's own, e.g. SLURM's GPU)
    threads: int = 0  # local CPU workers: torch threads each (0: torch's default, as a serial run has)

    def describe(self) -> str:
        tasks = sorted({t for _, _, t in self.items})
        return f"{len(self.items)} task(s): {', '.join(tasks[:4])}{', …' if len(tasks) > 4 else ''}"


def work(shard: Shard) -> int:
    """A worker's body (local process or SLURM job): load the model once, run the shard's tasks."""
    os.chdir(shard.root)
    device = executor.pin(shard.device, shard.threads) if shard.device else None
    from taskspace.method.probing import run_eval1, run_eval2_tasks, run_ftgd  # after pin: torch sees its device

    s = shard.settings
    run = Run(shard.model, shard.revision)
    lm = load_run_model(s, run, print, device)
    reps, pcfg = replicates(s, run), s.probe
    stamps = s.stamp("eval2", run), s.stamp("ftgd", run)
    for (r, control), items in groupby(shard.items, key=lambda it: it[:2]):
        rep, tasks = reps[r], [t for _, _, t in items]
        layout = rep.layout.control if control else rep.layout
        say = progress_line(f"{unit_name(run, r, reps, control)} {shard.stage}", print)
        if shard.stage == "eval":  # one item per replicate: its eval1, on the device its eval2 will use
            run_eval1(lm, rep.eval, rep.layout, pcfg, s.stamp("eval", run))
        elif shard.stage == "ftgd":
            run_ftgd(lm, rep.train, layout, rep.ftgd, pcfg, stamps[1], say, keep=True, control=control, only=tasks)
        else:
            run_eval2_tasks(lm, rep.eval, layout, pcfg, *stamps, only=tasks, keep=True, progress=say)
    return len(shard.items)


def spread(
    s: Settings, run: Run, stage: str, pending: dict[Unit, list[str]], done: Callable[[], int], say: Say
) -> None:
    """Run the pending tasks on the executor's workers, saying tasks done / total as the output folders fill."""
    cfg = s.executor
    items = [(r, c, t) for (r, c), tasks in pending.items() for t in tasks]
    if not items:
        return
    devices = executor.local_devices(cfg) if cfg.kind == "local" else [""] * cfg.slurm.jobs
    dealt = executor.deal(items, len(devices))
    root = str(Path.cwd().resolve())
    jobs = [
        Shard(stage, s, run.model, run.revision, tuple(sorted(d)), root, dev, cfg.threads if dev == "cpu" else 0)
        for d, dev in zip(dealt, devices)
    ]
    total, start, last = len(items), done(), [-1]

    def poll() -> None:
        n = done() - start
        if n != last[0]:
            last[0] = n
            say(f"{run.label}: {stage} {n}/{total} tasks on {len(jobs)} {cfg.kind} worker(s)")

    folder = Path(cfg.folder) / stage / run.stage_key
    executor.run_jobs(cfg, work, jobs, [j.describe() for j in jobs], folder, poll)
