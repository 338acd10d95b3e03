"""Gemma-3-270M (`gemma3-270m`) against SmolLM2-135M (`smollm2`) on this machine, fp32: load time, parameters,
scoring throughput, one FTGD-like backward and BLiMP accuracy.

Both score the same sentences: every BLiMP task (67) × 50 eval pairs × 2 (data.split_pairs(…, 32, 50, seed=0)), as
the eval stages do (a `PreparedEval`: encoded, packed and collated once; the first pass prepares and is not timed).
The backward is one FTGD gradient differential (`gradient_differential`, every parameter) over 8 train pairs. Passes
and backwards of the two models run interleaved in rounds (bench/rounds.py), so load on a shared machine hits both
alike: seconds are medians over rounds (min–max), the ratio is the median of per-round ratios. Load time is
`load_model` from the converted cache folder (`--cold`: the one-off GGUF assembly and conversion, into a temporary
cache).

    .venv/bin/python bench/bench_gemma.py [--models gemma3-270m,smollm2] [--pairs 50] [--rounds 2] [--cold]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
from rounds import interleave

from taskspace.blimp import data
from taskspace.config import ProbeConfig
from taskspace.lm.models import load_model
from taskspace.lm.scoring import PreparedEval, score_pairs, uses_packing
from taskspace.method.ftgd import EncodedPairs, gradient_differential, param_group


def loaded(spec: str, train, ev, batch_size: int) -> dict:
    t = time.perf_counter()
    lm = load_model(spec, device="cpu", dtype="float32")
    load_s = time.perf_counter() - t
    pairs8 = train.slice(0, 8)
    return {
        "lm": lm,
        "load_s": load_s,
        "eval": PreparedEval(lm, ev, batch_size),
        "train8": EncodedPairs.of(lm, pairs8["good"].to_pylist(), pairs8["bad"].to_pylist()),
        "params": param_group(lm.model, "all"),
    }


def logged(label: str, fn, *args):
    """fn(*args), printing its seconds as it goes (a long run killed half-way still leaves its timings)."""

    def call():
        t = time.perf_counter()
        out = fn(*args)
        print(f"  {label}: {time.perf_counter() - t:.2f} s", flush=True)
        return out

    return call


def spread(xs: list[float]) -> str:
    return f"{np.median(xs):.2f} s ({min(xs):.2f}–{max(xs):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="gemma3-270m,smollm2")
    ap.add_argument("--pairs", type=int, default=50, help="eval pairs per task")
    ap.add_argument("--batch-size", type=int, default=ProbeConfig().eval_batch_size)
    ap.add_argument("--rounds", type=int, default=2, help="timed passes per model (interleaved)")
    ap.add_argument("--cold", action="store_true", help="also time the GGUF conversion, into a temporary cache")
    args = ap.parse_args()
    import transformers  # noqa: F401 - imported before timing the loads

    specs = args.models.split(",")
    src = data.default_source()
    train, ev = data.split_pairs(data.load_blimp(src, data.select_tasks(src)), 32, args.pairs, seed=0)
    n = 2 * ev.num_rows
    print(f"{torch.get_num_threads()} threads; {ev.num_rows} eval pairs ({n} sentences), batch size "
          f"{args.batch_size}; fp32 on the CPU; {args.rounds} rounds", flush=True)  # fmt: skip
    if args.cold:
        for spec in specs:
            with tempfile.TemporaryDirectory() as tmp:
                old = os.environ.get("TASKSPACE_CACHE")
                os.environ["TASKSPACE_CACHE"] = tmp
                t = time.perf_counter()
                load_model(spec, device="cpu", dtype="float32")
                cold = time.perf_counter() - t
                print(f"{spec}: first load (GGUF assembled, de-quantised, saved, loaded) {cold:.1f} s", flush=True)
                if old is None:
                    del os.environ["TASKSPACE_CACHE"]
                else:
                    os.environ["TASKSPACE_CACHE"] = old
    models = {spec: loaded(spec, train, ev, args.batch_size) for spec in specs}
    passes = interleave(
        {s: logged(f"{s} pass", score_pairs, m["lm"], m["eval"]) for s, m in models.items()}, args.rounds
    )
    grad = gradient_differential
    backward = interleave(
        {s: logged(f"{s} backward", grad, m["lm"], m["train8"], m["params"], 8) for s, m in models.items()}, rounds=3
    )
    for spec, m in models.items():
        lm, scores = m["lm"], passes.results[spec]
        assert all(torch.isfinite(g).all() for g in backward.results[spec].values())
        print(
            f"{spec} ({type(lm.model).__name__}): {lm.n_params / 1e6:.1f}M parameters, prefix {lm.prefix}, "
            f"{'packed' if uses_packing(lm) else 'plain (unpacked)'} scoring, load {m['load_s']:.1f} s\n"
            f"  eval pass {spread(passes.seconds[spec])} = {n / passes.median(spec):.1f} sentences/s · "
            f"FTGD backward over 8 pairs {spread(backward.seconds[spec])} · "
            f"BLiMP accuracy {scores['correct'].to_numpy().mean():.1%} over {ev.num_rows} pairs"
        )
    if len(specs) == 2:
        a, b = specs
        print(f"{b} is {passes.ratio_text(b, a)} as fast as {a} per pass, {backward.ratio_text(b, a)} per backward")


if __name__ == "__main__":
    main()
