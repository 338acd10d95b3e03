"""Compare screen: two runs' task spaces side by side, their difference, correlation and Mantel p, the tasks
that changed most, and — for checkpoints of one model — the stability curve over its series."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Static

from taskspace import analysis
from tui.screens.base import DataScreen, message_box
from tui.widgets.heatmap import Heatmap, Scale


def stability_plot(revisions: list[str], with_last: list[float], contrast: list[float], width: int = 60) -> Text:
    """plotext 6 line plot of the stability curve and the within−between contrast over checkpoints."""
    import plotext as plt

    f = plt.figure
    f.clear()
    f.plot_size(max(width, 30), 12)
    f.theme("dark") if hasattr(f, "theme") else None
    x = list(range(1, len(revisions) + 1))
    for ys, label in ((with_last, "corr. with last"), (contrast, "within−between")):
        s = f.signal(x, [0.0 if v is None else v for v in ys])
        s.label(label)
        s.lines()
        f.draw(s)
    f.ruler("x").ticks(x, revisions)  # the checkpoints by name, not by position
    f.title("stability over checkpoints")
    return Text.from_ansi(str(f.build()))


class CompareScreen(DataScreen):
    BINDINGS = [Binding("k", "next_kind", "kind"), Binding("escape", "app.pop_screen", "back")]
    COMMANDS_ = [("compare: next kind", "Compare another kind of space", "next_kind")]

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
        with Horizontal(id="compare-info"):
            yield Static(id="compare-stats")
            yield Static(id="stability")
        yield Footer()

    def fetch(self, index):
        ta, ma = index.matrix(self.a["run_id"], self.kind)
        tb, mb = index.matrix(self.b["run_id"], self.kind)
        if not ta or not tb:
            raise LookupError(f"one of the runs has no {self.kind} matrix in the index")
        if ta != tb:
            common = [t for t in ta if t in tb]
            ia, ib = [ta.index(t) for t in common], [tb.index(t) for t in common]
            ta, ma, mb = common, ma[np.ix_(ia, ia)], mb[np.ix_(ib, ib)]
        if len(ta) < 3:
            raise LookupError("the two runs share fewer than 3 tasks: nothing to compare")
        ma, mb = np.nan_to_num(ma), np.nan_to_num(mb)
        cmp = analysis.compare_spaces(ma, mb, ta, permutations=1000, seed=0)
        meta = {t["task"]: t for t in index.tasks()}
        series = None
        if self.a["model"] == self.b["model"] and self.a["params_hash"] == self.b["params_hash"]:
            runs = [
                r for r in index.runs() if r["model"] == self.a["model"] and r["params_hash"] == self.a["params_hash"]
            ]
            mats = [index.matrix(r["run_id"], self.kind)[1] for r in runs]
            if len(runs) > 1 and len({m.shape for m in mats}) == 1:
                st = analysis.stability([np.nan_to_num(m) for m in mats])
                series = ([r["revision"] for r in runs], st.with_last, [r["contrast"] for r in runs])
        return ta, ma, mb, cmp, meta, series

    def show(self, data) -> None:
        tasks, ma, mb, cmp, meta, series = data
        self.result = cmp
        order = analysis.group_order([meta.get(t, {}).get("phenomenon", "") for t in tasks])
        groups = [meta.get(tasks[k], {}).get("phenomenon", "") for k in order]
        shared = Scale.of(np.concatenate([ma.ravel(), mb.ravel()]))
        for key, m, scale in (("a", ma, shared), ("b", mb, shared), ("d", cmp.difference, None)):
            self.query_one(f"#map-{key}", Heatmap).set_data(m[np.ix_(order, order)], groups, scale)
        changed = "\n".join(f"  {t}  {v:.3f}" for t, v in cmp.most_changed)
        self.query_one("#compare-stats", Static).update(
            Text.assemble(
                ("space ", "dim"),
                (self.kind, "bold cyan"),
                "\n",
                ("Spearman r ", "dim"),
                (f"{cmp.r:+.3f}", "bold"),
                ("   Mantel p ", "dim"),
                (f"{cmp.p:.3f}", "bold"),
                "\nrows that changed most:\n",
                changed,
            )
        )
        stab = self.query_one("#stability", Static)
        if series:
            stab.update(stability_plot(*series, width=max(30, self.size.width // 2 - 2)))
        else:
            stab.update("stability curve: pick two checkpoints of one model (same params) to see it")

    def action_next_kind(self) -> None:
        kinds = ["transfer", "transfer_norm", "gradient", "sharing"]
        self.kind = kinds[(kinds.index(self.kind) + 1) % len(kinds)] if self.kind in kinds else "transfer"
        self.reload()
