"""Runs screen: every run/experiment in the index with its key metrics; filter, sort, pick one or two."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.widgets import DataTable, Footer, Header, Input

from taskspace.report.labels import SHORT, format_stat
from taskspace.runs import revision_key
from taskspace_tui.keys import Key
from taskspace_tui.screens.base import DataScreen, message_box

# The key metrics come before the long variant/params columns, so they stay visible at 80 columns.
COLUMNS = [
    ("model", "model"),
    ("scale", "scale"),
    ("revision", "revision"),
    *((SHORT[key], key) for key in ("mantel_r", "mantel_p", "contrast", "reliability")),
    ("variant", "experiment"),
    ("params", "params_hash"),
]


def _fmt(v, key: str = "") -> str:
    return format_stat(v, key) if v is None or isinstance(v, float) else str(v)


def _cell(r: dict, key: str) -> str:
    """A row's cell; a revision whose weights repeat an earlier one's says which (`step90 =step30`)."""
    if key == "revision" and r.get("identical_to"):
        return f"{r['revision']} ={r['identical_to']}"
    return _fmt(r[key], key)


@dataclass
class RunsData:
    rows: list[dict]  # Index.runs(): each model's checkpoints in training order


class RunsScreen(DataScreen):
    NAME = "runs"
    KEYS = [
        # priority: the table's own enter (not shown) would hide it from the footer; in the filter box it submits
        Key("enter", "open", "heatmap", "Heatmap of the run under the cursor", priority=True),
        Key("space", "mark", "mark", "Mark the run under the cursor (two marked: compare them)"),
        Key("c", "compare", "compare", "Compare the two marked runs"),
        Key("t", "task", "task view", "Task view of the run under the cursor"),
        Key("s", "sort", "sort", "Sort by the next column"),
        Key("slash", "filter", "filter", "Filter runs by any text (model, revision, variant…)", shown="/"),
        Key("R", "reload", "reload", "Re-read the index"),
        Key("escape", "leave_filter", "table", "Leave the filter box (the filter stays)", palette=False),
    ]
    BACK = False  # the first screen: escape leaves the filter box

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.marked: list[int] = []
        self.sort_col = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter runs (model, revision, variant…)  /", id="filter")
        yield message_box()
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column(" ", key="mark", width=1)
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        super().on_mount()

    def fetch(self, index) -> RunsData:
        return RunsData(index.runs())

    def show(self, data: RunsData) -> None:
        rows = self.rows = data.rows
        msg = self.query_one("#message")
        msg.display = not rows
        if not rows:
            msg.update("The index has no runs yet: run the pipeline (./scripts/main.sh or `dvc repro`).")
        self.refill()

    def refill(self) -> None:
        table = self.query_one(DataTable)
        needle = self.query_one("#filter", Input).value.strip().lower()
        key = COLUMNS[self.sort_col][1]
        rows = [r for r in self.rows if not needle or needle in " ".join(str(v) for v in r.values()).lower()]
        if key == "revision":  # training order, not text order (step1000 before step16000)
            rows.sort(key=lambda r: (r["model"], revision_key(r["revision"]), r["run_id"]))
        else:
            rows.sort(key=lambda r: (r[key] is None, r[key] if r[key] is not None else 0))
        table.clear()
        for r in rows:
            table.add_row(
                "●" if r["run_id"] in self.marked else " ", *(_cell(r, k) for _, k in COLUMNS), key=str(r["run_id"])
            )

    def on_input_changed(self, event: Input.Changed) -> None:
        self.refill()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(DataTable).focus()

    def current(self) -> dict | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next(r for r in self.rows if str(r["run_id"]) == key)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        from taskspace_tui.screens.heatmap import HeatmapScreen

        if isinstance(self.focused, Input):  # enter in the filter box: back to the (filtered) table
            self.query_one(DataTable).focus()
            return
        run = self.current()
        if run:
            self.app.push_screen(HeatmapScreen(run))

    def action_task(self) -> None:
        from taskspace_tui.screens.task import TaskScreen

        run = self.current()
        if run:
            self.app.push_screen(TaskScreen(run, None))

    def action_mark(self) -> None:
        run = self.current()
        if not run:
            return
        rid = run["run_id"]
        self.marked = [m for m in self.marked if m != rid] if rid in self.marked else (self.marked + [rid])[-2:]
        table = self.query_one(DataTable)
        for r in self.rows:
            if str(r["run_id"]) in table.rows:
                table.update_cell(str(r["run_id"]), "mark", "●" if r["run_id"] in self.marked else " ")

    def action_compare(self) -> None:
        from taskspace_tui.screens.compare import CompareScreen

        picked = [r for m in self.marked for r in self.rows if r["run_id"] == m]
        if len(picked) < 2:
            cur = self.current()
            if cur and picked and cur["run_id"] != picked[0]["run_id"]:
                picked.append(cur)
        if len(picked) != 2:
            self.notify("Mark two runs with space, then press c", severity="warning")
            return
        self.app.push_screen(CompareScreen(picked[0], picked[1]))

    def action_sort(self) -> None:
        self.sort_col = (self.sort_col + 1) % len(COLUMNS)
        self.notify(f"sorted by {COLUMNS[self.sort_col][0]}")
        self.refill()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.query_one(DataTable).focus()

    def action_reload(self) -> None:
        self.reload()
