"""Task spaces as values: the kinds there are, one run's T×T spaces, and what is done with them — fitting them to a
hypothesis space, comparing two, and following a model's spaces over its checkpoints. The CLI's `analyze`, the
pipeline's analyze stage and the TUI all go through here, with one `AnalysisConfig`.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from taskspace.config import AnalysisConfig
from taskspace.errors import AnalysisError, OutputError
from taskspace.stats import analysis as A
from taskspace.stats.agreement import agreement
from taskspace.stats.analysis import defined
from taskspace.stats.grouping import groups_for, load_grouping
from taskspace.stats.seeds import SeedSpread, scale_spread, seed_spread
from taskspace.stats.subsets import sample_sensitivity

# stored per run (the last two with a label-swapped control; transfer_ci, the interval half-width, with replicates)
KINDS = ("transfer", "transfer_norm", "transfer_margin", "transfer_linear", "gradient", "sharing", "transfer_control",
         "transfer_minus_control")  # fmt: skip
# those a run has (transfer_linear: the first-order approximation of transfer, with probing.transfer linear or both)
FITTED = ("transfer", "transfer_norm", "transfer_linear", "gradient", "sharing", "transfer_minus_control")
# per cell of `transfer`, its paired test on its own pairs (method.paired): p, Benjamini–Hochberg q, 95% interval
CELL_KINDS = ("transfer_p", "transfer_q", "transfer_low", "transfer_high")
COMPARED = ("transfer", "gradient", "sharing")  # compared between runs and followed over checkpoints
# what each kind's values measure (data: the index's views carry it; `taskspace.report.labels` shows it): transfer
# and its control in the probing metric, the other kinds in a unit of their own
METRIC_UNITS = {"accuracy": "accuracy (fraction of pairs)", "margin": "mean margin (nats)"}
OWN_UNITS = {
    "transfer_margin": METRIC_UNITS["margin"],
    "transfer_linear": METRIC_UNITS["margin"],
    "transfer_norm": "fraction of the tuned task's own gain",
    "gradient": "cosine",
    "sharing": "Jaccard",
}
LOSS_UNIT = "nats/token"  # the LM loss (`lm_loss_rise`): mean negative log-likelihood per token


@dataclass
class TaskSpaces:
    """One run's spaces over its tasks; `key` names the run (its index key, or a folder)."""

    tasks: list[str]
    matrices: dict[str, np.ndarray]
    key: str = ""

    def save(self, path: str | Path) -> None:
        from taskspace.io import write_npz

        write_npz(path, tasks=np.array(self.tasks), **self.matrices)

    @classmethod
    def load(cls, path: str | Path, key: str = "") -> TaskSpaces:
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls([str(t) for t in z["tasks"]], {k: z[k] for k in z.files if k != "tasks"}, key)
        except FileNotFoundError:
            raise OutputError(f"{path} not found: run the probe stage (or `taskspace probe`) first") from None
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
            why = f"{type(e).__name__}: {e}"
            raise OutputError(f"{path} is unreadable ({why}); rerun the probe that wrote it") from None

    def restricted(self, tasks: Sequence[str]) -> TaskSpaces:
        """The same spaces over a subset of the tasks (in the given order)."""
        idx = [self.tasks.index(t) for t in tasks]
        return TaskSpaces(list(tasks), {k: m[np.ix_(idx, idx)] for k, m in self.matrices.items()}, self.key)


# ---- fit ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """One space against the hypothesis space: Mantel (Spearman r, permutation p), within − between contrast
    (one-sided permutation p), and the lexical control (r with vocabulary overlap, partial r without it)."""

    mantel_r: float | None
    mantel_p: float | None
    within: float | None
    between: float | None
    contrast: float | None
    contrast_p: float | None
    lexical_r: float | None = None
    partial_r: float | None = None
    partial_p: float | None = None  # partial_r's p over the same relabellings of the grouping
    p_floor: float | None = None  # the smallest p the relabellings allow (1/N exact, 1/(m + 1) random)
    p_exact: bool | None = None  # p from every distinct relabelling of the grouping (else random ones)
    relabellings: int | None = None
    within_vs_chance: float | None = None  # sharing only: mean Jaccard over its chance level
    between_vs_chance: float | None = None
    excluded: tuple[str, ...] = ()  # tasks left out: NaN in their row or column (e.g. a zero diagonal normalised)
    # from the run's replicates and control (taskspace.stats.reliability), where it has them
    reliability: float | None = None  # split-half Spearman of the off-diagonals
    reliability_sb: float | None = None  # … stepped up to all replicates (Spearman–Brown)
    noise_floor: float | None = None  # transfer: the 95th percentile of |control transfer|
    cells_above_noise: int | None = None
    cells: int | None = None
    self_transfer: float | None = None  # transfer: mean own-task gain (the diagonal)
    lm_loss_rise: float | None = None  # transfer: mean LM-loss rise on other tasks' sentences (nats/token)


def groups_of(tasks: Sequence[str], how: str, meta: dict[str, dict]) -> list[str]:
    """Each task's group under a grouping: phenomenon, paper (12 phenomena), field, or a task→group file."""
    if how in ("phenomenon", "paper", "field"):
        col = {"phenomenon": "phenomenon", "paper": "paper_phenomenon", "field": "field"}[how]
        missing = [t for t in tasks if t not in meta]
        if missing:
            raise AnalysisError(f"no {how} known for task {missing[0]}; pass a grouping file")
        return [meta[t][col] for t in tasks]
    return groups_for(tasks, load_grouping(how))


