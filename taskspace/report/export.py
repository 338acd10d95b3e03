"""Figures and reports for papers and notes: a task space as a labelled heatmap, two spaces compared, the
stability of spaces over checkpoints (PNG or SVG, matplotlib), a space as CSV, and a run report in Markdown or
HTML. Rendered off-screen (Agg), so it works on a server over SSH; each file is written atomically.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from taskspace.errors import ConfigError
from taskspace.io import atomic_write
from taskspace.report.labels import (
    CONTRAST,
    DESCRIPTIONS,
    LOSS_UNIT,
    NOISE_FLOOR,
    REPORT_COLUMNS,
    linear_lines,
    stat_cell,
    unit,
)

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    import matplotlib.pyplot as plt

    return plt


def _limits(m: np.ndarray, diverging: bool) -> tuple[float, float]:
    finite = m[np.isfinite(m)]
    if not finite.size:
        return -1.0, 1.0
    if diverging:
        a = float(np.abs(finite).max()) or 1.0
        return -a, a
    return float(finite.min()), float(finite.max())


def _blocks(ax, groups: Sequence[str], n: int) -> None:
    """Lines between phenomenon blocks, and the block's name beside it (tasks are in group order)."""
    start = 0
    for i in range(1, n + 1):
        if i == n or groups[i] != groups[start]:
            if i < n:
                ax.axhline(i - 0.5, color="black", lw=0.6)
                ax.axvline(i - 0.5, color="black", lw=0.6)
            ax.text(n - 0.3, (start + i - 1) / 2, f" {groups[start]}", va="center", ha="left", fontsize=7)
            start = i


def _heatmap(ax, fig, tasks, m, groups, label, diverging, limits=None):
    lo, hi = limits or _limits(m, diverging)
    im = ax.imshow(m, cmap="RdBu_r" if diverging else "viridis", vmin=lo, vmax=hi, interpolation="nearest")
    n = len(tasks)
    size = 7 if n <= 20 else 4
    ax.set_xticks(range(n), tasks, rotation=90, fontsize=size)
    ax.set_yticks(range(n), tasks, fontsize=size)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("tuned on")
    if groups:
        _blocks(ax, groups, n)
    fig.colorbar(im, ax=ax, shrink=0.8, label=label, pad=0.2 if groups else 0.04)  # room for the block names


def order_by_group(tasks: Sequence[str], groups: dict[str, str], m: np.ndarray):
    """Tasks sorted by (group, name), the matrix permuted to match: blocks become visible squares."""
    order = sorted(range(len(tasks)), key=lambda i: (groups.get(tasks[i], ""), tasks[i]))
    return [tasks[i] for i in order], [groups.get(tasks[i], "") for i in order], m[np.ix_(order, order)]


def space_figure(tasks, m, groups: dict[str, str], kind: str, metric: str, title: str, marked=None):
    """One space as a paper-style heatmap: both axes titled, every task named, phenomenon blocks outlined and
    named, a colour bar in the space's unit (diverging around 0 for transfer); `marked` (boolean, the tasks'
    order): a dot on each off-diagonal cell significant on its own pairs (q < 0.05)."""
    plt = _pyplot()
    names, g, mm = order_by_group(list(tasks), groups, np.asarray(m, dtype=float))
    side = max(5.0, 0.16 * len(names) + 3)
    fig, ax = plt.subplots(figsize=(side + 2.5, side))
    _heatmap(ax, fig, names, mm, g, unit(kind, metric), diverging=kind not in ("sharing",))
    note = ""
    if marked is not None:
        _, _, mk = order_by_group(list(tasks), groups, np.asarray(marked, dtype=float))
        rows, cols = np.nonzero((mk > 0) & ~np.eye(len(names), dtype=bool))
        ax.scatter(cols, rows, s=max(2.0, 60 / max(len(names), 1)), c="black", marker="o", linewidths=0)
        note = f"\n• q < 0.05 on the cell's own pairs (paired sign-flip test, BH over cells): {len(rows)} cells"
    ax.set_title(f"{title}\n{kind}: {DESCRIPTIONS.get(kind, '')}{note}", fontsize=9)
    fig.tight_layout()
    return fig


