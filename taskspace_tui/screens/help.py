"""Help (every screen's keys, and what the numbers mean) and the too-small-terminal notice."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from taskspace.stats.spaces import DESCRIPTIONS
from taskspace_tui.keys import help_line

STATISTICS = {
    "Mantel r": "Spearman correlation of a space's off-diagonal with the hypothesis (1 = same phenomenon)",
    "p": "Mantel permutation p: how often relabelled tasks fit as well (small = structure beyond chance)",
    "w−b": "mean value within a phenomenon minus between phenomena (> 0: related tasks are closer)",
    "lexical r": "correlation with vocabulary overlap: structure that shared words alone would give",
}


def help_text() -> str:
    from taskspace_tui.app import TaskspaceApp
    from taskspace_tui.screens.compare import CompareScreen
    from taskspace_tui.screens.heatmap import HeatmapScreen
    from taskspace_tui.screens.pipeline import PipelineScreen
    from taskspace_tui.screens.runs import RunsScreen
    from taskspace_tui.screens.task import TaskScreen

    lines = ["[b]taskspace[/b] — keys (ctrl+p opens the command palette; escape goes back)", ""]
    lines.append(help_line("everywhere", TaskspaceApp.KEYS))
    for screen in (RunsScreen, HeatmapScreen, CompareScreen, TaskScreen, PipelineScreen):
        lines.append(help_line(screen.NAME, [k for k in screen.KEYS if k.keys != "escape"]))
    lines += ["", "[b]spaces[/b] (rows: the task tuned on, columns: the task evaluated)"]
    lines += [f"  {kind:<16}{text}" for kind, text in DESCRIPTIONS.items()]
    lines += ["", "[b]statistics[/b]"]
    lines += [f"  {name:<16}{text}" for name, text in STATISTICS.items()]
    return "\n".join(lines)


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(help_text())


class TooSmallScreen(ModalScreen):
    """Shown while the terminal is smaller than the layouts need; goes away when it grows."""

    BINDINGS = [Binding("q", "app.quit", "quit")]

    def __init__(self, need: tuple[int, int]) -> None:
        super().__init__()
        self.need = need

    def compose(self) -> ComposeResult:
        yield Static(
            f"terminal too small: taskspace needs at least {self.need[0]}×{self.need[1]}; enlarge it, or q to quit",
            id="too-small",
        )