def fit(
    spaces: TaskSpaces,
    groups: list[str],
    words: dict[str, set[str]],
    sparsity: float,
    cfg: AnalysisConfig,
    quality: dict | None = None,
) -> dict[str, Fit]:
    """Every fitted kind of one run against the hypothesis space, with the lexical control; `quality` (the run's
    probe.json) adds reliability, the noise floor and the low-impact figures."""
    lexical = A.lexical_overlap([words.get(t, set()) for t in spaces.tasks])
    out: dict[str, Fit] = {}
    for kind in (k for k in FITTED if k in spaces.matrices):
        keep = defined(spaces.matrices[kind])  # a NaN is left out, never read as a value
        excluded = tuple(t for k, t in enumerate(spaces.tasks) if k not in keep)
        m, g = spaces.matrices[kind][np.ix_(keep, keep)], [groups[k] for k in keep]
        try:
            stats = A.summarize(m, g, lexical[np.ix_(keep, keep)], cfg.permutations, cfg.seed, cfg.symmetric)
        except AnalysisError:  # too few tasks left, or one group only: no statistic rather than a made-up one
            out[kind] = Fit(None, None, None, None, None, None, excluded=excluded)
            continue
        exact, n = stats.pop("p_exact"), stats.pop("relabellings")
        out[kind] = Fit(**stats, p_exact=bool(exact), relabellings=int(n), excluded=excluded)
    chance = A.jaccard_chance(sparsity)
    s = out["sharing"]
    out["sharing"] = replace(s, within_vs_chance=_ratio(s.within, chance), between_vs_chance=_ratio(s.between, chance))
    q = quality or {}
    for kind, rel in ((q.get("replicates") or {}).get("reliability") or {}).items():
        if kind in out:
            out[kind] = replace(out[kind], reliability=rel["split_half"], reliability_sb=rel["spearman_brown"])
    noise = (q.get("replicates") or {}).get("noise") or {}
    impact = q.get("impact") or {}
    if "transfer" in out:  # (a run with first-order transfer alone has no eval2: no noise floor, no impact)
        out["transfer"] = replace(
            out["transfer"],
            **noise,
            self_transfer=impact.get("self_transfer"),
            lm_loss_rise=impact.get("lm_loss_rise"),
        )
    return out


def _ratio(x: float | None, chance: float) -> float | None:
    return None if x is None or not chance else float(x) / chance


# ---- compare and follow ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpaceComparison:
    """Two runs' spaces of one kind over their common tasks: Spearman r of the off-diagonals with a Mantel p,
    A − B, and the tasks whose rows changed most (norm of the row's change)."""

    kind: str
    a: str
    b: str
    relation: str  # checkpoint (consecutive revisions) | scale (two models) | seed (two seeds of one) | "" (any two)
    r: float | None
    p: float | None
    tasks: list[str]
    most_changed: list[tuple[str, float]]
    difference: np.ndarray = field(repr=False, compare=False)
    p_exact: bool | None = None  # over all T! relabellings (else random ones)
    p_floor: float | None = None  # the smallest p those relabellings allow
    identical_weights: bool | None = None  # both runs' weights hash the same (None: a hash unknown)

    def as_json(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("difference", "tasks")}
        out["most_changed"] = [[t, v] for t, v in self.most_changed]
        return out


def compare(
    a: TaskSpaces, b: TaskSpaces, kind: str, cfg: AnalysisConfig, relation: str = "", test: bool = True
) -> SpaceComparison:
    """A and B over their shared defined tasks; `test=False` leaves out the permutation test (p is NaN), for a
    comparison whose r and p the analyze stage stored."""
    common = [t for t in a.tasks if t in b.tasks]
    ma, mb = (s.restricted(common).matrices[kind] for s in (a, b))
    keep = sorted(set(defined(ma)) & set(defined(mb)))  # tasks with a NaN in either space are left out
    common = [common[k] for k in keep]
    if len(common) < 3:
        raise AnalysisError(f"{a.key} and {b.key} share {len(common)} defined tasks; comparing needs at least 3")
    ma, mb = ma[np.ix_(keep, keep)], mb[np.ix_(keep, keep)]
    c = A.compare_spaces(ma, mb, common, permutations=cfg.permutations, seed=cfg.seed, test=test)
    return SpaceComparison(
        kind, a.key, b.key, relation, _num(c.r), _num(c.p), common, c.most_changed, c.difference, c.exact, c.min_p
    )


