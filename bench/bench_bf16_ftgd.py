"""FTGD in bf16 against fp32 on the same model and pairs: how many selected entries a bf16 model can hold changed
(an AdamW update below half a bf16 ulp of the weight is lost when the fp32 master value is cast back), and the
own-task margin gain either way. The precision is `compute.dtype`; the defaults (lr 3e-5) were chosen in fp32.

    .venv/bin/python bench/bench_bf16_ftgd.py [--tasks T1,T2] [--lr 3e-5] [--steps 10] [--sparsity 0.01]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from taskspace.blimp import data
from taskspace.config import FTGDConfig
from taskspace.lm.models import load_model
from taskspace.lm.scoring import score_pairs
from taskspace.method.ftgd import EncodedPairs, finetune

TASKS = "anaphor_gender_agreement,determiner_noun_agreement_1,regular_plural_subject_verb_agreement_1"


def margin(lm, pairs) -> float:
    return float(np.mean(score_pairs(lm, pairs).column("margin").to_numpy()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--tasks", default=TASKS)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--sparsity", type=float, default=0.01)
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    train, ev = data.split_pairs(data.load_blimp(data.default_source(), tasks), 32, 50, 0)
    cfg = FTGDConfig(lr=args.lr, steps=args.steps, sparsity=args.sparsity, batch_size=16)
    print(f"{args.model}, lr {args.lr}, {args.steps} steps, sparsity {args.sparsity}, 32 train / 50 eval pairs")
    print(f"{'dtype':<9}{'task':<42}{'selected':>10}{'changed':>10}{'share':>8}{'margin gain':>13}{'s':>7}")
    for dtype in ("float32", "bfloat16"):
        lm = load_model(args.model, dtype=dtype, device="cpu")
        for task in tasks:
            t0 = time.perf_counter()
            tr = train.filter(np.asarray(train.column("task").to_pylist()) == task)
            te = ev.filter(np.asarray(ev.column("task").to_pylist()) == task)
            before = margin(lm, te)
            pairs = EncodedPairs.of(lm, tr.column("good").to_pylist(), tr.column("bad").to_pylist())
            delta = finetune(lm, pairs, cfg).delta
            delta.apply(lm.model)
            gain = margin(lm, te) - before
            delta.remove(lm.model)
            share = delta.n_changed / max(delta.n_selected, 1)
            print(f"{dtype:<9}{task:<42}{delta.n_selected:>10}{delta.n_changed:>10}{share:>8.3f}{gain:>+13.3f}"
                  f"{time.perf_counter() - t0:>7.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
