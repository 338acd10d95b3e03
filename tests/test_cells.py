"""Per-cell paired tests of a task space: sign-flip p, BH q and intervals against values worked out by hand."""

import itertools

import numpy as np
import pytest

from taskspace.errors import AnalysisError
from taskspace.stats.cells import bh_qvalues, cell_tests, correctness_change, signflip_test


def _exact_by_hand(d):
    """Every sign pattern of d, written out: the fraction whose |mean| reaches the observed one."""
    d = np.asarray(d, float)
    means = [abs(np.mean(np.array(s) * d)) for s in itertools.product([1, -1], repeat=len(d))]
    return np.mean([m >= abs(d.mean()) - 1e-12 for m in means])


def test_signflip_exact_by_hand():
    r = signflip_test([1.0, 2.0, 3.0])
    # 8 patterns, |sum| = 6, 4, 2, 0, 0, 2, 4, 6: only all-plus and all-minus reach 6
    assert r.p == pytest.approx(2 / 8) and r.exact and r.count == 8 and r.mean == pytest.approx(2.0)
    assert signflip_test([1.0, -1.0]).p == 1.0  # every pattern's |sum| (0 or 2) reaches the observed 0
    assert signflip_test([0.0, 0.0, 0.0]).p == 1.0 and signflip_test([0.0, 0.0]).exact
    d = [0.3, -1.2, 2.5, 0.7, 1.1]
    assert signflip_test(d).p == pytest.approx(_exact_by_hand(d))


def test_signflip_zeros_do_not_change_p():
    with_zeros = signflip_test([1.0, 0.0, 2.0, 0.0, 3.0, 0.0])
    assert with_zeros.p == pytest.approx(0.25) and with_zeros.exact and with_zeros.count == 8
    assert with_zeros.mean == pytest.approx(1.0)  # the mean still divides by every pair
    # 40 pairs, 3 nonzero: exact over 2^3 patterns, where 2^40 could never be enumerated
    assert signflip_test(np.r_[[1.0, 2.0, 3.0], np.zeros(37)], permutations=10).exact


def test_signflip_monte_carlo_near_exact():
    d = np.random.default_rng(3).normal(0.6, 1.0, size=12)
    exact = signflip_test(d, permutations=5000)  # 2^12 = 4096 ≤ 5000: enumerated
    mc = signflip_test(d, permutations=2000, seed=1)
    assert exact.exact and exact.count == 4096 and exact.p == pytest.approx(_exact_by_hand(d))
    assert not mc.exact and mc.count == 2000 and 0.02 < exact.p < 0.5
    assert mc.p == pytest.approx(exact.p, abs=0.03)  # MC standard error ≈ √(p(1 − p)/2000) < 0.012
    assert mc.p * 2001 == pytest.approx(round(mc.p * 2001))  # (1 + b) / (1 + 2000)


def test_signflip_minimum_p_monte_carlo():
    r = signflip_test(np.arange(1.0, 21.0), permutations=99)  # all positive: no draw but all-plus reaches it
    assert r.p == pytest.approx(1 / 100) and not r.exact


def test_signflip_bad_input():
    assert np.isnan(signflip_test([]).p) and np.isnan(signflip_test([1.0, np.nan]).p)
    with pytest.raises(AnalysisError):
        signflip_test(np.ones((2, 2)))
    with pytest.raises(AnalysisError):
        signflip_test([1.0], permutations=0)


def test_bh_by_hand():
    # sorted 0.01, 0.03, 0.04, 0.5 → ·4/k: 0.04, 0.06, 0.0533, 0.5 → running min from the top: 0.04, .0533, .0533, .5
    q = bh_qvalues([0.01, 0.04, 0.03, 0.5])
    assert q == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.5])
    q = bh_qvalues([0.01, np.nan, 0.04, 0.03, 0.5])  # NaN kept, not counted in m
    assert np.isnan(q[1]) and q[[0, 2, 3, 4]] == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert bh_qvalues([0.9, 0.8]) == pytest.approx([0.9, 0.9]) and bh_qvalues([1.0, 1.0]).max() == 1.0
    assert bh_qvalues(np.array([[0.01, 0.02], [0.5, np.nan]])).shape == (2, 2)
    with pytest.raises(AnalysisError):
        bh_qvalues([0.5, 1.5])


def test_bh_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    p = np.random.default_rng(0).uniform(size=200) ** 3
    assert bh_qvalues(p) == pytest.approx(stats.false_discovery_control(p, method="bh"))


