"""Mask selection: peak memory and seconds of the bounded `topk_mask` against the global torch.topk it replaced.

Gradients are fp32 tensors shaped like a Pythia model's parameters (built from its config on the meta device),
filled with seeded Gaussian values at a per-tensor scale. Each variant runs in a fresh subprocess per round
(old, new, old, new, ...) and reports its peak RSS growth over its RSS just before the selection (VmHWM, reset
via /proc/self/clear_refs; tracemalloc does not see torch) and its seconds; ratios are taken within a round.
Masks are compared by a hash of the indices; where the k-th value is tied, the old pick among equal entries is
the CPU nth_element's, so k and the sum of the selected |g| are compared too.

    .venv/bin/python bench/bench_mask.py [--shape pythia-160m] [--sparsity 0.01] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def gradients(shape: str, seed: int = 0) -> dict[str, torch.Tensor]:
    from transformers import GPTNeoXForCausalLM

    from taskspace.lm.shapes import pythia_config

    with torch.device("meta"):
        model = GPTNeoXForCausalLM(pythia_config(shape))
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in model.named_parameters():
        scale = 10.0 ** float(torch.empty(1).uniform_(-4, -2, generator=gen))
        out[name] = torch.randn(p.shape, generator=gen).mul_(scale)
    return out


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(variant: str, shape: str, sparsity: float) -> None:
    from test_mask_selection import topk_reference

    from taskspace.method.ftgd import topk_mask

    grads = gradients(shape)
    fn = topk_mask if variant == "new" else topk_reference
    before = rss()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak RSS (VmHWM) to the current RSS, so the peak below is the selection's own
    t0 = time.perf_counter()
    mask = fn(grads, sparsity)
    seconds = time.perf_counter() - t0
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))  # in kB
    h = hashlib.sha256()
    for n, i in mask.items():
        h.update(n.encode() + i.numpy().tobytes())
    picked = torch.cat([grads[n].reshape(-1)[i].abs() for n, i in mask.items()])
    kth = float(picked.min())
    ties = sum(int((g.abs() == kth).sum()) for g in grads.values())
    report = {"seconds": seconds, "peak_growth": peak - before, "before": before, "sha": h.hexdigest()[:16],
              "k": picked.numel(), "sum": float(picked.double().sum()), "ties_at_kth": ties}  # fmt: skip
    print(json.dumps(report))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="pythia-160m")
    ap.add_argument("--sparsity", type=float, default=0.01)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", choices=["old", "new"])
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.shape, a.sparsity)
    n = sum(g.numel() for g in gradients(a.shape).values()) if a.shape else 0
    k = math.ceil(a.sparsity * n)
    print(f"{a.shape}: P = {n:,} fp32 entries ({n * 4 / 2**30:.2f} GiB), sparsity {a.sparsity}, k = {k:,}")
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    for r in range(a.rounds):
        for v in runs:
            cmd = [sys.executable, __file__, "--child", v, "--shape", a.shape, "--sparsity", str(a.sparsity)]
            out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            runs[v].append(out)
            grow, before = out["peak_growth"] / 2**30, out["before"] / 2**30
            print(
                f"  round {r + 1} {v}: {out['seconds']:.2f} s, peak +{grow:.2f} GiB over {before:.2f} GiB, {out['sha']}"
            )
    old, new = runs["old"], runs["new"]
    t = np.array([o["seconds"] / w["seconds"] for o, w in zip(old, new)])
    m = np.array([o["peak_growth"] / w["peak_growth"] for o, w in zip(old, new)])
    print(f"seconds  old {np.median([o['seconds'] for o in old]):.2f}  new {np.median([w['seconds'] for w in new]):.2f}"
          f"  old/new {np.median(t):.2f}× ({t.min():.2f}–{t.max():.2f})")  # fmt: skip
    print(f"peak RSS growth  old {np.median([o['peak_growth'] for o in old]) / 2**30:.2f} GiB  new "
          f"{np.median([w['peak_growth'] for w in new]) / 2**20:.0f} MiB  old/new {np.median(m):.1f}× "
          f"({m.min():.1f}–{m.max():.1f}); per parameter old {np.median([o['peak_growth'] for o in old]) / n:.1f} B, "
          f"new {np.median([w['peak_growth'] for w in new]) / n:.2f} B")  # fmt: skip
    same = old[-1]["sha"] == new[-1]["sha"]
    same_sum = old[-1]["sum"] == new[-1]["sum"] and old[-1]["k"] == new[-1]["k"]
    print(
        f"same mask: {same}; same k and sum of selected |g| (a top-k either way): {same_sum}; "
        f"entries equal to the k-th value: {new[-1]['ties_at_kth']}"
    )


if __name__ == "__main__":
    main()
