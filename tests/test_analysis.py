import itertools
import json

import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import pearsonr, spearmanr

from taskspace.blimp.words import sentence_words, task_words
from taskspace.stats import analysis as A
from taskspace.stats.grouping import groups_for, load_grouping
from taskspace.stats.permutations import group_relabellings

GROUPS9 = ["a"] * 3 + ["b"] * 3 + ["c"] * 3
GROUPS12 = GROUPS9 + ["d"] * 3


def test_hypothesis_space():
    h = A.hypothesis_space(["x", "y", "x"])
    np.testing.assert_array_equal(h, [[1, 0, 1], [0, 1, 0], [1, 0, 1]])


def test_symmetrize_and_offdiag():
    m = np.arange(9.0).reshape(3, 3)
    np.testing.assert_array_equal(A.symmetrize(m), [[0, 2, 4], [2, 4, 6], [4, 6, 8]])
    np.testing.assert_array_equal(A.offdiag(m), [1, 2, 5])
    np.testing.assert_array_equal(A.offdiag(m, symmetric=False), [1, 2, 3, 5, 6, 7])


def test_mantel_on_the_hypothesis_itself_gives_r1_and_smallest_p():
    h = A.hypothesis_space(GROUPS9)
    res = A.mantel_test(2 * h + 0.5, h, permutations=1000, seed=0)
    assert res.r == pytest.approx(1.0) and res.permutations == 1000
    # only label permutations that keep the 3 blocks intact tie with r = 1: 3!·(3!)³ of 9! ≈ 0.36%
    assert res.p <= 0.01
    h12 = A.hypothesis_space(GROUPS12)
    assert A.mantel_test(h12, h12, permutations=1000, seed=0).p < 0.005


def test_mantel_on_unrelated_matrix_has_large_p_and_matches_scipy():
    rng = np.random.default_rng(42)
    m = rng.normal(size=(9, 9))
    h = A.hypothesis_space(GROUPS9)
    res = A.mantel_test(m, h, permutations=1000, seed=0)
    assert res.p > 0.05
    iu = np.triu_indices(9, 1)
    assert res.r == pytest.approx(spearmanr(((m + m.T) / 2)[iu], h[iu]).statistic)
    assert A.spearman_offdiag(m, h) == pytest.approx(res.r)
    assert A.mantel_test(m, h, permutations=1000, seed=0) == res  # reproducible
    assert A.mantel_test(m, h, permutations=1000, seed=1).r == res.r
    pear = A.mantel_test(m, h, permutations=10, method="pearson")
    assert pear.r == pytest.approx(pearsonr(((m + m.T) / 2)[iu], h[iu]).statistic)


def test_mantel_both_directions_matches_scipy():
    rng = np.random.default_rng(5)
    m, h = rng.normal(size=(6, 6)), A.hypothesis_space(["a", "a", "b", "b", "c", "c"])
    off = ~np.eye(6, dtype=bool)
    res = A.mantel_test(m, h, permutations=50, symmetric=False)
    assert res.r == pytest.approx(spearmanr(m[off], h[off]).statistic)
    assert A.spearman_offdiag(m, h, symmetrize_first=False) == pytest.approx(res.r)


def test_mantel_p_approaches_exact_enumeration():
    # 5 tasks: all 120 label permutations enumerable; many random ones must give nearly the exact p
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    iu = np.triu_indices(5, 1)
    sa, y = (a + a.T) / 2, ((b + b.T) / 2)[iu]
    r_obs = spearmanr(sa[iu], y).statistic
    rs = np.array([spearmanr(sa[np.ix_(p, p)][iu], y).statistic for p in itertools.permutations(range(5))])
    hits = {"two-sided": np.abs(rs) >= abs(r_obs) - 1e-12, "greater": rs >= r_obs - 1e-12}
    for alternative, hit in hits.items():
        res = A.mantel_test(a, b, permutations=20000, seed=3, alternative=alternative)
        assert res.p == pytest.approx(hit.mean(), abs=0.015)


def test_mantel_greater_is_one_sided():
    h = A.hypothesis_space(GROUPS9)
    assert A.mantel_test(-h, h, permutations=200).p <= 0.02  # |r| = 1, two-sided
    assert A.mantel_test(-h, h, permutations=200, alternative="greater").p == 1.0


