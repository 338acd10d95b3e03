"""Per-cell trust: each transfer cell tested on its own pairs (stats.cells), pooled over a run's replicates.

A cell (tuned i, evaluated j) is the mean over task j's eval pairs of each pair's change from eval1 to eval2_i,
so the pairs themselves are the sample: a paired sign-flip test per cell, Benjamini–Hochberg q-values over the
off-diagonal cells, a bootstrap interval. With a label-swapped control the test is on real − control, pair by pair
(same pairs, same split). Replicates contribute their own pairs (their own splits) to one pooled sample per cell.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taskspace.stats.cells import cell_tests, correctness_change
from taskspace.stats.spaces import CELL_KINDS


def _margins(scores: pa.Table, tasks: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The margins in (task, pair_id) order and each task's row positions in it."""
    order = pc.sort_indices(scores, [("task", "ascending"), ("pair_id", "ascending")])
    s = scores.take(order)
    names = np.asarray(s.column("task").to_pylist())
    return s.column("margin").to_numpy(), [np.flatnonzero(names == t) for t in tasks]


def pair_changes(eval1: pa.Table, eval2: Sequence[pa.Table], tasks: Sequence[str], metric: str) -> list[np.ndarray]:
    """Per evaluated task j: a (T, n_j) array, row i the per-pair change eval2_i − eval1 on j's pairs, in the
    probing metric (margin in nats; accuracy: −1, 0 or +1 per pair). Pairs are matched by (task, pair_id)."""
    before, rows = _margins(eval1, tasks)
    after = []
    for table in eval2:
        m, rows2 = _margins(table, tasks)
        if any(len(a) != len(b) for a, b in zip(rows, rows2)):
            raise ValueError("eval2 does not score the same pairs as eval1")
        after.append(m)
    after_m = np.stack(after)  # (T tuned, N pairs)
    out = []
    for r in rows:
        if metric == "accuracy":
            out.append(np.stack([correctness_change(before[r], a[r]) for a in after_m]))
        else:
            out.append(after_m[:, r] - before[r][None, :])
    return out


def cell_space(
    real: Sequence[list[np.ndarray]],
    control: Sequence[list[np.ndarray]] = (),
    permutations: int = 10_000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """p, q and the interval of every transfer cell: `real` one `pair_changes` per replicate, `control` the
    matching control's (empty: none). Replicates' pairs are pooled per cell."""
    pooled = [np.concatenate([rep[j] for rep in real], axis=1) for j in range(len(real[0]))]
    ctrl = [np.concatenate([rep[j] for rep in control], axis=1) for j in range(len(real[0]))] if control else None
    res = cell_tests(pooled, permutations=permutations, seed=seed, control=ctrl)
    return dict(zip(CELL_KINDS, (res.p, res.q, res.low, res.high)))
