"""Hypothesis spaces and the statistics that compare task spaces with them (method.md, "Hypothesis space").

Pure NumPy/SciPy over T×T matrices. Permutation tests relabel tasks (rows and columns together): every distinct
relabelling when there are few (exact p, see `taskspace.stats.permutations`), else random ones. They are vectorised:
all relabellings are one (N, T) index array, gathered with fancy indexing and correlated with one matrix product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform
from scipy.stats import rankdata

from taskspace.errors import AnalysisError
from taskspace.stats.permutations import EXACT_LIMIT, Relabellings, group_relabellings, space_relabellings

# ---- hypothesis spaces ---------------------------------------------------------------------------------


def hypothesis_space(groups: Sequence[str]) -> np.ndarray:
    """H[i, j] = 1 if tasks i and j share a group (phenomenon, field, …), else 0; the diagonal is 1."""
    g = np.asarray(groups)
    return (g[:, None] == g[None, :]).astype(np.float64)


# ---- off-diagonal vectors and correlations ------------------------------------------------------------


def symmetrize(m: np.ndarray) -> np.ndarray:
    """(M + Mᵀ)/2: transfer is asymmetric, correlations use the mean of both directions by default."""
    m = np.asarray(m, dtype=np.float64)
    return (m + m.T) / 2


def _offdiag_index(t: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    if symmetric:
        return np.triu_indices(t, k=1)
    i, j = np.nonzero(~np.eye(t, dtype=bool))
    return i, j


def offdiag(m: np.ndarray, symmetric: bool = True) -> np.ndarray:
    """Upper-triangle entries i < j (symmetric) or every i ≠ j entry (both directions)."""
    i, j = _offdiag_index(len(m), symmetric)
    return np.asarray(m, dtype=np.float64)[i, j]


def _prepare(m: np.ndarray, symmetric: bool, name: str = "task space") -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise AnalysisError(f"{name} must be square, got shape {m.shape}")
    if np.isnan(m).any():
        raise AnalysisError(f"{name} has NaN entries (e.g. transfer normalised by a zero diagonal); fill them")
    return symmetrize(m) if symmetric else m


def _pair(a: np.ndarray, b: np.ndarray, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    a, b = _prepare(a, symmetric, "a"), _prepare(b, symmetric, "b")
    if a.shape != b.shape:
        raise AnalysisError(f"task spaces differ in shape: {a.shape} vs {b.shape}")
    return a, b


def _corr_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of x with the vector y (NaN where a row is constant)."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc @ yc) / (np.linalg.norm(xc, axis=-1) * np.linalg.norm(yc))


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(_corr_rows(rankdata(x)[None], rankdata(y))[0])


def defined(m: np.ndarray) -> list[int]:
    """Tasks a statistic can use: the most tasks found by leaving out, one at a time, the task with the most NaN
    cells off the diagonal (its row and column) until none is left (a NaN row takes out one task, not all)."""
    bad = np.isnan(np.asarray(m, dtype=float)) & ~np.eye(len(m), dtype=bool)
    keep = list(range(len(m)))
    while keep:
        sub = bad[np.ix_(keep, keep)]
        counts = sub.sum(0) + sub.sum(1)
        if not counts.any():
            break
        keep.pop(int(np.argmax(counts)))
    return keep


def spearman_offdiag(a: np.ndarray, b: np.ndarray, symmetrize_first: bool = True) -> float:
    """Spearman rho of the off-diagonal entries of two spaces (NaN if either is constant)."""
    a, b = _pair(a, b, symmetrize_first)
    return _spearman(offdiag(a, symmetrize_first), offdiag(b, symmetrize_first))


@dataclass(frozen=True)
class MantelResult:
    r: float
    p: float
    permutations: int  # relabellings compared with (exact: all distinct ones; else random draws)
    exact: bool = False
    min_p: float = float("nan")  # the smallest p these relabellings can give


def _check_test(permutations: int, name: str) -> None:
    if permutations < 1:
        raise AnalysisError(f"{name} needs permutations >= 1, got {permutations}")


def _mantel_from(xs: np.ndarray, y: np.ndarray, rel: Relabellings, method: str, alternative: str) -> MantelResult:
    """Row 0 of xs is observed, the rest its relabellings; correlated with y."""
    if method == "spearman":
        xs, y = rankdata(xs, axis=1), rankdata(y)
    r = _corr_rows(xs, y)
    r_obs, r_perm = r[0], np.nan_to_num(r[1:], nan=0.0)
    if np.isnan(r_obs):
        return MantelResult(float("nan"), float("nan"), rel.count, rel.exact, rel.min_p)
    if alternative == "greater":
        hits = int(np.sum(r_perm >= r_obs - 1e-12))
    else:
        hits = int(np.sum(np.abs(r_perm) >= abs(r_obs) - 1e-12))
    return MantelResult(float(r_obs), rel.p_value(hits), rel.count, rel.exact, rel.min_p)


def mantel_test(
    a: np.ndarray,
    b: np.ndarray,
    permutations: int = 1000,
    seed: int = 0,
    symmetric: bool = True,
    method: str = "spearman",
    alternative: str = "two-sided",
    limit: int = EXACT_LIMIT,
) -> MantelResult:
    """Correlation of off-diagonal entries; p by relabelling a's tasks (rows and columns together): all T!
    relabellings when there are at most `limit` (exact), else `permutations` random ones."""
    _check_test(permutations, "mantel_test")
    if method not in ("spearman", "pearson"):
        raise AnalysisError(f"method must be 'spearman' or 'pearson', got {method!r}")
    if alternative not in ("two-sided", "greater"):
        raise AnalysisError(f"alternative must be 'two-sided' or 'greater', got {alternative!r}")
    a, b = _pair(a, b, symmetric)
    t = len(a)
    if t < 3:
        raise AnalysisError(f"mantel_test needs T >= 3 tasks, got {t}")
    i, j = _offdiag_index(t, symmetric)
    rel = space_relabellings(t, permutations, seed, limit)
    perms = rel.labels  # (N, T), row 0 the identity
    return _mantel_from(a[perms[:, i], perms[:, j]], b[i, j], rel, method, alternative)


def partial_spearman(a: np.ndarray, b: np.ndarray, control: np.ndarray, symmetric: bool = True) -> float:
    """Spearman of a and b with the control partialled out: does a fit b beyond what the control explains?"""
    a, b = _pair(a, b, symmetric)
    c = _pair(a, control, symmetric)[1]
    x, y, z = (rankdata(offdiag(m, symmetric)) for m in (a, b, c))
    r_xy, r_xz, r_yz = (float(_corr_rows(u[None], v)[0]) for u, v in ((x, y), (x, z), (y, z)))
    denom = np.sqrt((1 - r_xz**2) * (1 - r_yz**2))
    return float((r_xy - r_xz * r_yz) / denom) if denom > 0 else float("nan")


# ---- within vs between ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WithinBetweenResult:
    within: float
    between: float
    contrast: float
    p: float
    n_within: int
    n_between: int
    exact: bool = False
    min_p: float = float("nan")


def _groups_prepared(m: np.ndarray, groups: Sequence, symmetric: bool):
    m = _prepare(m, symmetric)
    if len(groups) != len(m):
        raise AnalysisError(f"{len(groups)} groups for a {len(m)}-task space")
    i, j = _offdiag_index(len(m), symmetric)
    codes = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    same = codes[i] == codes[j]
    if same.all() or not same.any():
        raise AnalysisError("within/between needs both same-group and different-group task pairs")
    return m, i, j


def _within_between_from(v: np.ndarray, same: np.ndarray, rel: Relabellings) -> WithinBetweenResult:
    """same: (N, E) same-group indicator of each offdiagonal pair under each relabelling (row 0 observed)."""
    n_same = same.sum(1)  # relabellings keep group sizes, so this is constant
    contrasts = (same @ v) / n_same - ((1 - same) @ v) / (len(v) - n_same)
    obs = same[0].astype(bool)
    within, between = float(v[obs].mean()), float(v[~obs].mean())
    hits = int(np.sum(contrasts[1:] >= contrasts[0] - 1e-12))
    return WithinBetweenResult(
        within, between, within - between, rel.p_value(hits), int(obs.sum()), int((~obs).sum()), rel.exact, rel.min_p
    )


def within_between(
    m: np.ndarray, groups: Sequence, permutations: int = 1000, seed: int = 0, symmetric: bool = True
) -> WithinBetweenResult:
    """Mean off-diagonal value of same-group vs different-group pairs; one-sided permutation p over the
    grouping's relabellings (all distinct partitions when few: exact)."""
    _check_test(permutations, "within_between")
    m, i, j = _groups_prepared(m, groups, symmetric)
    rel = group_relabellings(groups, permutations, seed)
    same = (rel.labels[:, i] == rel.labels[:, j]).astype(np.float64)
    return _within_between_from(m[i, j], same, rel)