def test_mantel_rejects_bad_inputs():
    with pytest.raises(ValueError, match="NaN entries"):
        A.mantel_test(np.full((3, 3), np.nan), np.eye(3))
    with pytest.raises(ValueError, match="T >= 3"):
        A.mantel_test(np.eye(2), np.eye(2))
    with pytest.raises(ValueError, match="permutations >= 1"):
        A.mantel_test(np.eye(3), np.eye(3), permutations=0)
    with pytest.raises(ValueError, match="alternative"):
        A.mantel_test(np.eye(3), np.eye(3), alternative="less")
    with pytest.raises(ValueError, match="differ in shape"):
        A.mantel_test(np.eye(3), np.eye(4))
    assert np.isnan(A.mantel_test(np.ones((4, 4)), np.eye(4)).r)  # constant space: no correlation
    assert np.isnan(A.spearman_offdiag(np.ones((4, 4)), np.eye(4) + np.arange(16).reshape(4, 4)))


def test_within_between_by_hand():
    m = np.array([[0, 4, 1, 1], [4, 0, 2, 0], [1, 2, 0, 6], [1, 0, 6, 0]], float)
    res = A.within_between(m, ["p", "p", "q", "q"], permutations=200, seed=0)
    assert res.within == pytest.approx((4 + 6) / 2)  # pairs (0,1) and (2,3)
    assert res.between == pytest.approx((1 + 1 + 2 + 0) / 4)
    assert res.contrast == pytest.approx(5 - 1)
    assert (res.n_within, res.n_between) == (2, 4)
    # 3 distinct pairings of 4 tasks into 2+2, only the observed one reaches contrast 4: p ≈ 1/3
    assert res.p == pytest.approx(1 / 3, abs=0.1)
    with pytest.raises(ValueError, match="both same-group and different-group"):
        A.within_between(m, ["p"] * 4)
    with pytest.raises(ValueError, match="both same-group and different-group"):
        A.within_between(m, ["p", "q", "r", "s"])


def test_within_between_asymmetric_and_significant():
    m = np.array([[0, 2, 0], [4, 0, 1], [0, 3, 0]], float)
    sym = A.within_between(m, ["p", "p", "q"], permutations=10)
    assert (sym.within, sym.between) == (3.0, pytest.approx((0 + 2) / 2))
    both = A.within_between(m, ["p", "p", "q"], permutations=10, symmetric=False)
    assert (both.n_within, both.n_between) == (2, 4)
    assert (both.within, both.between) == (3.0, pytest.approx((0 + 1 + 0 + 3) / 4))
    h = A.hypothesis_space(GROUPS12)
    assert A.within_between(h, GROUPS12, permutations=1000).p < 0.005


def test_partial_spearman_matches_formula():
    rng = np.random.default_rng(1)
    a, b, c = (rng.normal(size=(6, 6)) for _ in range(3))
    iu = np.triu_indices(6, 1)
    x, y, z = (((m + m.T) / 2)[iu] for m in (a, b, c))
    rxy, rxz, ryz = spearmanr(x, y).statistic, spearmanr(x, z).statistic, spearmanr(y, z).statistic
    want = (rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2))
    assert A.partial_spearman(a, b, c) == pytest.approx(want)


def test_partial_hypothesis_test_by_brute_force():
    """6 tasks in 3 pairs: 15 distinct groupings. Each one's partial Spearman from scipy's formula, one grouping at
    a time; p = the share of groupings (the observed one included) at least as extreme."""
    rng = np.random.default_rng(3)
    groups = ["a", "a", "b", "b", "c", "c"]
    space, lexical = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    space += 2 * A.hypothesis_space(groups)  # some structure, so the observed grouping stands out
    iu = np.triu_indices(6, 1)
    x, z = (((m + m.T) / 2)[iu] for m in (space, lexical))

    def partial(labels) -> float:
        y = A.hypothesis_space(list(labels))[iu]
        rxy, rxz, ryz = spearmanr(x, y).statistic, spearmanr(x, z).statistic, spearmanr(y, z).statistic
        return (rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2))

    labellings = group_relabellings(groups, 100, 0).labels
    assert len(labellings) == 15
    values = np.array([partial(lab) for lab in labellings])
    res = A.partial_hypothesis_test(space, groups, lexical, permutations=100)
    assert res.r == pytest.approx(values[0])
    assert res.r == pytest.approx(A.partial_spearman(space, A.hypothesis_space(groups), lexical))
    assert res.exact and res.p == pytest.approx(np.sum(np.abs(values) >= abs(values[0]) - 1e-12) / 15)
    assert res.p < 0.2  # the planted structure survives the control


