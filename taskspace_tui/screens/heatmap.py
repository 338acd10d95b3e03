"""Heatmap screen: one run's task space (transfer / normalised / gradient / sharing) with a cell cursor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Static

from taskspace.errors import OutputError
from taskspace.report.labels import NOISE_FLOOR, format_stat, p_method, trust_lines, unit
from taskspace.stats import analysis
from taskspace.stats.spaces import CELL_KINDS, KINDS
from taskspace_tui.keys import Key
from taskspace_tui.screens.base import DataScreen, message_box
from taskspace_tui.widgets.heatmap import Heatmap, Scale, legend


@dataclass
class HeatmapData:
    kinds: list[str]  # the kinds this run offers (a copy of another kind is left out)
    kind: str
    tasks: list[str]
    matrix: np.ndarray  # rows: tuned task, columns: evaluated task
    meta: dict[str, dict]  # task → its phenomenon, field…
    stats: dict[str, dict[str, float]]  # kind → fit statistics
    interval: np.ndarray | None = None  # 95% interval half-width per cell, from the run's replicates
    metric: str = "accuracy"  # what transfer is measured in (probing.metric)
    cells: dict[str, np.ndarray] | None = None  # transfer: each cell's paired test (transfer_p, _q, _low, _high)


def offered_kinds(index, run_id: int) -> list[str]:
    """Stored kinds in the spaces' order; transfer_margin only when it differs from transfer (under the margin
    metric it is the same space)."""
    stored = index.kinds(run_id)
    kinds = [k for k in KINDS if k in stored]
    if "transfer_margin" in kinds and "transfer" in kinds:
        a, b = index.matrix(run_id, "transfer")[1], index.matrix(run_id, "transfer_margin")[1]
        if a.shape == b.shape and np.allclose(np.nan_to_num(a), np.nan_to_num(b)):
            kinds.remove("transfer_margin")
    return kinds


def display_order(m: np.ndarray, groups: list[str], how: str) -> list[int]:
    """Tasks by phenomenon (stable) or by clustering the space."""
    return analysis.cluster_order(m) if how == "cluster" else analysis.group_order(groups)


class HeatmapScreen(DataScreen):
    NAME = "heatmap"
    KEYS = [
        Key("k", "next_kind", "next space", "Next kind of space: transfer → normalised → gradient → sharing"),
        Key("o", "toggle_order", "order", "Order tasks by phenomenon ↔ by clustering the space"),
        Key("z", "zoom", "zoom", "Only the blocks of the cursor's phenomena, row's and column's (again: all)"),
        Key("enter", "task", "task view", "Task view of the cursor's row task"),
        Key("g", "jump", "go to task", "Move the cursor to a task typed by name (its own cell: row and column)"),
        Key("e", "export", "export", "Write this space as a paper figure (PNG) and its cells (CSV) into exports/"),
    ]

    def __init__(self, run: dict, kind: str = "transfer") -> None:
        super().__init__()
        self.run_row = run
        self.kind = kind
        self.kinds: list[str] = []
        self.order_by = "phenomenon"
        self.zoom: tuple[str, ...] = ()  # the phenomena shown (empty: all)
        self.tasks: list[str] = []
        self.matrix = np.zeros((0, 0))
        self.interval: np.ndarray | None = None
        self.meta: dict[str, dict] = {}
        self.shown: list[int] = []  # display position → index into self.tasks
        self.metric = "accuracy"
        self.cells: dict[str, np.ndarray] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield message_box()
        with Horizontal(id="heatmap-body"):
            yield Heatmap(id="heatmap")
            with Vertical(id="side"):
                yield Static(id="title")
                yield Static(id="cell")
                yield Static(id="legend")
                yield Static(id="stats")
        yield Footer()

    def fetch(self, index) -> HeatmapData:
        run_id = self.run_row["run_id"]
        kinds = offered_kinds(index, run_id)
        if not kinds:
            raise OutputError(f"run {self.run_row['label']} has no task-space matrices in the index; re-run its probe")
        kind = self.kind if self.kind in kinds else kinds[0]
        tasks, m = index.matrix(run_id, kind)
        meta = {t["task"]: t for t in index.tasks()}
        ci = index.matrix(run_id, "transfer_ci")[1] if kind == "transfer" else None  # with replicates
        ci = ci if ci is not None and ci.size else None
        cells = None
        if kind == "transfer" and "transfer_q" in index.kinds(run_id):
            cells = {k: index.matrix(run_id, k)[1] for k in CELL_KINDS}
        return HeatmapData(kinds, kind, tasks, m, meta, index.analysis(run_id), ci, index.metric(run_id), cells)

    def show(self, data: HeatmapData) -> None:
        pair = self.pair() if self.tasks else None
        self.kinds, self.kind, self.tasks, self.matrix = data.kinds, data.kind, data.tasks, data.matrix
        self.meta, self.stats, self.interval, self.metric = data.meta, data.stats, data.interval, data.metric
        self.cells = data.cells
        self.redraw(pair)
        self.query_one(Heatmap).focus()

    def groups(self) -> list[str]:
        return [self.meta.get(t, {}).get("phenomenon", "") for t in self.tasks]

    def pair(self) -> tuple[str, str] | None:
        """The cursor's (row task, column task): what zoom, reorder and the next space keep."""
        r, c = self.query_one(Heatmap).cursor
        n = len(self.shown)
        return (self.tasks[self.shown[r]], self.tasks[self.shown[c]]) if r < n and c < n else None

    def redraw(self, pair: tuple[str, str] | None = None) -> None:
        """Draw the space in the current order and zoom, the cursor on the task pair it was on (when shown), on
        the colour scale of the whole space (a zoomed block of a signed space stays diverging)."""
        pair = pair or self.pair()
        groups = self.groups()
        order = display_order(self.matrix, groups, self.order_by)
        if self.zoom:
            order = [k for k in order if groups[k] in self.zoom]
        self.shown = order
        sub = self.matrix[np.ix_(order, order)] if order else np.zeros((0, 0))
        names = [self.tasks[k] for k in order]
        hm = self.query_one(Heatmap)
        marked = None
        if self.cells is not None and order:  # significant on its own pairs (q < 0.05), or the diagonal
            q = self.cells["transfer_q"][np.ix_(order, order)]
            marked = (q < 0.05) | np.eye(len(order), dtype=bool)
        hm.set_data(
            sub,
            [groups[k] for k in order] if self.order_by == "phenomenon" else [],
            Scale.of(self.matrix),
            labels=names,
            marked=marked,
        )
        if pair is not None and pair[0] in names and pair[1] in names:
            hm.cursor = (names.index(pair[0]), names.index(pair[1]))
        run = self.run_row
        self.query_one("#title", Static).update(
            Text.assemble(
                (f"{run['model']}@{run['revision']}", "bold"),
                f"  {run.get('experiment') or ''}\n",
                ("space ", "dim"),
                (self.kind, "bold cyan"),
                ("\nunit ", "dim"),
                unit(self.kind, self.metric),
                ("\nrows ", "dim"),
                "tuned on · ",
                ("columns ", "dim"),
                "evaluated on",
                ("\norder ", "dim"),
                self.order_by,
                ("  zoom ", "dim"),
                " + ".join(self.zoom) or "all",
                f"\n{len(order)} of {len(self.tasks)} tasks",
                ("" if hm.fits else "\nscrolls with the cursor; z zooms to its phenomena", "yellow"),
            )
        )
        self.query_one("#legend", Static).update(Text.assemble(*[(s.text, s.style) for s in legend(hm.scale)]))
        s = self.stats.get(self.kind, {})
        keys = ("mantel_r", "mantel_p", "within", "between", "contrast")
        lines = [f"{k}: {format_stat(s[k], k)}" for k in keys if k in s]
        if "p_floor" in s:
            lines.append(p_method(bool(s.get("p_exact")), int(s.get("relabellings") or 0), s["p_floor"]))
        if s.get("n_excluded"):
            lines.append(f"{int(s['n_excluded'])} task(s) left out: no value (NaN) in their row or column")
        lines += trust_lines(self.kind, s, self.stats.get("transfer", {}))
        self.query_one("#stats", Static).update("\n".join(lines) or "no analysis for this space")
        self.show_cell(*hm.cursor)

    def cell(self, row: int, col: int) -> tuple[str, str, float]:
        """(task A, task B, value) under display position (row, col)."""
        a, b = self.tasks[self.shown[row]], self.tasks[self.shown[col]]
        return a, b, float(self.matrix[self.shown[row], self.shown[col]])

    def show_cell(self, row: int, col: int) -> None:
        if not self.shown:
            return
        a, b, v = self.cell(row, col)
        pa, pb = self.meta.get(a, {}).get("phenomenon", ""), self.meta.get(b, {}).get("phenomenon", "")
        rel = "same phenomenon" if pa == pb else "different phenomena"
        self.query_one("#cell", Static).update(
            Text.assemble(
                ("A ", "dim"),
                (a, "bold"),
                f"\n  {pa}\n",
                ("B ", "dim"),
                (b, "bold"),
                f"\n  {pb}\n",
                ("value ", "dim"),
                (f"{v:+.4f}" if np.isfinite(v) else "n/a", "bold magenta"),
                (self._interval(row, col), "magenta"),
                f"  ({rel})",
                self._above_noise(row, col, v),
                self._test(row, col),
            )
        )

    def _test(self, row: int, col: int) -> str:
        """The cell's paired test on its own pairs: p, Benjamini–Hochberg q over the run's cells, its interval."""
        if self.cells is None or row == col:
            return ""
        i, j = self.shown[row], self.shown[col]
        p, q, lo, hi = (float(self.cells[k][i, j]) for k in CELL_KINDS)
        if not np.isfinite(p):
            return ""
        verdict = "significant" if q < 0.05 else "not significant (faded)"
        return f"\npaired test: p {p:.4f}, q {q:.4f} — {verdict}\n95% interval {lo:+.4f} … {hi:+.4f}"

    def _interval(self, row: int, col: int) -> str:
        if self.interval is None:
            return ""
        half = self.interval[self.shown[row], self.shown[col]]
        return f" ± {half:.4f}" if np.isfinite(half) else ""

    def _above_noise(self, row: int, col: int, v: float) -> str:
        floor = self.stats.get("transfer", {}).get("noise_floor")
        if self.kind != "transfer" or floor is None or row == col or not np.isfinite(v):
            return ""
        return f"\n{'above' if abs(v) > floor else 'within'} the {NOISE_FLOOR} (|value| vs {floor:.4f})"

    def on_heatmap_cursor_moved(self, event: Heatmap.CursorMoved) -> None:
        self.show_cell(event.row, event.col)

    def action_next_kind(self) -> None:
        if self.kinds:
            self.kind = self.kinds[(self.kinds.index(self.kind) + 1) % len(self.kinds)]
            self.reload()

    def action_toggle_order(self) -> None:
        self.order_by = "cluster" if self.order_by == "phenomenon" else "phenomenon"
        self.redraw()

    def action_zoom(self) -> None:
        """The row's and the column's phenomena (one block when they are the same): the cursor's pair stays."""
        pair = self.pair()
        if self.zoom:
            self.zoom = ()
        elif pair is not None:
            phenomenon = {t: g for t, g in zip(self.tasks, self.groups())}
            self.zoom = tuple(dict.fromkeys(phenomenon[t] for t in pair))
        self.redraw()

    def action_task(self) -> None:
        from taskspace_tui.screens.task import TaskScreen

        if self.shown:
            self.app.push_screen(TaskScreen(self.run_row, self.tasks[self.shown[self.query_one(Heatmap).cursor[0]]]))

    def action_jump(self) -> None:
        from taskspace_tui.screens.jump import JumpScreen

        if self.shown:
            self.app.push_screen(JumpScreen([self.tasks[k] for k in self.shown]), self._jump_to)

    def _jump_to(self, task: str | None) -> None:
        if task is not None:
            pos = [self.tasks[k] for k in self.shown].index(task)
            self.query_one(Heatmap).cursor = (pos, pos)

    def action_export(self) -> None:
        if self.tasks:
            self.export_figure(self.run_row["index_key"], self.kind, list(self.tasks), self.matrix.copy())

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def export_figure(self, key: str, kind: str, tasks: list[str], m: np.ndarray) -> None:
        """Rendering takes a second or two: in a thread, so the screen stays live."""
        from taskspace.io import atomic_write
        from taskspace.report import export

        # names, not with_suffix: a model such as pythia-1.4b has a dot of its own
        stem = str(self.app.exports / f"{key.replace('@', '-').replace('#', '-')}-{kind}")
        groups = {t: self.meta.get(t, {}).get("phenomenon", "") for t in tasks}
        try:
            export.save_figure(export.space_figure(tasks, m, groups, kind, self.metric, key), Path(f"{stem}.png"))
            atomic_write(Path(f"{stem}.csv"), lambda f: f.write_text(export.space_csv(tasks, m)))
        except OSError as e:
            self.app.call_from_thread(self.notify, f"export failed: {e}", severity="error")
            return
        self.app.call_from_thread(self.notify, f"wrote {stem}.png and .csv")
