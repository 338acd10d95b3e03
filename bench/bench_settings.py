"""Choosing FTGD settings and the transfer metric by measurement, on a real model (SmolLM2-135M by default).

For each setting (steps × lr × sparsity), two replicates (FTGD seeds 0 and 1 on train/eval splits 0 and 1) probe
one task per BLiMP phenomenon. Per setting and metric (accuracy, mean margin): the own-task gain (the transfer
diagonal), the LM-loss rise on the other tasks' grammatical sentences (nats/token), and the split-half
reliability of the transfer space's off-diagonal (Spearman between the replicates, and Spearman–Brown).
Prints a table and writes it as JSON next to the outputs.

    .venv/bin/python bench/bench_settings.py [--out /tmp/settings] [--points 10:1e-4:0.01,30:1e-4:0.01,…]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from taskspace.blimp import data
from taskspace.blimp.meta import PARADIGMS
from taskspace.config import FTGDConfig, ProbeConfig
from taskspace.lm.models import load_model
from taskspace.method.ftgd import FTGDError
from taskspace.method.probing import run_eval1, run_eval2, run_ftgd
from taskspace.runs import Layout
from taskspace.stats.reliability import spearman_brown, split_half

POINTS = "10:1e-4:0.01,30:1e-4:0.01,10:3e-4:0.01,30:3e-4:0.01,10:1e-4:0.05"


def one_per_phenomenon() -> list[str]:
    first: dict[str, str] = {}
    for task, (phenomenon, _) in sorted(PARADIGMS.items()):
        first.setdefault(phenomenon, task)
    return sorted(first.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--tasks", default=",".join(one_per_phenomenon()))
    ap.add_argument("--n-train", type=int, default=32)
    ap.add_argument("--n-eval", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--points", default=POINTS, help="steps:lr:sparsity, comma-separated")
    ap.add_argument("--out", type=Path, default=Path("/tmp/taskspace-settings"))
    args = ap.parse_args()
    lm = load_model(args.model)
    tasks = args.tasks.split(",")
    pairs = data.load_blimp(data.default_source(), tasks)
    splits = {seed: data.split_pairs(pairs, args.n_train, args.n_eval, seed) for seed in (0, 1)}
    probe = ProbeConfig(metric="accuracy")  # transfer = accuracy; transfer_margin = margin, from the same runs
    results = []
    for point in args.points.split(","):
        steps, lr, sparsity = point.split(":")
        cfg = FTGDConfig(steps=int(steps), lr=float(lr), sparsity=float(sparsity), batch_size=args.batch_size)
        t0 = time.perf_counter()
        reps = []
        row = {"steps": int(steps), "lr": float(lr), "sparsity": float(sparsity), "minutes": 0.0}
        try:
            for r in (0, 1):
                train, ev = splits[r]
                layout = Layout.single(args.out / point.replace(":", "_") / f"r{r}")
                eval1 = run_eval1(lm, ev, Layout.single(args.out / f"eval-split{r}"), probe)
                run_ftgd(lm, train, layout, FTGDConfig(**{**vars(cfg), "seed": r}), probe)
                reps.append(run_eval2(lm, ev, eval1, layout, FTGDConfig(**{**vars(cfg), "seed": r}), probe))
        except FTGDError as e:  # a setting that collapses the model is a result too: recorded, not fatal
            row |= {"collapsed": str(e), "minutes": (time.perf_counter() - t0) / 60}
            results.append(row)
            print(json.dumps(row), flush=True)
            continue
        rise = [t["lm_loss_after"] - t["lm_loss_before"] for rep in reps for t in rep["summary"]["per_task"].values()]
        row["lm_loss_rise"] = float(np.mean(rise))
        row["lm_loss_rise_max"] = float(np.max(rise))
        for metric, kind in (("accuracy", "transfer"), ("margin", "transfer_margin")):
            stacked = np.stack([rep[kind] for rep in reps])
            half = split_half(stacked)
            row[metric] = {
                "self_transfer": float(np.mean([np.diag(m).mean() for m in stacked])),
                "reliability": half,
                "spearman_brown": spearman_brown(half),
            }
        row["minutes"] = (time.perf_counter() - t0) / 60
        results.append(row)
        print(json.dumps(row), flush=True)
    (args.out / "settings.json").write_text(json.dumps(results, indent=1))
    print(f"\n{len(tasks)} tasks, {args.n_train} train / {args.n_eval} eval pairs, 2 replicates")
    print(f"{'steps':>5}{'lr':>8}{'sparsity':>9}{'Δloss':>8}{'acc gain':>9}{'acc rel':>9}{'margin gain':>12}"
          f"{'margin rel':>11}{'min':>6}")  # fmt: skip
    for r in results:
        if "collapsed" in r:
            print(f"{r['steps']:>5}{r['lr']:>8.0e}{r['sparsity']:>9}  collapsed: {r['collapsed'][:90]}")
            continue
        a, m = r["accuracy"], r["margin"]
        print(
            f"{r['steps']:>5}{r['lr']:>8.0e}{r['sparsity']:>9}{r['lm_loss_rise']:>+8.3f}{a['self_transfer']:>+9.3f}"
            f"{_f(a['spearman_brown']):>9}{m['self_transfer']:>+12.2f}{_f(m['spearman_brown']):>11}{r['minutes']:>6.1f}"
        )


def _f(x) -> str:
    return "—" if x is None else f"{x:+.3f}"


if __name__ == "__main__":
    main()
