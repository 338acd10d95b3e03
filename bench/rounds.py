"""Interleaved timing for benchmarks on a shared machine: methods run in rounds (A B C A B C …), so load that
drifts between legs hits every method alike, and ratios are taken within a round, then summarised as the
median with its min–max over rounds."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Timings:
    """Seconds per round for each method, and each method's last result (for accuracy checks)."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    results: dict[str, object] = field(default_factory=dict)

    def median(self, label: str) -> float:
        return float(np.median(self.seconds[label]))

    def ratio(self, label: str, base: str) -> tuple[float, float, float]:
        """How many times faster `label` is than `base`: median, min, max of the per-round ratios."""
        r = np.asarray(self.seconds[base]) / np.asarray(self.seconds[label])
        return float(np.median(r)), float(r.min()), float(r.max())

    def ratio_text(self, label: str, base: str) -> str:
        med, lo, hi = self.ratio(label, base)
        return f"{med:.2f}× ({lo:.2f}–{hi:.2f})"


def interleave(methods: dict[str, Callable[[], object]], rounds: int = 3, warmup: bool = True) -> Timings:
    """Time every method once per round, in the same order each round; an untimed warm-up call first."""
    out = Timings({label: [] for label in methods})
    if warmup:
        for fn in methods.values():
            fn()
    for _ in range(rounds):
        for label, fn in methods.items():
            t0 = time.perf_counter()
            out.results[label] = fn()
            out.seconds[label].append(time.perf_counter() - t0)
    return out
