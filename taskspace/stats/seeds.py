"""Seeds of one model: the same architecture and data trained with different seeds (PolyPythias' `-seed1…9`).

A checkpoint-to-checkpoint change means little until it is set beside the change a different seed gives at the
same step. Per family (models of one `family`, ≥ 2 seeds) and kind, at each revision every seed has: the mean and
sample SD over seeds of the fit (Mantel r, within − between) and of the Spearman with the next checkpoint, and the
Spearman between seeds at that revision (mean and SD over seed pairs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from taskspace.stats.analysis import defined, spearman_offdiag


@dataclass(frozen=True)
class SeedSpread:
    """One kind over a family's seeds; every list runs over `revisions` (those all seeds have, training order)."""

    kind: str
    seeds: list[int]
    models: list[str]
    revisions: list[str]
    runs: list[str]  # the first seed's run (its spaces' key) at each revision
    r_mean: list[float | None]
    r_sd: list[float | None]
    contrast_mean: list[float | None]
    contrast_sd: list[float | None]
    with_next_mean: list[float | None]  # checkpoint → next checkpoint, per seed (None at the last revision)
    with_next_sd: list[float | None]
    seed_r_mean: list[float | None]  # seed ↔ seed at the same revision, over seed pairs
    seed_r_sd: list[float | None]


def mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample SD (ddof 1) of the known values; SD needs two of them."""
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return None, None
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else None


def _r(a, b, kind: str) -> float | None:
    """Spearman of two runs' spaces of one kind over the tasks both have and both define (None: under 3)."""
    tasks = [t for t in a.tasks if t in b.tasks]
    ma, mb = (s.restricted(tasks).matrices[kind] for s in (a, b))
    keep = sorted(set(defined(ma)) & set(defined(mb)))
    return spearman_offdiag(ma[np.ix_(keep, keep)], mb[np.ix_(keep, keep)]) if len(keep) >= 3 else None


def seed_spread(members: Sequence[tuple[int, str, Sequence[tuple[str, object]]]], fits: dict, kind: str) -> SeedSpread:
    """`members`: (seed, model, [(revision, TaskSpaces)] in training order) of one family; `fits`: each run's fits
    by its spaces' key (taskspace.stats.spaces.fit)."""
    order = [rev for rev, _ in members[0][2]]
    revisions = [r for r in order if all(r in dict(runs) for _, _, runs in members)]
    cols: dict[str, list] = {k: [] for k in ("r", "contrast", "with_next", "seed_r")}
    for i, rev in enumerate(revisions):
        at = [dict(runs)[rev] for _, _, runs in members]
        f = [fits.get(s.key, {}).get(kind) for s in at]
        cols["r"].append(mean_sd([x.mantel_r if x else None for x in f]))
        cols["contrast"].append(mean_sd([x.contrast if x else None for x in f]))
        if i + 1 < len(revisions):
            nxt = [dict(runs)[revisions[i + 1]] for _, _, runs in members]
            cols["with_next"].append(mean_sd([_r(a, b, kind) for a, b in zip(at, nxt)]))
        else:
            cols["with_next"].append((None, None))
        cols["seed_r"].append(mean_sd([_r(a, b, kind) for a, b in combinations(at, 2)]))
    spread = {f"{k}_{part}": [x[j] for x in v] for k, v in cols.items() for j, part in enumerate(("mean", "sd"))}
    first = [dict(members[0][2])[rev].key for rev in revisions]
    return SeedSpread(kind, [s for s, _, _ in members], [m for _, m, _ in members], revisions, first, **spread)


def scale_spread(comparisons: Sequence, family: dict[str, str]) -> list[dict]:
    """`scale` comparisons (each family's last checkpoints) grouped by the two families and kind: the Spearman r's
    mean ± SD over the seed pairs, for family pairs with more than one such comparison. `family`: run key → family."""
    groups: dict[tuple[str, str, str], list] = {}
    for c in comparisons:
        if c.relation == "scale":
            groups.setdefault((family[c.a], family[c.b], c.kind), []).append(c.r)
    out = []
    for (a, b, kind), rs in groups.items():
        if len(rs) > 1:
            mean, sd = mean_sd(rs)
            out.append({"a": a, "b": b, "kind": kind, "pairs": len(rs), "r_mean": mean, "r_sd": sd})
    return out


def seed_line(family: str, kinds: dict[str, SeedSpread]) -> str:
    """One family's spread over seeds at its last common revision, for the stage log."""
    sp = kinds.get("transfer") or next(iter(kinds.values()))

    def ms(mean, sd) -> str:
        return "n/a" if mean is None else f"{mean:+.3f}" + (f" ± {sd:.3f}" if sd is not None else "")

    at = f"{family} (seeds {', '.join(map(str, sp.seeds))}) {sp.kind} at {sp.revisions[-1]}"
    last = ms(sp.r_mean[-1], sp.r_sd[-1]), ms(sp.seed_r_mean[-1], sp.seed_r_sd[-1])
    nxt = [i for i, v in enumerate(sp.with_next_mean) if v is not None]
    step = f"; checkpoint to next {ms(sp.with_next_mean[nxt[-1]], sp.with_next_sd[nxt[-1]])}" if nxt else ""
    return f"{at}: fit r {last[0]} (mean ± SD over seeds); seed to seed r {last[1]}{step}"