@dataclass(frozen=True)
class Stability:
    """One kind over a model's checkpoints (training order): Spearman of each space with the next and with the
    last, and the same kind's within − between contrast at each checkpoint."""

    kind: str
    revisions: list[str]
    runs: list[str]  # the spaces' keys, in the same order
    with_next: list[float | None]
    with_last: list[float | None]
    contrast: list[float | None]
    # per checkpoint: the earlier revision whose weights are the same (its curve is flat for that reason), else None
    identical_to: list[str | None] = field(default_factory=list)


def identical_to(hashes: Sequence[str | None]) -> list[int | None]:
    """For each weights hash, the position of the first earlier one equal to it (None: new, or unknown)."""
    first: dict[str, int] = {}
    out: list[int | None] = []
    for i, h in enumerate(hashes):
        out.append(first.get(h) if h else None)
        if h:
            first.setdefault(h, i)
    return out


def same_weights(a: str | None, b: str | None) -> bool | None:
    """Whether two runs' weights are identical (None when either hash is unknown)."""
    return None if not a or not b else a == b


def stability(
    series: Sequence[tuple[str, TaskSpaces]],
    fits: Sequence[dict[str, Fit]],
    kind: str,
    hashes: Sequence[str | None] = (),
) -> Stability:
    """`series`: (revision, spaces) in training order, all over the same tasks; `fits`: each one's fit; `hashes`:
    each one's weights hash, if known (checkpoints repeating earlier weights are named in `identical_to`)."""
    mats = [s.matrices[kind] for _, s in series]
    keep = sorted(set.intersection(*(set(defined(m)) for m in mats)))  # tasks defined at every checkpoint
    st = A.stability([m[np.ix_(keep, keep)] for m in mats])
    return Stability(
        kind,
        [rev for rev, _ in series],
        [s.key for _, s in series],
        [_num(x) for x in st.with_next],
        [_num(x) for x in st.with_last],
        [f[kind].contrast if kind in f else None for f in fits],
        [None if j is None else series[j][0] for j in identical_to(list(hashes) or [None] * len(series))],
    )


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


# ---- a whole analysis -----------------------------------------------------------------------------------


@dataclass
class Analysis:
    """Fits of every run, comparisons (consecutive checkpoints; last checkpoints of each pair of models) and
    stability curves (models with ≥ 2 checkpoints over the same tasks): what analysis.json holds."""

    settings: AnalysisConfig
    fits: dict[str, dict[str, Fit]] = field(default_factory=dict)
    comparisons: list[SpaceComparison] = field(default_factory=list)
    stability: dict[str, dict[str, Stability]] = field(default_factory=dict)
    # per run: first-order transfer against exact (stats.agreement), each fit over task subsets (stats.subsets)
    linear_agreement: dict[str, dict] = field(default_factory=dict)
    samples: dict[str, dict[str, dict]] = field(default_factory=dict)
    cells: dict[str, dict] = field(default_factory=dict)  # per run: transfer cells significant on their own pairs
    seeds: dict[str, dict[str, SeedSpread]] = field(default_factory=dict)  # per family with ≥ 2 seeds, per kind
    scales: list[dict] = field(default_factory=list)  # scale comparisons between families of seeds: r mean ± SD

    def _run_kind(self, key: str, kind: str, f: Fit) -> dict:
        out = asdict(f)
        if kind == "transfer_linear" and key in self.linear_agreement:
            out |= _flat("agreement_", self.linear_agreement[key])
        if kind == "transfer":
            out |= self.cells.get(key, {})
        return out | _flat("sample_", self.samples.get(key, {}).get(kind, {}))

    def as_json(self) -> dict:
        """Per run and kind: the fit, then (flat, so the index takes them as they are) first-order transfer's
        `agreement_*` with exact and each fit's spread over task subsets, `sample_<statistic>_<summary>`."""
        return {
            "settings": asdict(self.settings),
            "runs": {key: {kind: self._run_kind(key, kind, f) for kind, f in kinds.items()}
                     for key, kinds in self.fits.items()},  # fmt: skip
            "comparisons": [c.as_json() for c in self.comparisons],
            "stability": {m: {k: asdict(s) for k, s in kinds.items()} for m, kinds in self.stability.items()},
            "seeds": {f: {k: asdict(s) for k, s in kinds.items()} for f, kinds in self.seeds.items()},
            "scales": self.scales,
        }