def compare_figure(tasks, a, b, groups: dict[str, str], kind: str, metric: str, labels: tuple[str, str]):
    """A and B on one shared scale, and A − B on a diverging one."""
    plt = _pyplot()
    names, g, ma = order_by_group(list(tasks), groups, np.asarray(a, dtype=float))
    _, _, mb = order_by_group(list(tasks), groups, np.asarray(b, dtype=float))
    both = np.concatenate([ma[np.isfinite(ma)], mb[np.isfinite(mb)]])
    shared = _limits(both, kind != "sharing") if both.size else (-1.0, 1.0)
    side = max(4.0, 0.12 * len(names) + 3)
    fig, axes = plt.subplots(1, 3, figsize=(3 * side + 3, side))
    for ax, m, label in ((axes[0], ma, labels[0]), (axes[1], mb, labels[1])):
        _heatmap(ax, fig, names, m, g, unit(kind, metric), kind != "sharing", shared)
        ax.set_title(label, fontsize=9)
    _heatmap(axes[2], fig, names, ma - mb, g, f"difference ({unit(kind, metric)})", True)
    axes[2].set_title(f"{labels[0]} − {labels[1]}", fontsize=9)
    fig.suptitle(f"{kind}: {DESCRIPTIONS.get(kind, '')}", fontsize=9)
    fig.tight_layout()
    return fig


def stability_figure(series: dict[str, list[dict]], kind: str, metric: str):
    """Per model, its spaces over checkpoints: correlation with the last checkpoint's space (Spearman, no unit)
    and the within − between phenomenon contrast (the space's unit), on two panels with the training step."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    log = True
    for model, rows in series.items():
        steps = [r["step"] for r in rows]
        log &= all(s and s > 0 for s in steps)
        top.plot(steps, [r["with_last"] for r in rows], marker="o", label=model)
        bottom.plot(steps, [r["contrast"] for r in rows], marker="o", label=model)
    if log:
        top.set_xscale("log")
    ticks = sorted({r["step"] for rows in series.values() for r in rows})
    bottom.set_xticks(ticks, [f"{t:,}" for t in ticks], rotation=45 if len(ticks) > 6 else 0, fontsize=8)
    bottom.minorticks_off()
    top.minorticks_off()
    top.set_ylabel("Spearman r with\nthe last checkpoint", fontsize=9)
    bottom.set_ylabel(f"{CONTRAST}\n{unit(kind, metric)}", fontsize=9)
    bottom.set_xlabel("training step")
    bottom.axhline(0, color="grey", lw=0.6)
    top.legend(fontsize=8)
    top.set_title(f"{kind} space over pre-training", fontsize=9)
    fig.tight_layout()
    return fig


def figure_bytes(fig, fmt: str = "png") -> bytes:
    """The figure rendered in memory (and closed): for a file, or inlined into an HTML report."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def save_figure(fig, path: Path) -> Path:
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise ConfigError(f"{path}: figures are written as {', '.join(FIGURE_SUFFIXES)}; choose one of those")
    data = figure_bytes(fig, path.suffix[1:].lower())
    atomic_write(path, lambda f: f.write_bytes(data))
    return path


def space_csv(tasks, m) -> str:
    """Long form, one row per cell: tuned_task, eval_task, value (blank for NaN)."""
    lines = ["tuned_task,eval_task,value"]
    for i, a in enumerate(tasks):
        for j, b in enumerate(tasks):
            v = float(m[i][j])
            lines.append(f"{a},{b},{'' if v != v else repr(v)}")
    return "\n".join(lines) + "\n"


def trust_markdown(transfer: dict[str, float]) -> list[str]:
    """The transfer space's noise floor (from the label-swapped control) and low impact, or what would measure them."""
    lines = [f"## {NOISE_FLOOR.capitalize()} and low impact", ""]
    floor, above, cells = (transfer.get(k) for k in ("noise_floor", "cells_above_noise", "cells"))
    if floor is None:
        lines.append(f"- **{NOISE_FLOOR}**: not measured (the run has no control; set `probing.control: true`)")
    else:
        share = f" ({above / cells:.0%})" if cells else ""
        lines.append(f"- **{NOISE_FLOOR}** (95th percentile of |control transfer| off the diagonal): {floor:.4g}; "
                     f"{int(above)} of {int(cells)} off-diagonal cells above it{share}")  # fmt: skip
    for key, what in (("self_transfer", "own-task gain (mean diagonal)"),
                      ("lm_loss_rise", f"LM-loss rise on the other tasks' sentences ({LOSS_UNIT})")):  # fmt: skip
        if transfer.get(key) is not None:
            lines.append(f"- **{what}**: {transfer[key]:+.4g}")
    return lines + [""]


