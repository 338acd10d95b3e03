"""FTGD and probing speed on the tiny model (built on the fly): FTGD steps/s and pairs/s for dense vs sparse
masks (interleaved in rounds, bench/rounds.py: median ratio with min–max) and the cost of mask selection; a
full T×T transfer space for several T. (Gradient-sketch accuracy: bench/bench_grad_sketch.py.)

    .venv/bin/python bench/bench_ftgd_probe.py [--sizes 6,13,67] [--steps 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from rounds import interleave

from taskspace.blimp import data
from taskspace.lm import tiny
from taskspace.lm.models import load_model
from taskspace.method.ftgd import EncodedPairs, FTGDConfig, finetune, gradient_differential, topk_mask
from taskspace.method.probing import ProbeConfig, probe


def build(n_train: int, n_eval: int):
    src = data.default_source()
    allp = data.load_blimp(src, data.select_tasks(src))
    train, ev = data.split_pairs(allp, n_train, n_eval, seed=0)
    out = Path(tempfile.mkdtemp()) / "tiny"
    v, s = tiny.sentences_for_tiny(allp, train)
    tiny.build_tiny(out, v, s, steps=300, save_every=300)
    return load_model(str(out), revision="step300"), train, ev


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="6,13,67")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--n-train", type=int, default=64)
    ap.add_argument("--n-eval", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    lm, train, ev = build(args.n_train, args.n_eval)
    names = np.asarray(train["task"].to_pylist())
    tasks = list(dict.fromkeys(names.tolist()))
    rows = train.filter(names == tasks[0])
    pairs = EncodedPairs.of(lm, rows["good"].to_pylist(), rows["bad"].to_pylist())
    params = dict(lm.model.named_parameters())

    t0 = time.perf_counter()
    grads = gradient_differential(lm, pairs, params, 16)
    t_grad = time.perf_counter() - t0
    t0 = time.perf_counter()
    topk_mask(grads, 0.01)
    t_mask = time.perf_counter() - t0
    print(
        f"tiny model {lm.n_params:,} params; gradient differential over {len(pairs)} pairs {t_grad * 1e3:.0f} ms; "
        f"top-1% mask selection {t_mask * 1e3:.1f} ms"
    )
    variants = {"dense (1.0)": 1.0, "sparse 10%": 0.1, "sparse 1%": 0.01}
    t = interleave(
        {
            label: lambda sp=sp: finetune(lm, pairs, FTGDConfig(sparsity=sp, lr=1e-3, steps=args.steps), grads=grads)
            for label, sp in variants.items()
        },
        args.rounds,
    )
    print(f"{'FTGD':<14}{'steps/s':>9}{'pairs/s':>9}{'× dense (min–max)':>22}")
    for label in variants:
        rate = args.steps / t.median(label)
        print(f"{label:<14}{rate:>9.1f}{rate * 16:>9.0f}{t.ratio_text(label, 'dense (1.0)'):>22}")
    print(f"\n{'T tasks':<10}{'transfer space (s)':>20}{'per task (s)':>14}")
    for size in (int(x) for x in args.sizes.split(",")):
        keep = set(tasks[:size])
        tr = train.filter(np.isin(names, list(keep)))
        evn = np.asarray(ev["task"].to_pylist())
        e = ev.filter(np.isin(evn, list(keep)))
        t0 = time.perf_counter()
        probe(lm, tr, e, Path(tempfile.mkdtemp()), FTGDConfig(lr=1e-3, steps=args.steps), ProbeConfig())
        secs = time.perf_counter() - t0
        print(f"{size:<10}{secs:>20.1f}{secs / size:>14.2f}")


if __name__ == "__main__":
    main()