def test_lexical_overlap_and_chance_jaccard():
    words = [sentence_words(["The cat sleeps."]), sentence_words(["The dog, sleeps?"]), {"x"}]
    assert words[0] == {"the", "cat", "sleeps"} and words[1] == {"the", "dog", "sleeps"}
    pairs = pa.table({"task": ["a", "a", "b"], "good": ["The cat sleeps.", "A dog", "It is."],
                      "bad": ["The cat sleep.", "A dogs", "Is it?"]})  # fmt: skip
    assert task_words([pairs]) == {"a": {"the", "cat", "sleeps", "sleep", "a", "dog", "dogs"}, "b": {"it", "is"}}
    lex = A.lexical_overlap(words)
    assert lex[0, 1] == pytest.approx(2 / 4) and lex[0, 2] == 0 and lex[1, 1] == 1
    assert A.jaccard_chance(0.5) == 1 / 3
    assert A.jaccard_chance(1.0) == 1.0
    with pytest.raises(ValueError, match="sparsity"):
        A.jaccard_chance(0)
    rng = np.random.default_rng(0)
    m1, m2 = rng.random(200_000) < 0.1, rng.random(200_000) < 0.1
    assert (m1 & m2).sum() / (m1 | m2).sum() == pytest.approx(A.jaccard_chance(0.1), rel=0.05)


def test_cluster_and_group_order():
    m = np.full((4, 4), 0.1)
    m[0, 2] = m[2, 0] = m[1, 3] = m[3, 1] = 0.9
    pos = {t: k for k, t in enumerate(A.cluster_order(m, ["t0", "t1", "t2", "t3"]))}
    assert abs(pos[0] - pos[2]) == 1 and abs(pos[1] - pos[3]) == 1
    big = 100 * A.hypothesis_space(["x", "y", "x", "y", "x", "y"]) - 300  # any value range works
    order = A.cluster_order(big, list("abcdef"))
    assert sorted(order[:3]) in ([0, 2, 4], [1, 3, 5])
    assert A.group_order(["b", "a", "b", "a"]) == [1, 3, 0, 2]


def test_compare_spaces():
    rng = np.random.default_rng(3)
    tasks = [f"t{i}" for i in range(6)]
    a = rng.normal(size=(6, 6))
    same = A.compare_spaces(a, a, tasks, permutations=100)
    assert same.r == pytest.approx(1.0) and not same.difference.any()
    b = a.copy()
    b[4, :] += 10
    c = A.compare_spaces(a, b, tasks, permutations=100, top=2)
    np.testing.assert_allclose(c.difference, a - b)
    assert c.most_changed[0] == ("t4", pytest.approx(10 * np.sqrt(5)))  # diagonal excluded
    assert len(c.most_changed) == 2


def test_stability():
    a = np.array([[0, 1, 2, 3], [1, 0, 4, 5], [2, 4, 0, 6], [3, 5, 6, 0]], float)
    rev = a.max() - a  # reversed ranks off the diagonal
    st = A.stability([a, 2 * a, rev])
    assert st.with_next == [pytest.approx(1.0), pytest.approx(-1.0)]
    assert st.with_last == [pytest.approx(-1.0), pytest.approx(-1.0), 1.0]
    assert A.stability([a]) == A.StabilityResult([], [1.0])


def test_grouping_files(tmp_path):
    j = tmp_path / "g.json"
    j.write_text(json.dumps({"t1": "x", "t2": "y"}))
    assert load_grouping(j) == {"t1": "x", "t2": "y"}
    c = tmp_path / "g.csv"
    c.write_text("task,group\nt1,x\nt2,y\n")
    assert load_grouping(c) == {"t1": "x", "t2": "y"}
    headerless = tmp_path / "g.tsv"
    headerless.write_text("t1\tx\n\nt2\ty\n")
    assert load_grouping(headerless) == {"t1": "x", "t2": "y"}
    assert groups_for(["t2", "t1"], load_grouping(c)) == ["y", "x"]
    with pytest.raises(ValueError, match="no group for task"):
        groups_for(["t3"], {"t1": "x"})


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.csv", "t1,x,extra\n", r"bad.csv:1: expected two non-empty columns"),
        ("bad.csv", "t1,x\nt2\n", r"bad.csv:2: expected two"),
        ("bad.csv", "t1,x\nt1,y\n", r"bad.csv:2: task t1 is given two groups"),
        ("bad.csv", "\n", r"bad.csv: no task,group rows"),
        ("bad.json", "{oops", r"bad.json:1: malformed JSON"),
        ("bad.json", '["t1"]', r"bad.json: expected a JSON object"),
    ],
)
def test_malformed_grouping_files_name_the_file(tmp_path, name, text, message):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_grouping(f)
    with pytest.raises(ValueError, match="missing.csv not found"):
        load_grouping(tmp_path / "missing.csv")