def _flat(prefix: str, d: dict) -> dict:
    out = {}
    for k, v in d.items():
        out |= _flat(f"{prefix}{k}_", v) if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def compared(*runs: TaskSpaces) -> list[str]:
    """The kinds compared between runs and followed over checkpoints that every one of them has."""
    return [k for k in (*COMPARED, "transfer_linear") if all(k in r.matrices for r in runs)]


def extras(out: Analysis, spaces: TaskSpaces, groups: list[str], words: dict[str, set[str]], cfg: AnalysisConfig):
    """A run's first-order agreement (when it has exact and first-order transfer) and its fits over task subsets."""
    m = spaces.matrices
    if "transfer_margin" in m and "transfer_linear" in m:
        out.linear_agreement[spaces.key] = agreement(m["transfer_margin"], m["transfer_linear"])
    if "transfer_q" in m:
        off = ~np.eye(len(spaces.tasks), dtype=bool) & np.isfinite(m["transfer_q"])
        out.cells[spaces.key] = {"cells_tested": int(off.sum()), "cells_q05": int((m["transfer_q"][off] < 0.05).sum()),
                                 "cells_p05": int((m["transfer_p"][off] < 0.05).sum())}  # fmt: skip
    if cfg.sample_draws:
        lexical = A.lexical_overlap([words.get(t, set()) for t in spaces.tasks])
        per_kind = {
            kind: sample_sensitivity(m[kind], groups, lexical, cfg.sample_per_group, cfg.sample_draws,
                                     cfg.permutations, cfg.seed, cfg.symmetric)  # fmt: skip
            for kind in FITTED
            if kind in m
        }
        if any(per_kind.values()):
            out.samples[spaces.key] = {k: v for k, v in per_kind.items() if v}


def analyze(
    series: dict[str, list[tuple[str, TaskSpaces]]],
    groups: Callable[[list[str]], list[str]],
    words: dict[str, set[str]],
    sparsity: Callable[[str, TaskSpaces], float],
    cfg: AnalysisConfig,
    say: Callable[[TaskSpaces, dict[str, Fit]], None] | None = None,
    quality: Callable[[TaskSpaces], dict] | None = None,
    weights: Callable[[TaskSpaces], str | None] | None = None,
    family: Callable[[str], tuple[str, int]] | None = None,
) -> Analysis:
    """`series`: per model, its (revision, spaces) in training order; `groups(tasks)` gives the hypothesis
    grouping; `sparsity(model, spaces)` the run's FTGD sparsity (for sharing's chance level); `weights(spaces)`
    the run's weights hash, if known: stability curves and comparisons say which runs have identical weights;
    `family(model)` its (family, seed): families of several seeds get their spread over seeds (stats.seeds), and
    their last checkpoints are compared as `seed`, not `scale`."""
    sha, fam = weights or (lambda _s: None), family or (lambda m: (m, 0))
    out = Analysis(cfg)
    pairs: list[tuple[TaskSpaces, TaskSpaces, str]] = []
    for model, runs in series.items():
        fits = []
        for _, spaces in runs:
            f = fit(spaces, groups(spaces.tasks), words, sparsity(model, spaces), cfg, quality and quality(spaces))
            out.fits[spaces.key] = f
            fits.append(f)
            extras(out, spaces, groups(spaces.tasks), words, cfg)
            if say:
                say(spaces, f)
        if len(runs) > 1 and len({tuple(s.tasks) for _, s in runs}) == 1:
            hashes = [sha(s) for _, s in runs]
            kinds = compared(*(s for _, s in runs))
            out.stability[model] = {kind: stability(runs, fits, kind, hashes) for kind in kinds}
        pairs += [(a, b, "checkpoint") for (_, a), (_, b) in zip(runs, runs[1:])]
    last = [(fam(model)[0], runs[-1][1]) for model, runs in series.items() if runs]
    pairs += [(a, b, "seed" if fa == fb else "scale") for i, (fa, a) in enumerate(last) for fb, b in last[i + 1 :]]
    members: dict[str, list] = {}
    for model, runs in series.items():
        members.setdefault(fam(model)[0], []).append((fam(model)[1], model, runs))
    for name, ms in members.items():
        if len(ms) > 1:
            ms.sort(key=lambda m: m[0])
            out.seeds[name] = {k: seed_spread(ms, out.fits, k) for k in compared(*(s for *_, rs in ms for _, s in rs))}
    out.scales = scale_spread(out.comparisons, {s.key: fam(m)[0] for m, runs in series.items() for _, s in runs})
    for a, b, relation in pairs:
        if len(set(a.tasks) & set(b.tasks)) >= 3:  # spaces over too few common tasks are not compared
            same = same_weights(sha(a), sha(b))
            out.comparisons += [
                replace(compare(a, b, kind, cfg, relation), identical_weights=same) for kind in compared(a, b)
            ]
    return out
