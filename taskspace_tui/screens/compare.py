"""Compare screen: two runs' task spaces side by side, their difference, correlation and Mantel p, the tasks
that changed most, and — for checkpoints of one model — the stability curve over its series."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Static

from taskspace.config import AnalysisConfig
from taskspace.errors import OutputError
from taskspace.index.settings_diff import RunsDiff
from taskspace.report.labels import CONTRAST_TIGHT, NAMES, format_stat, p_method, trust_lines, unit, unit_name
from taskspace.stats import analysis, spaces
from taskspace.stats.spaces import SpaceComparison, same_weights
from taskspace_tui.keys import Key
from taskspace_tui.screens.base import DataScreen, message_box
from taskspace_tui.widgets.heatmap import Heatmap, Scale, legend
from taskspace_tui.widgets.params_diff import ParamsDiff


def stability_plot(title: str, revisions: list[str], values: list, width: int = 60) -> Text:
    """plotext 6 line plot of one quantity over a model's checkpoints (named on the x axis, in training order):
    one quantity per plot, so each axis has one unit."""
    import plotext as plt

    f = plt.figure
    f.clear()
    f.plot_size(max(width, 30), 7)
    f.theme("dark") if hasattr(f, "theme") else None
    x = list(range(1, len(revisions) + 1))
    s = f.signal(x, [0.0 if v is None else v for v in values])
    s.lines()
    f.draw(s)
    f.ruler("x").ticks(x, revisions)  # the checkpoints by name, not by position
    f.title(title)  # short enough for half of an 80-column terminal
    return Text.from_ansi(str(f.build()))


STORED = ("r", "p", "relation", "p_floor", "p_exact")  # what the analyze stage stores of a comparison
STORED_BY = {True: "  (from the analysis)", False: "  (computed here: the analysis did not compare this pair)"}


def _relabellings(cmp: SpaceComparison) -> int:
    """How many relabellings the comparison's p is over (exact: all T!; random: from its floor)."""
    return round(1 / cmp.p_floor) - (0 if cmp.p_exact else 1) if cmp.p_floor else 0


@dataclass
class CompareData:
    comparison: SpaceComparison
    a: np.ndarray  # A's and B's spaces over the common tasks
    b: np.ndarray
    meta: dict[str, dict]
    stored: bool  # r and p as the analyze stage stored them (else computed here, with A's analysis settings)
    stability: list[dict]  # A's checkpoint series for this kind (empty: none)
    metric: str = "accuracy"  # A's probing metric: the unit of transfer
    trust: tuple[str, str] = ("", "")  # A's and B's reliability and noise floor for this kind
    identical: bool | None = None  # A's and B's weights hash the same (None: a hash unknown)
    seeds: list[dict] = dataclasses.field(default_factory=list)  # A's family's spread over seeds (empty: one seed)
    settings: RunsDiff | None = None  # what distinguishes A from B: the settings that differ, or what does


def seed_lines(rows: list[dict]) -> str:
    """A family's spread over seeds per checkpoint: a checkpoint-to-next change is read against seed-to-seed."""
    if not rows:
        return ""

    def ms(mean, sd) -> str:
        return "n/a" if mean is None else f"{mean:+.3f}" + (f" ± {sd:.3f}" if sd is not None else "")

    out = [f"seeds of {rows[0]['family']} (Spearman r; mean ± SD over seeds)", "revision   fit r            "
           "ckpt → next      seed ↔ seed"]  # fmt: skip
    for r in rows:
        cells = [ms(r[f"{v}_mean"], r[f"{v}_sd"]) for v in ("r", "with_next", "seed_r")]
        out.append(f"{r['revision']:<10} {cells[0]:<16} {cells[1]:<16} {cells[2]}")
    return "\n".join(out)


def identical_line(identical: bool | None, stability: list[dict]) -> str:
    """What the screen says of weights that repeat: A and B the same weights, checkpoints of the curve that repeat
    an earlier one (their r is high for that reason, not because the space settled)."""
    lines = ["A and B have identical weights: their difference is tuning noise alone"] if identical else []
    same = [f"{r['revision']} = {r['identical_to']}" for r in stability if r.get("identical_to")]
    if same:
        lines.append(f"identical checkpoints (same weights): {', '.join(same)}")
    return "\n".join(lines)


