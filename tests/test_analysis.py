import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from taskspace import analysis as A

GROUPS9 = ["a"] * 3 + ["b"] * 3 + ["c"] * 3


def test_hypothesis_space_and_paper_grouping():
    h = A.hypothesis_space(["x", "y", "x"])
    np.testing.assert_array_equal(h, [[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    assert A.paper_phenomenon("s-selection") == "argument_structure"
    assert A.paper_phenomenon("binding") == "binding"


def test_mantel_on_the_hypothesis_itself_gives_r1_and_smallest_p():
    h = A.hypothesis_space(GROUPS9)
    res = A.mantel_test(2 * h + 0.5, h, permutations=1000, seed=0)
    assert res.r == pytest.approx(1.0)
    # only label permutations that keep the 3 blocks intact tie with r = 1: 3!·(3!)³ of 9! ≈ 0.36%
    assert res.p <= 0.01
    h12 = A.hypothesis_space(["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["d"] * 3)
    assert A.mantel_test(h12, h12, permutations=1000, seed=0).p < 0.005


def test_mantel_on_unrelated_matrix_has_large_p_and_matches_scipy():
    rng = np.random.default_rng(42)
    m = rng.normal(size=(9, 9))
    h = A.hypothesis_space(GROUPS9)
    res = A.mantel_test(m, h, permutations=1000, seed=0)
    assert res.p > 0.05
    iu = np.triu_indices(9, 1)
    want = spearmanr(((m + m.T) / 2)[iu], h[iu]).statistic
    assert res.r == pytest.approx(want)
    again = A.mantel_test(m, h, permutations=1000, seed=0)
    assert again.p == res.p
    other = A.mantel_test(m, h, permutations=1000, seed=1)
    assert other.r == res.r


def test_mantel_rejects_nan_and_tiny_inputs():
    with pytest.raises(ValueError, match="NaN entries"):
        A.mantel_test(np.full((3, 3), np.nan), np.eye(3))
    with pytest.raises(ValueError, match="T >= 3"):
        A.mantel_test(np.eye(2), np.eye(2))


def test_within_between_by_hand():
    m = np.array([[0, 4, 1, 1], [4, 0, 2, 0], [1, 2, 0, 6], [1, 0, 6, 0]], float)
    res = A.within_between(m, ["p", "p", "q", "q"], permutations=200, seed=0)
    assert res.within == pytest.approx((4 + 6) / 2)  # pairs (0,1) and (2,3)
    assert res.between == pytest.approx((1 + 1 + 2 + 0) / 4)
    assert res.contrast == pytest.approx(5 - 1)
    assert (res.n_within, res.n_between) == (2, 4)
    assert 0 < res.p <= 1
    with pytest.raises(ValueError, match="both same-group and different-group"):
        A.within_between(m, ["p"] * 4)


def test_partial_spearman_matches_formula():
    rng = np.random.default_rng(1)
    a, b, c = (rng.normal(size=(6, 6)) for _ in range(3))
    iu = np.triu_indices(6, 1)
    x, y, z = (((m + m.T) / 2)[iu] for m in (a, b, c))
    rxy, rxz, ryz = spearmanr(x, y).statistic, spearmanr(x, z).statistic, spearmanr(y, z).statistic
    want = (rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2))
    assert A.partial_spearman(a, b, c) == pytest.approx(want)


def test_lexical_overlap_and_chance_jaccard():
    words = [A.sentence_words(["The cat sleeps."]), A.sentence_words(["The dog sleeps?"]), {"x"}]
    assert words[0] == {"the", "cat", "sleeps"}
    lex = A.lexical_overlap(words)
    assert lex[0, 1] == pytest.approx(2 / 4) and lex[0, 2] == 0 and lex[1, 1] == 1
    assert A.jaccard_chance(0.5) == pytest.approx(1 / 3)
    assert A.jaccard_chance(1.0) == 1.0
    rng = np.random.default_rng(0)
    m1, m2 = rng.random(200_000) < 0.1, rng.random(200_000) < 0.1
    assert (m1 & m2).sum() / (m1 | m2).sum() == pytest.approx(A.jaccard_chance(0.1), rel=0.05)


def test_cluster_and_group_order():
    m = np.full((4, 4), 0.1)
    m[0, 2] = m[2, 0] = m[1, 3] = m[3, 1] = 0.9
    order = A.cluster_order(m)
    pos = {t: k for k, t in enumerate(order)}
    assert abs(pos[0] - pos[2]) == 1 and abs(pos[1] - pos[3]) == 1
    assert A.group_order(["b", "a", "b", "a"]) == [1, 3, 0, 2]


def test_compare_spaces_and_stability():
    rng = np.random.default_rng(3)
    tasks = [f"t{i}" for i in range(6)]
    a = rng.normal(size=(6, 6))
    same = A.compare_spaces(a, a, tasks, permutations=100)
    assert same.r == pytest.approx(1.0) and not same.difference.any()
    b = a.copy()
    b[4, :] += 10
    c = A.compare_spaces(a, b, tasks, permutations=100)
    np.testing.assert_allclose(c.difference, a - b)
    assert c.most_changed[0][0] == "t4"
    st = A.stability([a, a, b])
    assert len(st.with_next) == 2 and len(st.with_last) == 3
    assert st.with_next[0] == pytest.approx(1.0) and st.with_last[-1] == 1.0
    assert st.with_last[0] == pytest.approx(A.spearman_offdiag(a, b))


def test_grouping_files(tmp_path):
    j = tmp_path / "g.json"
    j.write_text(json.dumps({"t1": "x", "t2": "y"}))
    assert A.load_grouping(j) == {"t1": "x", "t2": "y"}
    c = tmp_path / "g.csv"
    c.write_text("task,group\nt1,x\nt2,y\n")
    assert A.load_grouping(c) == {"t1": "x", "t2": "y"}
    assert A.groups_for(["t2", "t1"], A.load_grouping(c)) == ["y", "x"]
    with pytest.raises(ValueError, match="no group for task"):
        A.groups_for(["t3"], {"t1": "x"})
    bad = tmp_path / "bad.csv"
    bad.write_text("t1,x,extra\n")
    with pytest.raises(ValueError, match="bad.csv:1: expected two columns"):
        A.load_grouping(bad)
    badj = tmp_path / "bad.json"
    badj.write_text("{oops")
    with pytest.raises(ValueError, match="bad.json:1: malformed JSON"):
        A.load_grouping(badj)


def test_summarize_is_json_ready():
    h = A.hypothesis_space(GROUPS9)
    s = A.summarize(h + 0.1, GROUPS9, lexical=np.eye(9) + 0.01 * np.arange(81).reshape(9, 9), permutations=100)
    json.dumps(s)
    assert s["mantel_r"] == pytest.approx(1.0) and s["contrast"] == pytest.approx(1.0)
    assert set(s) >= {"mantel_p", "within", "between", "contrast_p", "lexical_r", "partial_r"}
