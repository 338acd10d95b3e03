"""Scale-out throughput: the ftgd + probe stages of one run on the tiny model, serial against the local executor
with two CPU workers (torch threads: each worker's default, as serial — bit-identical — or one each), timed in
interleaved rounds (bench/rounds.py: the ratio to serial per round, median with min–max). Each leg starts from
the same prepared project (splits, tiny model, eval1), so it does the same work from scratch.

    .venv/bin/python bench/bench_executor.py [--tasks 12] [--steps 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from rounds import interleave

from taskspace.blimp import data
from taskspace.blimp.meta import PARADIGMS
from taskspace.config import AnalysisConfig, DataConfig, FTGDConfig, ProbeConfig
from taskspace.pipeline import stages as pipeline
from taskspace.pipeline.settings import Settings
from taskspace.runs import expand_runs
from taskspace.stats.spaces import TaskSpaces

RUN = ("tiny", "step100")


def section(cfg) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(cfg).items()}


def project(root: Path, n_tasks: int, steps: int) -> dict:
    """A prepared project in root: splits of n_tasks tasks, the tiny model, eval1."""
    tasks = sorted(PARADIGMS)[:: max(1, len(PARADIGMS) // n_tasks)][:n_tasks]
    models = {"tiny": {"spec": "data/tiny/tiny", "revisions": [RUN[1]]}}
    p = {
        "data": section(DataConfig(source=data.default_source(), tasks=tuple(tasks), n_train=32, n_eval=50)),
        "tiny_models": {"tiny": {"steps": 100, "save_every": 100}},
        "models": models,
        "runs": expand_runs(models),
        "ftgd": section(FTGDConfig(steps=steps, lr=1e-3, batch_size=8)),
        "probing": section(ProbeConfig()),
        "analysis": section(AnalysisConfig()),
    }
    os.chdir(root)
    p["data_files"] = data.source_files(p["data"]["source"])
    quiet = lambda _: None  # noqa: E731
    s = Settings.from_dict(p)
    pipeline.stage_prepare(s, quiet)
    pipeline.stage_tiny(s, "tiny", quiet)
    pipeline.stage_eval(s, s.run(*RUN), quiet)
    return p


def leg(base: Path, p: dict, executor: dict, work: Path):
    """ftgd + probe from the prepared state; returns the run's spaces."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(base, work)
    os.chdir(work)
    s = Settings.from_dict({**p, "executor": executor})
    quiet = lambda _: None  # noqa: E731
    pipeline.stage_ftgd(s, s.run(*RUN), quiet)
    pipeline.stage_probe(s, s.run(*RUN), quiet)
    return TaskSpaces.load(work / "data" / "probe" / RUN[0] / RUN[1] / "matrices.npz").matrices


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=12)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-executor-"))
    base = tmp / "base"
    base.mkdir()
    p = project(base, args.tasks, args.steps)
    legs = {
        "serial": {"kind": "serial"},
        "local 2×cpu (default threads)": {"kind": "local", "devices": ["cpu", "cpu"], "poll_seconds": 0.5},
        "local 2×cpu (1 thread each)": {"kind": "local", "devices": ["cpu", "cpu"], "threads": 1, "poll_seconds": 0.5},
    }
    t = interleave(
        {label: (lambda e=e, i=i: leg(base, p, e, tmp / f"leg{i}")) for i, (label, e) in enumerate(legs.items())},
        rounds=args.rounds,
        warmup=False,
    )
    serial = t.results["serial"]
    print(f"ftgd + probe stages, tiny model, {args.tasks} tasks, {args.steps} FTGD steps, {os.cpu_count()} cores")
    for label in legs:
        m = t.results[label]
        same = all(np.array_equal(m[k], serial[k], equal_nan=True) for k in serial)
        close = max(float(np.nanmax(np.abs(m[k] - serial[k]))) for k in serial)
        print(
            f"  {label:<32} {t.median(label):6.1f} s  speed-up {t.ratio_text(label, 'serial')}  "
            f"spaces {'bit-identical to serial' if same else f'max |Δ| {close:.1e} from serial'}"
        )
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