class CompareScreen(DataScreen):
    NAME = "compare"
    KEYS = [
        Key("k", "next_kind", "next space", "Compare the next kind of space: transfer → gradient → sharing"),
    ]

    def __init__(self, a: dict, b: dict, kind: str = "transfer") -> None:
        super().__init__()
        self.a, self.b, self.kind = a, b, kind
        self.result = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield message_box()
        with Horizontal(id="compare-maps"):
            for key, title in (("a", self.a), ("b", self.b), ("d", None)):
                with Vertical(classes="compare-col"):
                    name = "A − B" if title is None else f"{title['model']}@{title['revision']} {title['experiment']}"
                    yield Static(name, classes="compare-title")
                    yield Heatmap(id=f"map-{key}")
        yield Static(id="compare-cell")
        with Horizontal(id="compare-legends"):
            yield Static(id="legend-ab")
            yield Static(id="legend-d")
        yield ParamsDiff(id="params-diff")
        with Horizontal(id="compare-info"):
            yield Static(id="compare-stats")
            yield Static(id="stability")
        yield Footer()

    def fetch(self, index) -> CompareData:
        sa, sb = (self._spaces(index, run) for run in (self.a, self.b))
        settings = index.analysis_settings(self.a["run_id"])
        cfg = AnalysisConfig(**settings) if settings else AnalysisConfig()
        stored = index.comparison(self.a["run_id"], self.b["run_id"], self.kind)
        if stored:  # the analyze stage's r and p; compare gives the tasks it used (NaN ones left out) and A − B
            cmp = spaces.compare(sa, sb, self.kind, cfg, test=False)
            cmp = dataclasses.replace(cmp, **{k: stored[k] for k in STORED})
        else:  # a pair the analysis did not compare: the same function, with A's analysis settings
            cmp = spaces.compare(sa, sb, self.kind, cfg)
        series = []
        if self.a["model"] == self.b["model"] and self.a["params_hash"] == self.b["params_hash"]:
            series = index.stability(self.a["run_id"], self.kind)
        common = cmp.tasks
        return CompareData(
            cmp,
            sa.restricted(common).matrices[self.kind],
            sb.restricted(common).matrices[self.kind],
            {t["task"]: t for t in index.tasks()},
            stored is not None,
            series,
            index.metric(self.a["run_id"]),
            tuple(self._trust(index, run) for run in (self.a, self.b)),
            same_weights(self.a.get("weights_sha256"), self.b.get("weights_sha256")),
            index.seed_spread(self.a["run_id"], self.kind),
            index.settings_diff(self.a["run_id"], self.b["run_id"]),
        )

    def _trust(self, index, run: dict) -> str:
        stats = index.analysis(run["run_id"])
        return " · ".join(trust_lines(self.kind, stats.get(self.kind, {}), stats.get("transfer", {}), brief=True))

    def _spaces(self, index, run: dict) -> spaces.TaskSpaces:
        """The run's space as stored, NaN cells included: `spaces.compare` leaves their tasks out, as the
        analyze stage did."""
        tasks, m = index.matrix(run["run_id"], self.kind)
        if not tasks:
            raise OutputError(f"run {run['label']} has no {self.kind} matrix in the index")
        return spaces.TaskSpaces(tasks, {self.kind: m}, run["label"])

    def show(self, data: CompareData) -> None:
        cmp = data.comparison
        self.data, self.result = data, cmp
        tasks, meta = cmp.tasks, data.meta
        order = analysis.group_order([meta.get(t, {}).get("phenomenon", "") for t in tasks])
        groups = [meta.get(tasks[k], {}).get("phenomenon", "") for k in order]
        shared = Scale.of(np.concatenate([data.a.ravel(), data.b.ravel()]))
        names = [tasks[k] for k in order]  # A names the rows; B and A − B beside it keep its rows' lines
        for key, m, scale in (("a", data.a, shared), ("b", data.b, shared), ("d", cmp.difference, None)):
            hm = self.query_one(f"#map-{key}", Heatmap)
            hm.set_data(m[np.ix_(order, order)], groups, scale, labels=names, named=key == "a")
        self.show_cell(*self.query_one("#map-a", Heatmap).cursor)
        changed = "\n".join(f"  {t}  {v:.3f}" for t, v in cmp.most_changed)
        u = unit(self.kind, data.metric)
        self.query_one("#legend-ab", Static).update(Text.assemble(("A, B ", "dim"), *_segments(shared), f"  {u}"))
        self.query_one("#legend-d", Static).update(
            Text.assemble(("A − B ", "dim"), *_segments(self.query_one("#map-d", Heatmap).scale), f"  {u}")
        )
        self.query_one("#compare-stats", Static).update(
            Text.assemble(
                ("space ", "dim"),
                (self.kind, "bold cyan"),
                "\n",
                ("Spearman r ", "dim"),
                (format_stat(cmp.r), "bold"),
                (f"   {NAMES['mantel_p']} ", "dim"),
                (format_stat(cmp.p, "p"), "bold"),
                (STORED_BY[data.stored], "dim"),
                ("\n" + p_method(cmp.p_exact, _relabellings(cmp), cmp.p_floor), "dim"),
                ("\nA ", "dim"),
                data.trust[0],
                ("\nB ", "dim"),
                data.trust[1],
                ("\n" + identical_line(data.identical, []), "bold yellow") if data.identical else "",
                "\nrows that changed most ",
                ("(the row's off-diagonal length of A − B, in its unit):\n", "dim"),
                changed,
            )
        )
        self.query_one(ParamsDiff).show(data.settings)
        stab = self.query_one("#stability", Static)
        parts = [Text(seed_lines(data.seeds))] if data.seeds else []
        if len(data.stability) > 1:
            st, width = data.stability, max(30, self.size.width // 2 - 2)
            revisions = [r["revision"] for r in st]
            same = identical_line(None, st)
            parts = [
                *([Text(same, style="bold yellow")] if same else []),
                stability_plot(f"{self.kind}: r with last (Spearman)", revisions, [r["with_last"] for r in st], width),
                stability_plot(f"{self.kind}: {CONTRAST_TIGHT}, {unit_name(self.kind, data.metric)}", revisions,
                               [r["contrast"] for r in st], width),
                *parts,
            ]  # fmt: skip
        else:
            parts.insert(0, Text("stability curve: pick two checkpoints of one model (same params) to see it"))
        stab.update(Text("\n").join(parts))

    def on_heatmap_cursor_moved(self, event: Heatmap.CursorMoved) -> None:
        """One cursor over the three maps: the others follow the one moved, and the readout gives all three."""
        for hm in self.query(Heatmap):
            hm.cursor = (event.row, event.col)
        self.show_cell(event.row, event.col)

    def show_cell(self, row: int, col: int) -> None:
        """The cursor's task pair and its value in A, B and A − B (each map's matrix, in display order)."""
        a, b, d = (self.query_one(f"#map-{k}", Heatmap) for k in "abd")
        if row >= len(a.labels) or col >= len(a.labels):
            return
        parts: list = [("tuned on ", "dim"), (a.labels[row], "bold"), ("  evaluated on ", "dim")]
        parts.append((a.labels[col], "bold"))
        for name, hm in (("A", a), ("B", b), ("A − B", d)):
            parts += [(f"   {name} ", "dim"), (_value(hm.matrix[row, col]), "bold magenta")]
        self.query_one("#compare-cell", Static).update(Text.assemble(*parts))

    def action_next_kind(self) -> None:
        kinds = list(spaces.COMPARED)
        self.kind = kinds[(kinds.index(self.kind) + 1) % len(kinds)] if self.kind in kinds else kinds[0]
        self.reload()


def _value(x: float) -> str:
    return f"{x:+.4f}" if np.isfinite(x) else "n/a"


def _segments(scale: Scale) -> list[tuple[str, object]]:
    return [(seg.text, seg.style) for seg in legend(scale, 12)]
