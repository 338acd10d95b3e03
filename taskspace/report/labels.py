"""How results are shown, in one place: what each kind of space and each fit statistic is called, the unit a
space is measured in, and how its numbers are written — for the CLI's tables, the reports and figures, the stage
logs and the TUI. (The units are data of the spaces, `taskspace.stats.spaces`, which the index's views carry
too; this module only shows them.)
"""

from __future__ import annotations

from collections.abc import Mapping

from taskspace.stats.spaces import LOSS_UNIT, METRIC_UNITS, OWN_UNITS

MISSING = "—"  # a statistic that could not be computed
CONTRAST = "within − between"
CONTRAST_TIGHT = CONTRAST.replace(" ", "")  # in a narrow title
NOISE_FLOOR = "noise floor"

# ---- kinds of space and their units ---------------------------------------------------------------------

DESCRIPTIONS = {
    "transfer": "eval2 − eval1 on the column task after tuning on the row task (in the probing metric)",
    "transfer_norm": "transfer divided by the row task's own gain (its diagonal)",
    "transfer_margin": f"transfer in {METRIC_UNITS['margin']}, whatever the probing metric",
    "transfer_linear": "first-order approximation of margin transfer, g(column) · Δθ(row): a screen, not eval2",
    "gradient": "cosine of the two tasks' gradient differentials at the untuned model",
    "sharing": "Jaccard overlap of the two tasks' FTGD parameter footprints",
    "transfer_control": "transfer after tuning on label-swapped pairs: what tuning moves by chance",
    "transfer_minus_control": "transfer minus its label-swapped control",
}


SYMMETRIC = ("gradient", "sharing")  # a task × task space: the same value read either way round
TUNED, EVALUATED, TASK = "tuned on", "evaluated on", "task"  # a figure's row and column axes


def axes(kind: str) -> tuple[str, str]:
    """A space's (row, column) axis titles: the tuned and the evaluated task for the transfer kinds, plain "task"
    on both for a symmetric space."""
    return (TASK, TASK) if kind in SYMMETRIC else (TUNED, EVALUATED)


def unit(kind: str, metric: str = "accuracy") -> str:
    """What a space's values measure: transfer kinds in the probing metric, the others their own."""
    return OWN_UNITS.get(kind) or METRIC_UNITS[metric]


def unit_name(kind: str, metric: str = "accuracy") -> str:
    """The unit without its gloss, for narrow titles: `accuracy`, `mean margin`, `cosine`."""
    return unit(kind, metric).split(" (")[0]


# ---- the fit statistics: their names -------------------------------------------------------------------

NAMES = {  # a statistic's name on a row of its own (`taskspace analyze`)
    "mantel_r": "Spearman r vs hypothesis",
    "mantel_p": "Mantel p",
    "within": "mean within phenomenon",
    "between": "mean between",
    "contrast": CONTRAST,
    "contrast_p": f"p ({CONTRAST})",
    "p_floor": "smallest attainable p",
    "reliability_sb": "reliability (replicates)",
    "lexical_r": "r vs lexical overlap",
    "partial_r": "partial r (lexical out)",
    "partial_p": "p (partial r)",
}
REPORT_COLUMNS = {  # a statistic's column in the run report (each p right after its statistic)
    "mantel_r": "Mantel r",
    "mantel_p": "p",
    "p_floor": "p floor",
    "contrast": CONTRAST,
    "contrast_p": "p",
    "partial_r": "r, lexical overlap out",
    "partial_p": "p",
    "reliability_sb": "reliability (S–B)",
}
SHORT = {  # narrow column headings (the TUI's runs, `taskspace metrics` and `taskspace exps`) …
    "mantel_r": "Mantel r",
    "mantel_p": "p",
    "p_floor": "floor",
    "contrast": "w−b",
    "reliability": "rel.",
    "above_noise": ">noise",
    "self_transfer": "gain",
    "lm_loss_rise": "Δloss",
}
MEANINGS = {  # … and what each means, in a table's caption
    "mantel_r": "Spearman with the hypothesis",
    "mantel_p": "Mantel p",
    "p_floor": "the smallest p the task set allows",
    "contrast": CONTRAST,
    "reliability": "split-half reliability over replicates (Spearman–Brown)",
    "above_noise": f"off-diagonal cells above the control's {NOISE_FLOOR}",
    "self_transfer": "mean own-task gain",
    "lm_loss_rise": f"mean LM-loss rise on other tasks ({LOSS_UNIT})",
}
GLOSSARY = {  # the TUI's help: what the runs table's figures mean
    SHORT["mantel_r"]: "Spearman correlation of a space's off-diagonal with the hypothesis (1 = same phenomenon)",
    SHORT["mantel_p"]: "Mantel permutation p: how often relabelled tasks fit as well (small = structure beyond chance)",
    SHORT["contrast"]: "mean value within a phenomenon minus between phenomena (> 0: related tasks are closer)",
    "lexical r": "correlation with vocabulary overlap: structure that shared words alone would give",
}


def short(key: str) -> str:
    """A figure's narrow heading, by its key in metrics.json (`transfer_mantel_r`) or in the index (`mantel_r`)."""
    return SHORT[key.removeprefix("transfer_")]


def caption(columns: Mapping[str, str]) -> str:
    """What a table of the transfer space's figures shows: each column's heading and meaning."""
    return "the transfer space — " + ", ".join(
        f"{heading}: {MEANINGS[key.removeprefix('transfer_')]}" for key, heading in columns.items()
    )


# ---- number formats ------------------------------------------------------------------------------------


def is_p(key: str) -> bool:
    """p-values and their floors: unsigned, and written with more digits near 0."""
    return key == "p" or key.endswith(("_p", "p_floor"))


