"""Trust every cell: an exact paired test of each transfer cell of a task space (issue #26).

Cell (i, j) is eval2_i − eval1 on task j's eval pairs: the mean over task j's n_j pairs of the per-pair change of
margin (logp(good) − logp(bad), nats) or of correctness (margin > 0). eval1 and eval2 score the SAME pairs, so
under "tuning on i does not move j" each pair's change is as likely to be −x as +x, and flipping signs gives an
exact null: a two-sided **sign-flip permutation test** of mean = 0. Every sign pattern over the m nonzero changes
is enumerated when 2^m ≤ `permutations` (exact p = #(|mean*| ≥ |mean|) / 2^m, the observed pattern counted);
otherwise random patterns give (1 + b) / (1 + permutations). With a label-swapped control the test is on the
per-pair difference real − control. Cells are tested together by one ±1 sign matrix (draws × n) @ changes
(n × cells), chunked; q-values are Benjamini–Hochberg over the off-diagonal cells (the diagonal is the tuned
task itself, not a transfer), and each cell gets a paired bootstrap percentile interval of its mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from taskspace.errors import AnalysisError

_BLOCK = 1 << 22  # float64 elements (32 MiB) of sign-flipped sums held at once
TIE = 1e-12  # |mean*| ≥ |mean| − TIE·mean|d| counts as "at least as extreme", so rounding never drops a tie


@dataclass(frozen=True)
class SignFlipResult:
    mean: float  # the observed mean per-pair change
    p: float  # two-sided
    exact: bool  # every sign pattern enumerated (else random draws)
    count: int  # patterns enumerated (exact) or drawn


@dataclass(frozen=True)
class CellTests:
    """T×T arrays, row i the tuned task, column j the evaluated one."""

    effect: np.ndarray  # mean per-pair change (real − control with a control)
    p: np.ndarray  # two-sided sign-flip p
    q: np.ndarray  # Benjamini–Hochberg over the off-diagonal cells; NaN on the diagonal
    low: np.ndarray  # paired bootstrap percentile interval of the mean at `confidence`
    high: np.ndarray
    exact: np.ndarray  # bool: p enumerated every sign pattern
    permutations: int
    confidence: float


def correctness_change(before_margin: np.ndarray, after_margin: np.ndarray) -> np.ndarray:
    """Per-pair change of correctness (−1, 0 or +1, as float; NaN where a margin is NaN): a pair is correct when
    its margin is > 0, so a tie (margin 0) counts as wrong, as in accuracy."""
    b, a = np.asarray(before_margin, np.float64), np.asarray(after_margin, np.float64)
    change = (a > 0).astype(np.float64) - (b > 0).astype(np.float64)
    return np.where(np.isnan(a) | np.isnan(b), np.nan, change)


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q_(k) = min over l ≥ k of p_(l)·m/l, capped at 1), over the finite
    entries only: NaN cells (no data) neither count in m nor get a q. Same shape as p."""
    p = np.asarray(p, np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    v = p[ok]
    if ((v < 0) | (v > 1)).any():
        raise AnalysisError("p-values must lie in [0, 1]")
    m = v.size
    if m:
        order = np.argsort(v, kind="stable")
        q = np.minimum.accumulate((v[order] * m / np.arange(1, m + 1))[::-1])[::-1]
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(q, 1.0)
        out[ok] = adjusted
    return out


def _count_extreme(signs: np.ndarray, d: np.ndarray) -> np.ndarray:
    """signs (n, N) bool (True: +), d (c, n): per row of d, the sign patterns whose |Σ ±d| reaches |Σ d|."""
    threshold = np.abs(d.sum(1)) - TIE * np.abs(d).sum(1)
    hits = np.zeros(len(d), dtype=np.int64)
    rows = max(1, _BLOCK // max(len(d), 1))
    for a in range(0, signs.shape[1], rows):
        flipped = np.where(signs[:, a : a + rows].T, 1.0, -1.0) @ d.T  # (rows, c)
        hits += (np.abs(flipped) >= threshold).sum(0)
    return hits


def _all_signs(k: int) -> np.ndarray:
    """(k, 2^k): every sign pattern over k entries, as bits."""
    return ((np.arange(1 << k)[None, :] >> np.arange(k)[:, None]) & 1).astype(bool)


def _random_signs(n: int, draws: int, seed: int) -> np.ndarray:
    """(n, draws) random signs; row k is pair k's, so a shorter vector's draws are the first rows of a longer
    one's: with one seed every cell sees the same draws, and a cell's p is `signflip_test` of its vector."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.random(draws) < 0.5 for _ in range(n)]) if n else np.empty((0, draws), dtype=bool)


def _signflip_p(d: np.ndarray, permutations: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """p and exactness of each row of d (c, n), finite. Zeros do not change the statistic, so a row is exact when
    its m nonzero entries have 2^m ≤ permutations; those rows are packed to their nonzeros and enumerated."""
    m = (d != 0).sum(1)
    exact = m <= permutations.bit_length() - 1  # 2^m ≤ permutations
    p = np.empty(len(d))
    if exact.any():
        e = d[exact]
        k = int(m[exact].max())
        packed = np.take_along_axis(e, np.argsort(e == 0, axis=1, kind="stable"), axis=1)[:, :k]
        p[exact] = _count_extreme(_all_signs(k), packed) / (1 << k)  # zero padding repeats each pattern equally
    if not exact.all():
        signs = _random_signs(d.shape[1], permutations, seed)
        p[~exact] = (1 + _count_extreme(signs, d[~exact])) / (1 + permutations)
    return p, exact


def _check(permutations: int, resamples: int = 1, confidence: float = 0.5) -> None:
    if permutations < 1 or resamples < 1:
        raise AnalysisError(f"need permutations >= 1 and resamples >= 1, got {permutations} and {resamples}")
    if not 0 < confidence < 1:
        raise AnalysisError(f"confidence must be in (0, 1), got {confidence}")


def signflip_test(d: np.ndarray, permutations: int = 10_000, seed: int = 0) -> SignFlipResult:
    """Two-sided paired sign-flip test of mean(d) = 0 for one vector of per-pair changes: exact when the sign
    patterns of its nonzero entries number at most `permutations`, else that many random ones. All-zero: p = 1."""
    _check(permutations)
    d = np.asarray(d, np.float64)
    if d.ndim != 1:
        raise AnalysisError(f"signflip_test needs a 1-D vector of per-pair changes, got shape {d.shape}")
    if d.size == 0 or not np.isfinite(d).all():
        return SignFlipResult(float("nan"), float("nan"), False, 0)
    p, exact = _signflip_p(d[None], permutations, seed)
    m = int((d != 0).sum())
    return SignFlipResult(float(d.mean()), float(p[0]), bool(exact[0]), 1 << m if exact[0] else permutations)


def _columns(changes: np.ndarray | Sequence[np.ndarray], name: str) -> list[np.ndarray]:
    """Per evaluated task j, its (T, n_j) per-pair changes, row i the tuned task."""
    if isinstance(changes, np.ndarray) and changes.ndim == 3:
        cols = [changes[:, j, :].astype(np.float64) for j in range(changes.shape[1])]
    else:
        cols = [np.asarray(c, np.float64) for c in changes]
    t = len(cols)
    for j, c in enumerate(cols):
        if c.ndim != 2 or c.shape[0] != t:
            raise AnalysisError(f"{name}[{j}] must be ({t}, n_{j}) per-pair changes, got shape {c.shape}")
    return cols


def _bootstrap(d: np.ndarray, resamples: int, confidence: float, rng: np.random.Generator) -> np.ndarray:
    """(2, c) percentile interval of each row's mean, the rows resampled with the same pairs (paired)."""
    n = d.shape[1]
    counts = rng.multinomial(n, np.full(n, 1 / n), size=resamples)  # (B, n): how often each pair is drawn
    means = counts @ d.T / n
    return np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)


def cell_tests(
    changes: np.ndarray | Sequence[np.ndarray],
    permutations: int = 10_000,
    seed: int = 0,
    control: np.ndarray | Sequence[np.ndarray] | None = None,
    confidence: float = 0.95,
    resamples: int = 2_000,
) -> CellTests:
    """Sign-flip test, BH q and bootstrap interval of every cell of a T×T space.

    `changes`: a list over the evaluated task j of (T, n_j) arrays (row i: tuned on task i; column k: pair k of
    task j), since tasks differ in pair count; or one (T, T, n) array indexed [i, j, k]. `control` has the same
    shape (the label-swapped control's per-pair change on the same pairs) and is subtracted pair by pair. A cell
    with no pairs or a non-finite change gets NaN throughout. The same seed gives the same result.
    """
    _check(permutations, resamples, confidence)
    cols = _columns(changes, "changes")
    if control is not None:
        ctrl = _columns(control, "control")
        if [c.shape for c in ctrl] != [c.shape for c in cols]:
            raise AnalysisError("control must have the same tasks and pair counts as changes")
        cols = [a - b for a, b in zip(cols, ctrl)]
    t = len(cols)
    effect, p, low, high = (np.full((t, t), np.nan) for _ in range(4))
    exact = np.zeros((t, t), dtype=bool)
    ok = [np.isfinite(c).all(1) & (c.shape[1] > 0) for c in cols]
    rng = np.random.default_rng((seed, 1))  # the bootstrap's own stream, apart from the signs'
    for j, c in enumerate(cols):
        if ok[j].any():
            effect[ok[j], j] = c[ok[j]].mean(1)
            low[ok[j], j], high[ok[j], j] = _bootstrap(c[ok[j]], resamples, confidence, rng)
    for n in sorted({c.shape[1] for c, v in zip(cols, ok) if v.any()}):  # one stacked test per pair count
        js = [j for j, c in enumerate(cols) if c.shape[1] == n and ok[j].any()]
        rows = np.concatenate([np.flatnonzero(ok[j]) for j in js])
        cols_of = np.concatenate([np.full(ok[j].sum(), j) for j in js])
        p[rows, cols_of], exact[rows, cols_of] = _signflip_p(
            np.concatenate([cols[j][ok[j]] for j in js]), permutations, seed
        )
    q = np.full((t, t), np.nan)
    off = ~np.eye(t, dtype=bool)
    q[off] = bh_qvalues(p[off])
    return CellTests(effect, p, q, low, high, exact, permutations, confidence)
