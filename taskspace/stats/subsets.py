"""Task-sample sensitivity: how much a fit depends on which tasks were run.

A study that runs a sample of BLiMP's 67 paradigms reads its fits off that sample; a different sample can say
something else (docs/concepts/findings.md). From a T-task space, every fit statistic is recomputed on random
task subsets drawn as such a study would draw them (k tasks per group), so a reader sees the spread of each
statistic and how often it would have come out significant.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from taskspace.errors import AnalysisError
from taskspace.stats import analysis as A

STATS = ("mantel_r", "contrast", "partial_r")


def draw_subsets(groups: Sequence[str], per_group: int, draws: int, seed: int = 0) -> list[np.ndarray]:
    """`draws` subsets of task indices, `per_group` tasks from each group (all of a smaller group), each sorted;
    seeded and independent of anything else drawn."""
    rng = np.random.default_rng([seed, 7])
    g = np.asarray(groups)
    members = [np.flatnonzero(g == name) for name in dict.fromkeys(g.tolist())]
    out = []
    for _ in range(draws):
        pick = [rng.choice(m, size=min(per_group, m.size), replace=False) for m in members]
        out.append(np.sort(np.concatenate(pick)))
    return out


def _summary(values: list[float | None], ps: list[float | None] | None = None, alpha: float = 0.05) -> dict:
    v = np.array([x for x in values if x is not None and np.isfinite(x)])
    if v.size == 0:
        return {"n": 0}
    out = {
        "n": int(v.size),
        "mean": float(v.mean()),
        "p05": float(np.quantile(v, 0.05)),
        "median": float(np.median(v)),
        "p95": float(np.quantile(v, 0.95)),
        "positive": float((v > 0).mean()),
    }
    if ps is not None:
        p = np.array([x for x in ps if x is not None and np.isfinite(x)])
        out["significant"] = float((p < alpha).mean()) if p.size else None
    return out


def sample_sensitivity(
    space: np.ndarray,
    groups: Sequence[str],
    lexical: np.ndarray | None,
    per_group: int = 2,
    draws: int = 200,
    permutations: int = 200,
    seed: int = 0,
    symmetric: bool = True,
) -> dict | None:
    """Each fit statistic (Mantel r, within − between, partial r with the lexical overlap out) over `draws` random
    subsets of `per_group` tasks per group: mean, 5th/50th/95th percentiles, the share positive and the share
    significant at 0.05 (Mantel and contrast p over `permutations` relabellings of each subset's grouping).
    None when a subset would be the whole task set (no task is left to vary) or fits nothing."""
    space = np.asarray(space, float)
    if per_group < 1 or all(np.sum(np.asarray(groups) == g) <= per_group for g in set(groups)):
        return None
    h = A.hypothesis_space(groups)
    rows: dict[str, list] = {k: [] for k in (*STATS, "mantel_p", "contrast_p")}
    for idx in draw_subsets(groups, per_group, draws, seed):
        sub, g = space[np.ix_(idx, idx)], [groups[k] for k in idx]
        if not np.isfinite(sub[~np.eye(len(idx), dtype=bool)]).all():
            continue
        try:
            mt, wb = A.hypothesis_tests(sub, g, permutations, seed, symmetric=symmetric)
        except AnalysisError:  # one group left: nothing to contrast
            continue
        rows["mantel_r"].append(mt.r)
        rows["mantel_p"].append(mt.p)
        rows["contrast"].append(wb.contrast)
        rows["contrast_p"].append(wb.p)
        if lexical is not None:
            lex = np.asarray(lexical, float)[np.ix_(idx, idx)]
            rows["partial_r"].append(A.partial_spearman(sub, h[np.ix_(idx, idx)], lex, symmetric))
    if not rows["mantel_r"]:
        return None
    return {
        "per_group": per_group,
        "tasks": int(len(draw_subsets(groups, per_group, 1, seed)[0])),
        "draws": len(rows["mantel_r"]),
        "mantel_r": _summary(rows["mantel_r"], rows["mantel_p"]),
        "contrast": _summary(rows["contrast"], rows["contrast_p"]),
        "partial_r": _summary(rows["partial_r"]),
    }