def format_stat(value: float | None, key: str = "") -> str:
    """A statistic in a terminal (CLI tables, stage logs, TUI): 3 decimals (4 for p-values below 0.001), signed
    except p-values, "—" when missing."""
    if value is None:
        return MISSING
    if is_p(key):
        return f"{value:.4f}" if value < 0.001 else f"{value:.3f}"
    return f"{value:+.3f}"


def stat_cell(value: float | None, key: str) -> str:
    """A statistic in a Markdown table: p-values and floors to 3 significant digits, the rest signed."""
    if value is None:
        return MISSING
    return f"{value:.3g}" if is_p(key) else f"{value:+.3f}"


def format_metric(value: float | None, key: str) -> str:
    """A figure of metrics.json: the share of cells above noise as a percentage, the rest as statistics."""
    if value is not None and key.endswith("above_noise"):
        return f"{value:.0%}"
    return format_stat(value, key)


COMPACT = {  # `taskspace exps`: fewer digits, so a row of settings and metrics fits 80 columns
    "transfer_mantel_r": "+.2f",
    "transfer_mantel_p": ".3f",
    "transfer_contrast": "+.2f",
    "transfer_reliability": ".2f",
    "self_transfer": "+.2f",
    "lm_loss_rise": "+.3f",
}


def compact(value: float | None, key: str) -> str:
    """A headline metric in `taskspace exps`; blank where a run has none."""
    return "" if value is None else format(value, COMPACT[key])


def p_method(exact: bool | None, relabellings: int | None, floor: float | None) -> str:
    """How a p-value was computed, and the smallest it could be: `exact over 15 relabellings, p ≥ 0.067`."""
    if exact is None or floor is None:
        return MISSING
    how = f"exact over {relabellings:,} relabellings" if exact else f"{relabellings:,} random relabellings"
    return f"{how}, p ≥ {format_stat(floor, 'p')}"


def p_source(exact: bool | None, relabellings: int | None) -> str:
    """The same in a table cell: `exact (15)` or `random (1,000)`."""
    return MISSING if exact is None else f"{'exact' if exact else 'random'} ({relabellings:,})"


# ---- one-line summaries --------------------------------------------------------------------------------


def fit_summary(fit) -> str:
    """A space's fit on one line (stage logs): `Mantel r=+0.512 p=0.001, within − between=+0.034`."""
    return (
        f"Mantel r={format_stat(fit.mantel_r)} p={format_stat(fit.mantel_p, 'p')}, "
        f"{CONTRAST}={format_stat(fit.contrast)}"
    )


def comparison_summary(c) -> str:
    """Two runs' spaces compared, on one line: `transfer: A vs B: r=+0.412 p=0.020`."""
    return f"{c.kind}: {c.a} vs {c.b}: r={format_stat(c.r)} p={format_stat(c.p, 'p')}"


def trust_lines(kind: str, s: Mapping[str, float], transfer: Mapping[str, float], brief: bool = False) -> list[str]:
    """How far a space can be trusted: its reliability over replicates and, for transfer, the control's noise
    floor and the low-impact figures; or which setting would measure them (brief: n/a, and no low impact)."""
    if s.get("reliability_sb") is not None:
        lines = [f"reliability: {s['reliability_sb']:.2f} (split-half {s.get('reliability', float('nan')):.2f})"]
    else:
        lines = ["reliability: n/a" + ("" if brief else " (one replicate; set probing.ftgd_seeds)")]
    if kind == "transfer_linear":
        lines += linear_lines(s, brief)
    if not brief:
        lines += sample_lines(s)
    if kind != "transfer":
        return lines
    if transfer.get("noise_floor") is not None:
        above, cells = int(transfer.get("cells_above_noise") or 0), int(transfer.get("cells") or 0)
        lines.append(f"{NOISE_FLOOR}: {transfer['noise_floor']:.4f}; {above} of {cells} cells above")
    else:
        lines.append(f"{NOISE_FLOOR}: n/a" + ("" if brief else " (no control; set probing.control)"))
    if not brief and transfer.get("self_transfer") is not None and transfer.get("lm_loss_rise") is not None:
        lines.append(f"own-task gain {transfer['self_transfer']:+.3f}, LM-loss rise {transfer['lm_loss_rise']:+.3f}")
    return lines


def linear_lines(s: Mapping[str, float], brief: bool = False) -> list[str]:
    """First-order transfer is an approximation: say so, and how well it agreed with exact transfer."""
    if s.get("agreement_pearson") is None:
        return ["first order: not checked against exact" + ("" if brief else " (probing.transfer: both checks it)")]
    line = f"first order vs exact: Pearson {s['agreement_pearson']:+.2f}, Spearman {s['agreement_spearman']:+.2f}"
    if brief:
        return [line]
    rows, mag = s.get("agreement_row_pearson_median"), s.get("agreement_magnitude_ratio")
    return [
        line + " (off the diagonal)",
        ("per row median " + (f"{rows:+.2f}" if rows is not None else MISSING))
        + (f"; off-diagonal values ×{mag:.2f} of exact" if mag is not None else ""),
    ]


def sample_lines(s: Mapping[str, float]) -> list[str]:
    """How much the fit depends on which tasks were run: its spread over random task subsets."""
    if not s.get("sample_mantel_r_n"):
        return []
    sig = s.get("sample_mantel_r_significant")
    return [
        f"over {int(s['sample_draws'])} samples of {int(s['sample_tasks'])} tasks ({int(s['sample_per_group'])} per "
        f"group): r {s['sample_mantel_r_p05']:+.3f} … {s['sample_mantel_r_p95']:+.3f} (5–95%)"
        + (f", p < 0.05 in {sig:.0%}" if sig is not None else "")
    ]
