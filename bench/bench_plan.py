"""`taskspace plan`'s time estimate against a real run of the same settings, on this machine.

Builds Pythia-shaped models offline (real dimensions, random weights), plans one run of each with calibration,
then runs it for real the way the stages do (each of eval, ftgd and probe loads the model). Plan and run
alternate in rounds, so load drift on a shared machine affects both; prints the median ratio measured/planned
with its min–max.

    .venv/bin/python bench/bench_plan.py [--shapes pythia-70m,pythia-160m] [--tasks 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from taskspace.blimp import data
from taskspace.lm import tiny
from taskspace.lm.models import load_model
from taskspace.method.probing import run_eval1, run_eval2, run_ftgd
from taskspace.pipeline import plan
from taskspace.pipeline.settings import Settings
from taskspace.runs import Layout, expand_runs


def settings(spec: Path, tasks: list[str], n_train: int, n_eval: int, steps: int) -> Settings:
    models = {"m": {"spec": str(spec), "revisions": ["step0"]}}
    return Settings.from_dict({
        "data": {"source": "auto", "tasks": tasks, "n_train": n_train, "n_eval": n_eval, "seed": 0},
        "models": models,
        "runs": expand_runs(models),
        "data_files": data.source_files("auto"),
        "ftgd": {"steps": steps, "batch_size": 8},
        "probing": {},
        "analysis": {},
    })


def real_run(s: Settings, spec: Path, out: Path) -> float:
    d = s.data
    train, ev = data.split_pairs(data.load_blimp(s.source, list(d.tasks)), d.n_train, d.n_eval, 0)
    ftgd, probe = s.ftgd("m"), s.probe
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    layout = Layout(out / "eval", out / "ftgd", out / "probe")
    eval1 = run_eval1(load_model(str(spec), "step0"), ev, layout, probe)
    run_ftgd(load_model(str(spec), "step0"), train, layout, ftgd, probe)
    run_eval2(load_model(str(spec), "step0"), ev, eval1, layout, ftgd, probe)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shapes", default="pythia-70m,pythia-160m")
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=16)
    ap.add_argument("--n-eval", type=int, default=20)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    src = data.default_source()
    tasks = data.select_tasks(src)[: args.tasks]
    work = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    pairs = data.load_blimp(src, tasks)
    print(f"{'shape':<13}{'planned':>10}{'measured':>10}{'ratio':>8}  (median of {args.rounds} rounds, min–max)")
    for shape in args.shapes.split(","):
        spec = work / shape
        tiny.build_tiny(spec, pairs["good"].to_pylist() + pairs["bad"].to_pylist(), [], steps=0, shape=shape)
        s = settings(spec, tasks, args.n_train, args.n_eval, args.steps)
        planned, measured = [], []
        for _ in range(args.rounds):  # plan, run, plan, run…
            runs, _ = plan.plan(s, say=lambda _m: None)
            planned.append(runs[0].seconds)
            measured.append(real_run(s, spec, work / "out"))
        ratio = np.array(measured) / np.array(planned)
        print(
            f"{shape:<13}{np.median(planned):>9.1f}s{np.median(measured):>9.1f}s{np.median(ratio):>8.2f}"
            f"  ({ratio.min():.2f}–{ratio.max():.2f})"
        )
        shutil.rmtree(spec)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
