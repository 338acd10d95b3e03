"""Gradient similarity: count-sketch error against exact cosines on a real model, to choose the default k.

Exact task gradients (mean gradient differentials over each task's train pairs) of a few tasks are affordable on
SmolLM2-135M (538 MB each in fp32); their exact cosine matrix is compared with the sketched one for several k
and projection seeds. Prints max and mean |error| over the off-diagonal pairs, and the sketch's time per task.

    .venv/bin/python bench/bench_grad_sketch.py [--model smollm2] [--ks 4096,16384,65536,262144,1048576]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from taskspace.blimp import data
from taskspace.lm.models import load_model
from taskspace.method.ftgd import EncodedPairs, gradient_differential
from taskspace.method.similarity import count_sketch

TASKS = [  # one or two per phenomenon, so the cosines span related and unrelated pairs
    "regular_plural_subject_verb_agreement_1",
    "distractor_agreement_relational_noun",
    "anaphor_gender_agreement",
    "anaphor_number_agreement",
    "determiner_noun_agreement_1",
    "adjunct_island",
    "wh_vs_that_no_gap",
    "existential_there_quantifiers_1",
]


def exact_cosines(vectors: list[np.ndarray], chunk: int = 1 << 24) -> np.ndarray:
    """cos(g_i, g_j) of float32 vectors with a float64 Gram matrix accumulated chunk by chunk (bounded memory)."""
    t = len(vectors)
    gram = np.zeros((t, t))
    for lo in range(0, vectors[0].size, chunk):
        block = np.stack([v[lo : lo + chunk] for v in vectors]).astype(np.float64)
        gram += block @ block.T
    d = np.sqrt(np.diag(gram))
    return gram / d[:, None] / d[None, :]


def cosines(sketches: list[np.ndarray]) -> np.ndarray:
    s = np.stack(sketches)
    n = np.linalg.norm(s, axis=1)
    return (s @ s.T) / n[:, None] / n[None, :]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--revision", default=None)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--n-train", type=int, default=32)
    ap.add_argument("--ks", default="4096,16384,65536,262144,1048576")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    lm = load_model(args.model, revision=args.revision)
    tasks = args.tasks.split(",")
    train, _ = data.split_pairs(data.load_blimp(data.default_source(), tasks), args.n_train, 0, seed=0)
    names = np.asarray(train["task"].to_pylist())
    params = dict(lm.model.named_parameters())
    grads, flat = [], []
    t0 = time.perf_counter()
    for task in tasks:
        rows = train.filter(names == task)
        g = gradient_differential(lm, EncodedPairs.of(lm, rows["good"].to_pylist(), rows["bad"].to_pylist()), params)
        grads.append(g)
        flat.append(np.concatenate([v.reshape(-1).numpy() for v in g.values()]))
    print(
        f"{lm.name}: {lm.n_params:,} parameters, {len(tasks)} tasks × {args.n_train} train pairs, exact gradients "
        f"in {time.perf_counter() - t0:.0f} s ({flat[0].nbytes / 2**20:.0f} MiB each)"
    )
    exact = exact_cosines(flat)
    iu = np.triu_indices(len(tasks), 1)
    print(
        f"exact off-diagonal cosines: min {exact[iu].min():+.3f}, median {np.median(exact[iu]):+.3f}, "
        f"max {exact[iu].max():+.3f}"
    )
    print(f"\n{'k':>9}{'MiB/task':>10}{'max |err|':>11}{'mean |err|':>12}{'s/task':>9}")
    for k in (int(x) for x in args.ks.split(",")):
        errs, secs = [], []
        for seed in (int(s) for s in args.seeds.split(",")):
            t0 = time.perf_counter()
            sk = [count_sketch(g, k, seed) for g in grads]
            secs.append((time.perf_counter() - t0) / len(grads))
            errs.append(np.abs(cosines(sk) - exact)[iu])
        e = np.concatenate(errs)
        print(f"{k:>9}{k * 4 / 2**20:>10.2f}{e.max():>11.4f}{e.mean():>12.4f}{np.median(secs):>9.2f}")


if __name__ == "__main__":
    main()
