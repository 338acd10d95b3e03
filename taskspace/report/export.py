"""Figures and reports for papers and notes: a task space as a labelled heatmap, two spaces compared, the
stability of spaces over checkpoints (PNG, SVG or PDF, matplotlib), a space as CSV, and a run report in Markdown or
HTML. Rendered off-screen (Agg), so it works on a server over SSH; each file is written atomically.
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
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
    axes,
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


NAMED_TASKS = 40  # a compare figure names each task up to this many; past it, it names the phenomenon blocks
CBAR = 0.15  # a colour bar's width (inches)


def _font(n: int) -> float:
    """The size (pt) of task and block names: 8 for a few tasks, down to 6, still readable, for all 67 BLiMP tasks."""
    return 8.0 if n <= 24 else 7.0 if n <= 40 else 6.0


def _runs(groups: Sequence[str]) -> list[tuple[str, int, int]]:
    """The blocks of equal consecutive groups (tasks are in group order): (group, first, stop)."""
    out, start = [], 0
    for i in range(1, len(groups) + 1):
        if i == len(groups) or groups[i] != groups[start]:
            out.append((groups[start], start, i))
            start = i
    return out


def _side(n: int, groups: Sequence[str], named: bool, fs: float, most: float, total: float) -> float:
    """A heatmap's side (inches): `total` shared by its cells, at most `most` a cell, and never less than one line
    of text per task (named) or per smallest block (blocks named instead), so no two names can touch."""
    line = 1.45 * fs / 72
    smallest = min((b - a for _, a, b in _runs(groups)), default=1)
    return n * max(line if named else line / smallest, min(most, total / max(n, 1)))


def _heatmap(ax, cax, names, m, groups, kind, label, diverging, limits=None, named=True, side=4.0):
    """A space on `ax` (its colour bar on `cax`, if any): lines between phenomenon blocks; each task named on both
    axes and each block named at its right, or (not `named`) the blocks named on both axes instead of the tasks;
    the colour bar's label wrapped to the heatmap's `side` (inches)."""
    lo, hi = limits or _limits(m, diverging)
    cmap = "RdBu_r" if diverging else "viridis"
    im = ax.imshow(m, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest", aspect="auto")
    blocks = [b for b in _runs(groups) if b[0]] if any(groups) else []
    n, fs = len(names), _font(len(names)) if named or not blocks else 7.0  # blocks named: fewer, more room
    for _, _, stop in _runs(groups) if blocks else []:
        if stop < n:
            ax.axhline(stop - 0.5, color="black", lw=0.6)
            ax.axvline(stop - 0.5, color="black", lw=0.6)
    if named or not blocks:
        ax.set_xticks(range(n), names, rotation=90, fontsize=fs)
        ax.set_yticks(range(n), names, fontsize=fs)
        for name, first, stop in blocks:
            ax.annotate(name, xy=(1, (first + stop - 1) / 2), xycoords=("axes fraction", "data"), xytext=(4, 0),
                        textcoords="offset points", va="center", ha="left", fontsize=fs, fontweight="bold")  # fmt: skip
    else:
        centres = [(first + stop - 1) / 2 for _, first, stop in blocks]
        ax.set_xticks(centres, [b[0] for b in blocks], rotation=90, fontsize=fs, fontweight="bold")
        ax.set_yticks(centres, [b[0] for b in blocks], fontsize=fs, fontweight="bold")
        ax.tick_params(length=0)
    rows, cols = axes(kind)
    ax.set_xlabel(cols, fontsize=9)
    ax.set_ylabel(rows, fontsize=9)
    if cax is not None:
        bar = ax.figure.colorbar(im, cax=cax)
        bar.set_label(textwrap.fill(label, max(16, int(side * 14))), fontsize=8)
        cax.tick_params(labelsize=7)
    return im


def _reach(ax, renderer) -> np.ndarray:
    """How far an axes' texts (tick and axis labels, title, block names) reach beyond its box (inches): left,
    bottom, right, top."""
    tight, box = ax.get_tightbbox(renderer), ax.get_window_extent(renderer)
    return np.array([box.x0 - tight.x0, box.y0 - tight.y0, tight.x1 - box.x1, tight.y1 - box.y1]) / ax.figure.dpi


def _arrange(fig, rows, title: str = "", gap: float = 0.3, pad: float = 0.1) -> None:
    """Lay out rows of boxes, (axes, width, height) in inches: rows top to bottom and centred, boxes left to right
    and centred on their row's line, the title above, and the figure sized to hold every text. Each box's texts
    are measured first and each box kept clear of its neighbours' by `gap`: no two texts can overlap."""
    boxes = [b for row in rows for b in row]
    big = sum(w + h for _, w, h in boxes) + 10
    fig.set_size_inches(big, big)
    for ax, w, h in boxes:
        ax.set_position([1 / big, 1 / big, w / big, h / big])
    renderer = fig.canvas.get_renderer()
    reach = {ax: _reach(ax, renderer) for ax, _, _ in boxes}
    at, widths, top = {}, [], 0.0
    for row in rows:
        up = max(h / 2 + reach[ax][3] for ax, _, h in row)
        down = max(h / 2 + reach[ax][1] for ax, _, h in row)
        x, mid = 0.0, top - up
        for ax, w, h in row:
            at[ax] = [x + reach[ax][0], mid - h / 2, w, h]
            x += reach[ax][0] + w + reach[ax][2] + gap
        widths.append(x - gap)
        top = mid - down - gap
    for row, width in zip(rows, widths, strict=True):
        for ax, _, _ in row:
            at[ax][0] += (max(widths) - width) / 2
    bottom = top + gap  # the lowest text, the first row's highest at 0
    text, title_at = None, (max(widths) / 2, gap / 2)

    def place(ox: float, oy: float, w: float, h: float) -> None:  # in figure fractions, for savefig's tight crop
        fig.set_size_inches(w, h)
        for ax, (x, y, bw, bh) in at.items():
            ax.set_position([(x + ox) / w, (y + oy) / h, bw / w, bh / h])
        if text is not None:
            text.set_position(((title_at[0] + ox) / w, (title_at[1] + oy) / h))

    if title:
        wrapped = "\n".join(textwrap.fill(line, max(60, int(max(widths) * 13))) for line in title.splitlines())
        text = fig.text(0, 0, wrapped, ha="center", va="bottom", fontsize=9)
    ox, oy = 1.0, 1.0 - bottom  # first with an inch of room, then cropped to what every text needs
    place(ox, oy, max(widths) + 2, oy + 4)
    tight = fig.get_tightbbox(fig.canvas.get_renderer())
    place(ox + pad - tight.x0, oy + pad - tight.y0, tight.width + 2 * pad, tight.height + 2 * pad)


