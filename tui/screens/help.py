"""Help (every screen's keys) and the too-small-terminal notice."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """[b]taskspace[/b] — keys (ctrl+p opens the command palette)

[b]everywhere[/b]   r runs · p pipeline · ? help · q quit · escape back
[b]runs[/b]         ↑↓ move · enter heatmap · space mark (two) · c compare marked · t task view
             s sort by next column · / filter · R reload
[b]heatmap[/b]      arrows move the cell cursor · k next space (transfer/normalised/gradient/sharing)
             o phenomenon ↔ cluster order · z zoom to the cursor's phenomenon · enter task view
[b]compare[/b]      k next space · shows A, B, A − B, Spearman r, Mantel p, most-changed tasks, stability
[b]task[/b]         n next task
[b]pipeline[/b]     ctrl+r dvc repro · ctrl+e dvc exp run -S <overrides> · ctrl+c cancel · ctrl+s status
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static(HELP)


class TooSmallScreen(ModalScreen):
    """Shown while the terminal is smaller than the layouts need; goes away when it grows."""

    def __init__(self, need: tuple[int, int]) -> None:
        super().__init__()
        self.need = need

    def compose(self) -> ComposeResult:
        yield Static(
            f"terminal too small: taskspace needs at least {self.need[0]}×{self.need[1]}; enlarge the window",
            id="too-small",
        )