def extras_markdown(fits: dict[str, dict[str, float]]) -> list[str]:
    """First-order transfer's agreement with exact transfer, and every fit's spread over task subsets."""
    lines = []
    lin = fits.get("transfer_linear")
    if lin:
        lines += ["## First-order transfer (an approximation)", "",
                  "`transfer_linear` = g(evaluated task) · Δθ(tuned task): one gradient per task instead of an "
                  "eval2 pass per tuned task; a screen, not a measurement.", ""]  # fmt: skip
        lines += [f"- {line}" for line in linear_lines(lin)] + [""]
    sampled = {k: f for k, f in fits.items() if f.get("sample_mantel_r_n")}
    if sampled:
        f0 = next(iter(sampled.values()))
        lines += ["## Task-sample sensitivity", "",
                  f"Each fit again on {int(f0['sample_draws'])} random subsets of {int(f0['sample_tasks'])} tasks "
                  f"({int(f0['sample_per_group'])} per group): how much a finding depends on which tasks were run.",
                  "", "| space | r median | r 5–95% | p < 0.05 | within − between 5–95% | partial r 5–95% |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for kind, f in sampled.items():
            cells = [f"{f['sample_mantel_r_median']:+.3f}",
                     f"{f['sample_mantel_r_p05']:+.3f} … {f['sample_mantel_r_p95']:+.3f}",
                     f"{f.get('sample_mantel_r_significant', float('nan')):.0%}",
                     f"{f['sample_contrast_p05']:+.3g} … {f['sample_contrast_p95']:+.3g}",
                     (f"{f['sample_partial_r_p05']:+.3f} … {f['sample_partial_r_p95']:+.3f}"
                      if f.get("sample_partial_r_n") else "—")]  # fmt: skip
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def report_markdown(run: dict, fits: dict[str, dict[str, float]], top: list[tuple[str, str, float]], unit_: str,
                    figure: str | None = None) -> str:  # fmt: skip
    """A run's report: identity, each space's fit with its p-value, lexical control and reliability, the noise
    floor and low impact, the largest transfers."""
    lines = [f"# {run['label']}", ""]
    for key in ("model", "revision", "scale", "n_params", "experiment", "params_hash", "git_rev", "created"):
        if run.get(key) not in (None, ""):
            lines.append(f"- **{key}**: {run[key]}")
    header = "| space | " + " | ".join(REPORT_COLUMNS.values()) + " |"
    lines += ["", "## Fit to the hypothesis space", "", header, "|---" * (len(REPORT_COLUMNS) + 1) + "|"]
    for kind, f in fits.items():
        lines.append(f"| {kind} | " + " | ".join(stat_cell(f.get(k), k) for k in REPORT_COLUMNS) + " |")
    lines += ["", "p floor: the smallest p-value the permutations can give (1 / (permutations + 1), or exact). "
              "r, lexical overlap out: the Spearman r with the hypothesis partialling out the tasks' word overlap. "
              "reliability: split-half over the run's replicates, Spearman–Brown corrected.", ""]  # fmt: skip
    lines += trust_markdown(fits.get("transfer", {}))
    lines += extras_markdown(fits)
    if top:
        tested = all(len(t) == 4 for t in top)  # (a, b, value, q): each cell's paired test
        lines += [f"## Largest transfers ({unit_})", "", "| tuned on | evaluated on | transfer |"
                  + (" q (own pairs) |" if tested else ""), "|---|---|---|" + ("---|" if tested else "")]  # fmt: skip
        for t in top:
            q = f" {t[3]:.4f}{' *' if t[3] < 0.05 else ''} |" if tested else ""
            lines.append(f"| {t[0]} | {t[1]} | {t[2]:+.3f} |{q}")
    if figure:
        lines += ["", f"![transfer space]({figure})"]
    return "\n".join(lines) + "\n"


def report_html(markdown: str, figure_png: bytes | None = None) -> str:
    """The Markdown report as a self-contained HTML page (the figure inlined: no files beside it, no CDN)."""
    body, rows = [], []

    def flush() -> None:
        if rows:
            body.append("<table border=1 cellpadding=3>" + "".join(rows) + "</table>")
            rows.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            if not line.startswith("|---"):
                rows.append("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in line.strip("|").split("|")))
            continue
        flush()
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("- "):
            body.append(f"<div>{html.escape(line[2:].replace('**', ''))}</div>")
        elif line.startswith("![") and figure_png:
            data = base64.b64encode(figure_png).decode()
            body.append(f'<img alt="transfer space" src="data:image/png;base64,{data}">')
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "<!doctype html><meta charset=utf-8><title>taskspace report</title>\n" + "\n".join(body) + "\n"
