"""Per-cell paired tests from a run's scores (method/paired.py): the per-pair changes by hand, pooling over
replicates, the control, and the marks they give the TUI and the exports."""

import numpy as np
import pyarrow as pa
import pytest

from taskspace.method.paired import CELL_KINDS, cell_space, pair_changes
from taskspace.stats.cells import signflip_test


def scores(rows: list[tuple[str, int, float]]) -> pa.Table:
    task, pid, margin = zip(*rows)
    m = np.array(margin, float)
    return pa.table({"task": list(task), "pair_id": pa.array(pid, pa.int32()), "margin": m, "correct": m > 0})


def test_pair_changes_by_hand_match_pairs_by_id_not_row_order():
    eval1 = scores([("a", 0, 1.0), ("a", 1, -1.0), ("b", 0, 2.0)])
    tuned_a = scores([("b", 0, 2.5), ("a", 1, 0.5), ("a", 0, 3.0)])  # rows in another order
    tuned_b = scores([("a", 0, 1.0), ("a", 1, -2.0), ("b", 0, 4.0)])
    margin = pair_changes(eval1, [tuned_a, tuned_b], ["a", "b"], "margin")
    np.testing.assert_allclose(margin[0], [[2.0, 1.5], [0.0, -1.0]])  # evaluated on a: rows tuned a, tuned b
    np.testing.assert_allclose(margin[1], [[0.5], [2.0]])
    acc = pair_changes(eval1, [tuned_a, tuned_b], ["a", "b"], "accuracy")
    np.testing.assert_allclose(acc[0], [[0, 1], [0, 0]])  # pair 1 of a became correct after tuning on a


def test_cell_space_pools_replicates_and_subtracts_the_control():
    rng = np.random.default_rng(0)
    rep1 = [rng.normal(size=(2, 5)) for _ in range(2)]
    rep2 = [rng.normal(size=(2, 4)) for _ in range(2)]
    out = cell_space([rep1, rep2], permutations=2**9)
    assert set(out) == set(CELL_KINDS)
    pooled = np.concatenate([rep1[1][0], rep2[1][0]])  # cell (tuned 0, evaluated 1): 9 pairs, 512 patterns exact
    assert out["transfer_p"][0, 1] == pytest.approx(signflip_test(pooled, 2**9).p)
    assert np.isnan(out["transfer_q"][0, 0]) and np.isfinite(out["transfer_q"][0, 1])
    assert out["transfer_low"][0, 1] <= pooled.mean() <= out["transfer_high"][0, 1]
    same = cell_space([rep1], [rep1], permutations=64)  # a control that moved exactly as much: nothing left
    assert np.nanmin(same["transfer_p"]) == 1.0


def test_a_strong_shift_is_significant_after_bh_and_noise_is_not():
    rng = np.random.default_rng(1)
    t, n = 6, 40
    changes = [rng.normal(size=(t, n)) for _ in range(t)]
    changes[2][4] += 1.5  # tuning on task 4 moves task 2's pairs by 1.5 nats
    out = cell_space([changes], permutations=2000)
    q = out["transfer_q"]
    assert q[4, 2] < 0.05
    off = ~np.eye(t, dtype=bool)
    off[4, 2] = False
    assert (q[off] >= 0.05).mean() > 0.9