def hypothesis_tests(
    m: np.ndarray, groups: Sequence, permutations: int = 1000, seed: int = 0, symmetric: bool = True
) -> tuple[MantelResult, WithinBetweenResult]:
    """A space against its grouping: Mantel (Spearman with the hypothesis space, two-sided) and within −
    between (one-sided), over the same relabellings of the grouping (exact when few)."""
    _check_test(permutations, "hypothesis_tests")
    m, i, j = _groups_prepared(m, groups, symmetric)
    rel = group_relabellings(groups, permutations, seed)
    same = (rel.labels[:, i] == rel.labels[:, j]).astype(np.float64)  # (N, E): each relabelling's hypothesis
    v = m[i, j]
    # relabelling the hypothesis instead of the space: the same correlations, one space vector
    mantel = _mantel_from(same, v, rel, "spearman", "two-sided")
    return mantel, _within_between_from(v, same, rel)


def partial_hypothesis_test(
    m: np.ndarray,
    groups: Sequence,
    control: np.ndarray,
    permutations: int = 1000,
    seed: int = 0,
    symmetric: bool = True,
) -> MantelResult:
    """The partial Spearman of the space with the hypothesis, the control (e.g. lexical overlap) partialled out,
    and its p (two-sided) over the same relabellings of the grouping as `hypothesis_tests`: does the grouping fit
    beyond what the control explains, more than a relabelled grouping would?"""
    _check_test(permutations, "partial_hypothesis_test")
    m, i, j = _groups_prepared(m, groups, symmetric)
    c = _prepare(control, symmetric)
    rel = group_relabellings(groups, permutations, seed)
    hs = rankdata((rel.labels[:, i] == rel.labels[:, j]).astype(np.float64), axis=1)  # (N, E) hypotheses, ranked
    x, z = rankdata(m[i, j]), rankdata(c[i, j])
    r_xy, r_yz, r_xz = _corr_rows(hs, x), _corr_rows(hs, z), float(_corr_rows(x[None], z)[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        partial = (r_xy - r_xz * r_yz) / np.sqrt((1 - r_xz**2) * (1 - r_yz**2))
    obs, rest = partial[0], np.nan_to_num(partial[1:], nan=0.0)
    if np.isnan(obs):
        return MantelResult(float("nan"), float("nan"), rel.count, rel.exact, rel.min_p)
    return MantelResult(float(obs), rel.p_value(int(np.sum(np.abs(rest) >= abs(obs) - 1e-12))), rel.count, rel.exact,
                        rel.min_p)  # fmt: skip


# ---- lexical control, comparison, stability, ordering --------------------------------------------------


def lexical_overlap(word_sets: Sequence[set[str]]) -> np.ndarray:
    """Jaccard of the tasks' vocabularies (diagonal 1): the control a task space should beat."""
    t = len(word_sets)
    out = np.eye(t)
    for a in range(t):
        for b in range(a + 1, t):
            union = len(word_sets[a] | word_sets[b])
            out[a, b] = out[b, a] = len(word_sets[a] & word_sets[b]) / union if union else 0.0
    return out


@dataclass(frozen=True)
class Comparison:
    r: float
    p: float
    difference: np.ndarray
    most_changed: list[tuple[str, float]]
    exact: bool = False
    min_p: float = float("nan")


def compare_spaces(
    a: np.ndarray,
    b: np.ndarray,
    tasks: Sequence[str],
    permutations: int = 1000,
    seed: int = 0,
    top: int = 5,
    test: bool = True,
) -> Comparison:
    """Two spaces over the same tasks: Spearman + Mantel p, A − B, and the tasks whose rows changed most.
    `test=False` skips the permutation test (p is NaN): for a comparison whose p is already stored."""
    if test:
        res = mantel_test(a, b, permutations, seed)
    else:
        res = MantelResult(spearman_offdiag(a, b), float("nan"), 0)
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if len(tasks) != len(diff):
        raise AnalysisError(f"{len(tasks)} task names for a {len(diff)}-task space")
    change = np.linalg.norm(diff * (1 - np.eye(len(diff))), axis=1)
    order = np.argsort(-change, kind="stable")[:top]
    return Comparison(res.r, res.p, diff, [(tasks[k], float(change[k])) for k in order], res.exact, res.min_p)


@dataclass(frozen=True)
class StabilityResult:
    with_next: list[float]
    with_last: list[float]


def stability(series: Sequence[np.ndarray]) -> StabilityResult:
    """Over an ordered checkpoint series: Spearman of each space with the next and with the last."""
    if len(series) == 0:
        raise AnalysisError("stability needs at least one task space")
    nxt = [spearman_offdiag(a, b) for a, b in zip(series, series[1:])]
    last = [spearman_offdiag(a, series[-1]) for a in series[:-1]] + [1.0]
    return StabilityResult(nxt, last)


def cluster_order(m: np.ndarray, tasks: Sequence[str] | None = None) -> list[int]:
    """Display order: average-linkage clustering on 1 − similarity (off-diagonal min–max scaled to [0, 1])."""
    s = symmetrize(np.nan_to_num(np.asarray(m, np.float64)))
    if tasks is not None and len(tasks) != len(s):
        raise AnalysisError(f"{len(tasks)} task names for a {len(s)}-task space")
    if len(s) < 3:
        return list(range(len(s)))
    v = offdiag(s)
    lo, hi = v.min(), v.max()
    sim = (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)
    d = np.clip(1 - sim, 0, None)
    np.fill_diagonal(d, 0)
    return [int(k) for k in leaves_list(linkage(squareform(d, checks=False), method="average"))]


def group_order(groups: Sequence[str]) -> list[int]:
    """Tasks sorted by group name, stable within a group (for heatmaps with phenomenon separators)."""
    return sorted(range(len(groups)), key=lambda k: (groups[k], k))


def jaccard_chance(sparsity: float) -> float:
    """Expected Jaccard of two independent random masks each keeping a fraction s: s² / (2s − s²)."""
    s = float(sparsity)
    if not 0 < s <= 1:
        raise AnalysisError(f"sparsity must be in (0, 1], got {sparsity}")
    return 1.0 if s == 1 else s * s / (2 * s - s * s)


def summarize(
    space: np.ndarray,
    groups: Sequence[str],
    lexical: np.ndarray | None = None,
    permutations: int = 1000,
    seed: int = 0,
    symmetric: bool = True,
) -> dict[str, float | None]:
    """JSON-ready fit of one space: Mantel vs the hypothesis, within−between, and the lexical control."""
    h = hypothesis_space(groups)
    mt, wb = hypothesis_tests(space, groups, permutations, seed, symmetric=symmetric)
    out = {
        "mantel_r": mt.r,
        "mantel_p": mt.p,
        "within": wb.within,
        "between": wb.between,
        "contrast": wb.contrast,
        "contrast_p": wb.p,
        "p_floor": mt.min_p,  # the smallest p the relabellings allow (exact: 1/N; random: 1/(m + 1))
        "p_exact": float(mt.exact),
        "relabellings": float(mt.permutations),
    }
    if lexical is not None:
        out["lexical_r"] = spearman_offdiag(space, lexical, symmetric)
        out["partial_r"] = partial_spearman(space, h, lexical, symmetric)
        out["partial_p"] = partial_hypothesis_test(space, groups, lexical, permutations, seed, symmetric).p
    return {k: (None if v is None or np.isnan(v) else float(v)) for k, v in out.items()}
