"""Whether a task space is above noise: replicates (other FTGD seeds, other train/eval splits) and label-swapped
controls of one run, summarised as a mean space with per-cell intervals, split-half reliability and a noise floor.

- A **control** tunes each task on its own pairs with the good/bad labels of a random half swapped: the FTGD
  signal cancels in expectation, so the control's transfer is what tuning moves by chance. Its off-diagonal
  |values| give the noise floor; a cell counts as above noise when its |transfer| exceeds their 95th percentile.
- **Reliability** is the Spearman correlation between the off-diagonals of two halves' mean spaces (all
  balanced halvings, or 50 random ones), stepped up to the full set of replicates by Spearman–Brown.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy import stats

from taskspace.stats.analysis import spearman_offdiag
from taskspace.stats.spaces import CELL_KINDS, COMPARED, TaskSpaces

LEVEL = 0.95


def swap_labels(n: int, seed: int) -> np.ndarray:
    """Which of n pairs a control swaps (good ↔ bad): a random half, exactly (⌊n/2⌋ of them), seeded — so the
    pairs pushing each way balance and the expected push of the control is zero, not that of a coin's excess."""
    swap = np.zeros(n, dtype=bool)
    swap[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    return swap


def spearman_brown(r: float | None, k: float = 2.0) -> float | None:
    """The reliability of a k-times longer measure from the reliability r of one part: k·r / (1 + (k − 1)·r)."""
    if r is None or not np.isfinite(r):
        return None
    return float(k * r / (1 + (k - 1) * r))


def split_half(reps: np.ndarray, max_splits: int = 50, seed: int = 0) -> float | None:
    """Mean Spearman between the two halves' mean spaces (off-diagonal, symmetrised), over balanced halvings of
    the R replicates (every one when few; `max_splits` random ones otherwise); None for one replicate."""
    r = len(reps)
    if r < 2:
        return None
    splits = [a for a in itertools.combinations(range(r), r // 2) if 0 in a]  # each halving once
    if len(splits) > max_splits:
        pick = np.random.default_rng(seed).choice(len(splits), max_splits, replace=False)
        splits = [splits[k] for k in sorted(pick)]
    rs = []
    for a in splits:
        b = [k for k in range(r) if k not in a][: len(a)]
        rs.append(spearman_offdiag(reps[list(a)].mean(0), reps[b].mean(0)))
    rs = [x for x in rs if np.isfinite(x)]
    return float(np.mean(rs)) if rs else None


def interval(reps: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """Half-width of the t-interval of each cell's mean over R replicates (NaN for one replicate)."""
    r = len(reps)
    if r < 2:
        return np.full(reps.shape[1:], np.nan)
    sd = reps.std(axis=0, ddof=1)
    return stats.t.ppf(0.5 + level / 2, r - 1) * sd / np.sqrt(r)


def noise_floor(transfer: np.ndarray, controls: np.ndarray, q: float = LEVEL) -> dict:
    """The q-quantile of |control transfer| off the diagonal, and how many off-diagonal transfer cells exceed it."""
    eye = np.eye(transfer.shape[0], dtype=bool)
    null = np.abs(np.stack([c[~eye] for c in controls]).ravel())
    null = null[np.isfinite(null)]
    cells = np.abs(transfer[~eye])
    cells = cells[np.isfinite(cells)]
    if null.size == 0 or cells.size == 0:
        return {"noise_floor": None, "cells_above_noise": None, "cells": int(cells.size)}
    floor = float(np.quantile(null, q))
    return {"noise_floor": floor, "cells_above_noise": int((cells > floor).sum()), "cells": int(cells.size)}


def aggregate(reps: Sequence[TaskSpaces], controls: Sequence[TaskSpaces] = ()) -> tuple[TaskSpaces, dict]:
    """The run's spaces from its replicates (the mean of each kind, `transfer_ci` the interval half-width) and,
    with controls, `transfer_control` and `transfer_minus_control`; and a summary: replicate count,
    reliability per kind, the noise floor."""
    tasks = reps[0].tasks
    if any(r.tasks != tasks for r in [*reps, *controls]):
        raise ValueError("replicates and controls must cover the same tasks in the same order")
    # per-cell tests are not averaged over replicates: they are redone on the pooled pairs (method.paired)
    kinds = [k for k in reps[0].matrices if all(k in r.matrices for r in reps) and k not in CELL_KINDS]
    stacked = {k: np.stack([r.matrices[k] for r in reps]) for k in kinds}
    out = {k: np.nanmean(v, axis=0) if len(reps) > 1 else v[0] for k, v in stacked.items()}
    measured = "transfer" if "transfer" in stacked else "transfer_linear"  # first order alone: no eval2
    out[f"{measured}_ci"] = interval(stacked[measured])
    summary: dict = {"replicates": len(reps), "reliability": {}}
    for kind in [*COMPARED, "transfer_linear"]:
        if kind not in stacked:
            continue
        r = split_half(stacked[kind])
        summary["reliability"][kind] = {"split_half": r, "spearman_brown": spearman_brown(r)}
    if controls and measured == "transfer":  # the noise floor is exact transfer's: a control of eval2
        ctrl = np.stack([c.matrices["transfer"] for c in controls])
        out["transfer_control"] = ctrl.mean(0)
        out["transfer_minus_control"] = out["transfer"] - out["transfer_control"]
        summary["noise"] = noise_floor(out["transfer"], ctrl)
    return TaskSpaces(tasks, out, reps[0].key), summary