def test_summarize_is_json_ready():
    h = A.hypothesis_space(GROUPS9)
    lexical = np.eye(9) + 0.01 * np.arange(81).reshape(9, 9)
    s = A.summarize(h + 0.1, GROUPS9, lexical=lexical, permutations=100)
    json.dumps(s, allow_nan=False)
    assert s["mantel_r"] == pytest.approx(1.0) and s["contrast"] == pytest.approx(1.0)
    keys = {"mantel_r", "mantel_p", "within", "between", "contrast", "contrast_p", "lexical_r", "partial_r"}
    keys |= {"partial_p"}
    assert set(s) == keys | {"p_floor", "p_exact", "relabellings"}
    assert s["p_exact"] == 1.0 and s["relabellings"] == 280 and s["p_floor"] == pytest.approx(1 / 280)
    assert all(v is None or type(v) is float for v in s.values())
    const = A.summarize(h, GROUPS9, lexical=np.ones((9, 9)), permutations=10)
    assert const["lexical_r"] is None and const["partial_r"] is None  # NaN → None
    assert "lexical_r" not in A.summarize(h, GROUPS9, permutations=10)


# ---- exact permutation statistics ---------------------------------------------------------------------

GROUPS6 = ["a", "a", "b", "b", "c", "c"]


def brute_force(stat, t: int) -> tuple[float, list[float]]:
    """The statistic at the identity and at every one of the T! relabellings of a T-task space."""
    perms = list(itertools.permutations(range(t)))
    return stat(list(range(t))), [stat(list(p)) for p in perms]


def test_partition_counts_by_hand():
    from taskspace.stats.permutations import count_partitions, group_relabellings

    assert count_partitions(GROUPS6) == 15  # 6! / (2!·2!·2!) / 3! (the three pairs are interchangeable)
    assert count_partitions(GROUPS9) == 280  # 9! / (3!)³ / 3!
    assert count_partitions(["a", "a", "b", "c"]) == 6  # 4! / 2! / 2! (two singletons)
    assert count_partitions(["a", "a", "b"]) == 3
    rel = group_relabellings(GROUPS9, 1000, 0)
    canon = {tuple(int(x) for x in canonical(row)) for row in rel.labels}
    assert rel.exact and len(rel.labels) == len(canon) == 280  # each distinct partition exactly once


def canonical(row):
    first = {}
    return [first.setdefault(int(c), len(first)) for c in row]


def test_grouping_tests_are_exact_against_brute_force():
    rng = np.random.default_rng(3)
    m = rng.normal(size=(6, 6)) + 1.5 * A.hypothesis_space(GROUPS6)
    mt, wb = A.hypothesis_tests(m, GROUPS6, permutations=1000, seed=0)
    g = np.array(GROUPS6)

    def mantel_r(p):  # relabel the space's tasks, keep the hypothesis
        return A.spearman_offdiag(m[np.ix_(p, p)], A.hypothesis_space(g))

    def contrast(p):
        return A.within_between(m[np.ix_(p, p)], GROUPS6, permutations=1).contrast

    r_obs, rs = brute_force(mantel_r, 6)
    c_obs, cs = brute_force(contrast, 6)
    assert mt.exact and mt.permutations == 15 and mt.min_p == pytest.approx(1 / 15)
    assert mt.r == pytest.approx(r_obs)
    assert mt.p == pytest.approx(np.mean(np.abs(rs) >= abs(r_obs) - 1e-12))  # over all 720: the same p
    assert wb.p == pytest.approx(np.mean(np.array(cs) >= c_obs - 1e-12)) and wb.min_p == pytest.approx(1 / 15)
    # the old estimate drew 1,000 random permutations of 15 partitions and reported p down to 1/1001
    assert mt.p >= 1 / 15


def test_space_comparison_is_exact_for_few_tasks_and_random_beyond():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    res = A.mantel_test(a, b, permutations=1000, seed=0)
    r_obs, rs = brute_force(lambda p: A.spearman_offdiag(a[np.ix_(p, p)], b), 5)
    assert res.exact and res.permutations == 120 and res.min_p == pytest.approx(1 / 120)
    assert res.p == pytest.approx(np.mean(np.abs(rs) >= abs(r_obs) - 1e-12))
    big = A.mantel_test(rng.normal(size=(9, 9)), rng.normal(size=(9, 9)), permutations=500, seed=0)
    assert not big.exact and big.permutations == 500 and big.min_p == pytest.approx(1 / 501)