def order_by_group(tasks: Sequence[str], groups: dict[str, str], m: np.ndarray):
    """Tasks sorted by (group, name), the matrix permuted to match: blocks become visible squares."""
    order = sorted(range(len(tasks)), key=lambda i: (groups.get(tasks[i], ""), tasks[i]))
    return [tasks[i] for i in order], [groups.get(tasks[i], "") for i in order], m[np.ix_(order, order)]


def space_figure(tasks, m, groups: dict[str, str], kind: str, metric: str, title: str, marked=None):
    """One space as a paper-style heatmap: both axes titled (tuned on / evaluated on, or task for a symmetric
    space), every task named, phenomenon blocks outlined and named, a colour bar in the space's unit (diverging
    around 0 but for sharing); `marked` (boolean, the tasks' order): a dot on each off-diagonal cell significant on
    its own pairs (q < 0.05). Laid out so that no two texts overlap, at any number of tasks."""
    plt = _pyplot()
    names, g, mm = order_by_group(list(tasks), groups, np.asarray(m, dtype=float))
    n = len(names)
    side = _side(n, g, True, _font(n), 0.5, 4.5)
    fig = plt.figure()
    ax, cax = fig.add_axes((0, 0, 1, 1)), fig.add_axes((0, 0, 1, 1))
    _heatmap(ax, cax, names, mm, g, kind, unit(kind, metric), kind != "sharing", side=side)
    note = ""
    if marked is not None:
        _, _, mk = order_by_group(list(tasks), groups, np.asarray(marked, dtype=float))
        rows, cols = np.nonzero((mk > 0) & ~np.eye(n, dtype=bool))
        ax.scatter(cols, rows, s=(0.3 * 72 * side / max(n, 1)) ** 2, c="black", marker="o", linewidths=0)
        note = f"\n• q < 0.05 on the cell's own pairs (paired sign-flip test, BH over cells): {len(rows)} cells"
    _arrange(fig, [[(ax, side, side), (cax, CBAR, side)]], f"{title}\n{kind}: {DESCRIPTIONS.get(kind, '')}{note}")
    return fig


def compare_figure(tasks, a, b, groups: dict[str, str], kind: str, metric: str, labels: tuple[str, str]):
    """A and B side by side on one shared scale, and A − B below them on a diverging one; each panel titled. Up to
    NAMED_TASKS tasks every task is named, past that the phenomenon blocks are named on both axes instead (7 pt)."""
    plt = _pyplot()
    names, g, ma = order_by_group(list(tasks), groups, np.asarray(a, dtype=float))
    _, _, mb = order_by_group(list(tasks), groups, np.asarray(b, dtype=float))
    both = np.concatenate([ma[np.isfinite(ma)], mb[np.isfinite(mb)]])
    shared = _limits(both, kind != "sharing") if both.size else (-1.0, 1.0)
    n = len(names)
    named = n <= NAMED_TASKS or not any(g)
    side = _side(n, g, named, _font(n) if named else 7.0, 0.4, 3.2)
    fig = plt.figure()
    pa, pb, pd, ca, cd = (fig.add_axes((0, 0, 1, 1)) for _ in range(5))
    _heatmap(pa, None, names, ma, g, kind, "", kind != "sharing", shared, named, side)
    _heatmap(pb, ca, names, mb, g, kind, unit(kind, metric), kind != "sharing", shared, named, side)
    _heatmap(pd, cd, names, ma - mb, g, kind, f"difference ({unit(kind, metric)})", True, None, named, side)
    for ax, title in ((pa, labels[0]), (pb, labels[1]), (pd, f"{labels[0]} − {labels[1]}")):
        ax.set_title(title, fontsize=9)
    rows = [[(pa, side, side), (pb, side, side), (ca, CBAR, side)], [(pd, side, side), (cd, CBAR, side)]]
    _arrange(fig, rows, f"{kind}: {DESCRIPTIONS.get(kind, '')}")
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