def test_correctness_change_by_hand():
    before = np.array([-1.0, 0.5, 0.0, 2.0, 0.0, np.nan])
    after = np.array([1.0, -0.5, 0.3, 1.0, 0.0, 1.0])
    got = correctness_change(before, after)
    assert got[:5] == pytest.approx([1.0, -1.0, 1.0, 0.0, 0.0]) and np.isnan(got[5])  # margin 0 counts as wrong


def _ragged(t=4, seed=0):
    """Per evaluated task j, (T, n_j) changes with different pair counts, some exact (few) some not."""
    rng = np.random.default_rng(seed)
    return [rng.normal(0.3 * (j % 2), 1.0, size=(t, n)) for j, n in enumerate([5, 20, 8, 20][:t])]


def test_cell_tests_agree_with_signflip_cell_by_cell():
    cols = _ragged()
    cols[2][1, :5] = 0.0  # 3 nonzero of 8: exact over 2^3
    res = cell_tests(cols, permutations=200, seed=4)  # 2^5 and 2^3 ≤ 200 < 2^8: n = 5 exact, n = 8 and 20 not
    for i, j in itertools.product(range(4), range(4)):
        one = signflip_test(cols[j][i], permutations=200, seed=4)
        assert res.p[i, j] == pytest.approx(one.p) and res.exact[i, j] == one.exact
        assert res.effect[i, j] == pytest.approx(cols[j][i].mean())
        assert res.low[i, j] <= res.effect[i, j] <= res.high[i, j]
    assert res.exact[:, 0].all() and not res.exact[:, 1].any() and res.exact[1, 2] and not res.exact[0, 2]


def test_cell_tests_3d_array_is_indexed_tuned_evaluated_pair():
    a = np.random.default_rng(2).normal(size=(3, 3, 6))
    res = cell_tests(a, permutations=100)
    assert res.p[0, 2] == pytest.approx(signflip_test(a[0, 2]).p)
    assert res.effect == pytest.approx(a.mean(-1))


def test_cell_tests_control_subtraction():
    cols = _ragged()
    same = cell_tests(cols, control=cols, permutations=500)
    assert (same.effect == 0).all() and (same.p == 1).all() and (same.low == 0).all() and (same.high == 0).all()
    ctrl = _ragged(seed=9)
    res = cell_tests(cols, control=ctrl, permutations=500)
    assert res.p[3, 1] == pytest.approx(signflip_test(cols[1][3] - ctrl[1][3], permutations=500).p)
    with pytest.raises(AnalysisError):
        cell_tests(cols, control=[c[:, :2] for c in ctrl])


def test_cell_tests_q_off_diagonal_only():
    res = cell_tests(_ragged(), permutations=200)
    off = ~np.eye(4, dtype=bool)
    assert np.isnan(np.diag(res.q)).all() and np.isfinite(np.diag(res.p)).all()
    assert res.q[off] == pytest.approx(bh_qvalues(res.p[off]))


def test_cell_tests_nan_and_empty_cells():
    cols = _ragged()
    cols[1][2, 3] = np.nan
    cols[3] = np.empty((4, 0))
    res = cell_tests(cols, permutations=200)
    for a in (res.p, res.q, res.effect, res.low, res.high):
        assert np.isnan(a[2, 1]) and np.isnan(a[:, 3]).all()
    assert np.isfinite(res.p[0, 1]) and not res.exact[2, 1]
    # the q-values are BH over the finite off-diagonal p only
    off = ~np.eye(4, dtype=bool)
    assert res.q[off] == pytest.approx(bh_qvalues(res.p[off]), nan_ok=True)


def test_cell_tests_reproducible():
    cols = _ragged()
    a, b = cell_tests(cols, permutations=300, seed=5), cell_tests(cols, permutations=300, seed=5)
    c = cell_tests(cols, permutations=300, seed=6)
    for name in ("effect", "p", "q", "low", "high", "exact"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True)
    assert not np.array_equal(a.p, c.p) and not np.array_equal(a.low, c.low)
    assert np.array_equal(a.p[:, 0], c.p[:, 0])  # exact cells do not depend on the seed


def test_cell_tests_bad_input():
    with pytest.raises(AnalysisError):
        cell_tests([np.zeros((3, 4))] * 2)  # 2 evaluated tasks but 3 tuned rows
    with pytest.raises(AnalysisError):
        cell_tests(_ragged(), confidence=1.0)


def test_cell_tests_full_scale_runs():
    changes = np.random.default_rng(0).normal(0.05, 1.0, size=(67, 67, 50))
    res = cell_tests(changes, permutations=2000, resamples=200)
    assert res.p.shape == res.q.shape == res.low.shape == res.exact.shape == (67, 67)
