"""First-order transfer: what it costs against exact eval2, how well it agrees, and what a little exact work buys.

    .venv/bin/python bench/bench_linear.py --cost --tasks 67           # seconds: one eval2 pass vs T gradients
    .venv/bin/python bench/bench_linear.py --matrices data/probe/smollm2/main/matrices.npz

--cost times, on this machine and the bundled SmolLM2, what each route computes for a T-task space: exact transfer
is T eval2 passes over every task's eval pairs; first order is T margin gradients (one per evaluated task) and
T × T sparse dot products. --matrices reads a run made with `probing.transfer: both` and prints the agreement
(stats.agreement), then two cheap improvements, each averaged over random draws: calibration (k tuned tasks'
rows computed exactly, every column rescaled by its least-squares slope; agreement measured on the other rows)
and screening (how many of the largest exact cells the first-order ranking finds).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from taskspace.stats.agreement import agreement, calibrate_columns, screen_recall
from taskspace.stats.spaces import TaskSpaces


def cost(tasks: int, n_eval: int, model: str) -> None:
    import torch

    from taskspace.blimp import data
    from taskspace.lm.models import load_model
    from taskspace.lm.scoring import PreparedEval, score_pairs
    from taskspace.method.ftgd import param_group
    from taskspace.method.linear import linear_transfer

    torch.manual_seed(0)
    src = data.default_source()
    names = data.select_tasks(src)[:tasks]
    _, ev = data.split_pairs(data.load_blimp(src, names), 32, n_eval, seed=0)
    lm = load_model(model)
    prepared = PreparedEval(lm, ev)
    score_pairs(lm, prepared)  # preparation (host work, once per run) out of the timing
    t0 = time.perf_counter()
    score_pairs(lm, prepared)
    one_pass = time.perf_counter() - t0
    t0 = time.perf_counter()
    # a delta that touches every tensor, as a real 1% mask does: the gradient is then taken for all parameters
    step = {n: (torch.zeros(1, dtype=torch.long), torch.zeros(1)) for n in param_group(lm.model, "all")}
    linear_transfer(lm, ev, [step] * len(names), batch_size=8)  # the T gradients and T × T dot products
    grads = time.perf_counter() - t0
    print(f"{model}, {len(names)} tasks × {n_eval} eval pairs, torch threads {torch.get_num_threads()}")
    print(f"exact: one eval2 pass {one_pass:.1f} s × {len(names)} tuned tasks = {one_pass * len(names) / 60:.1f} min")
    print(f"first order: {len(names)} margin gradients {grads:.1f} s ({grads / len(names):.2f} s each)")
    print(f"ratio exact / first order: {one_pass * len(names) / grads:.1f}×")


def quality(path: str, draws: int, seed: int) -> None:
    s = TaskSpaces.load(path)
    exact, lin = s.matrices["transfer_margin"], s.matrices["transfer_linear"]
    t = len(s.tasks)
    a = agreement(exact, lin)
    print(f"{path}: {t} tasks")
    print("agreement: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in a.items()))
    rng = np.random.default_rng(seed)
    print("calibration (k rows exact; agreement off the diagonal on the other rows; mean over draws):")
    for k in (2, 3, 5, max(2, t // 10), max(2, t // 5)):
        if k >= t - 2:
            continue
        before, after = [], []
        for _ in range(draws):
            rows = np.sort(rng.choice(t, k, replace=False))
            rest = np.setdiff1d(np.arange(t), rows)
            cal = calibrate_columns(lin, exact[rows], rows)
            sub = np.ix_(rest, rest)
            off = ~np.eye(len(rest), dtype=bool)
            e = exact[sub][off]
            before.append((np.corrcoef(e, lin[sub][off])[0, 1], np.mean(np.abs(lin[sub][off])) / np.mean(np.abs(e))))
            after.append((np.corrcoef(e, cal[sub][off])[0, 1], np.mean(np.abs(cal[sub][off])) / np.mean(np.abs(e))))
        b, c = np.mean(before, 0), np.mean(after, 0)
        share = f"{k / t:.0%} of eval2"
        print(f"  k = {k:3d} ({share}): Pearson {b[0]:.3f} → {c[0]:.3f}, magnitude ratio {b[1]:.2f} → {c[1]:.2f}")
    print("screening (share of the top cells by |exact| that first order ranks in its own top):")
    for top in (0.05, 0.1, 0.2):
        print(f"  top {top:.0%}: {screen_recall(exact, lin, top):.2f} (chance {top:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cost", action="store_true")
    ap.add_argument("--tasks", type=int, default=67)
    ap.add_argument("--n-eval", type=int, default=50)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--matrices", action="append", default=[])
    ap.add_argument("--draws", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.cost:
        cost(args.tasks, args.n_eval, args.model)
    for path in args.matrices:
        quality(path, args.draws, args.seed)


if __name__ == "__main__":
    main()
