"""Jump to a task by name: type part of it (suggestions complete it), enter moves the heatmap's cursor there."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input, Static


def find_task(query: str, tasks: list[str]) -> str | None:
    """The task named exactly, else the only one containing the text (case-insensitive), else None."""
    q = query.strip().lower()
    if not q:
        return None
    if q in (t.lower() for t in tasks):
        return next(t for t in tasks if t.lower() == q)
    hits = [t for t in tasks if q in t.lower()]
    return hits[0] if len(hits) == 1 else None


class JumpScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        self.tasks = tasks

    def compose(self) -> ComposeResult:
        with Vertical(id="jump"):
            yield Static("go to task (part of its name; tab completes, enter jumps, escape cancels)")
            yield Input(placeholder="e.g. wh_island", suggester=SuggestFromList(self.tasks, case_sensitive=False))
            yield Static(id="jump-hint")

    def on_input_changed(self, event: Input.Changed) -> None:
        q = event.value.strip().lower()
        hits = [t for t in self.tasks if q and q in t.lower()]
        self.query_one("#jump-hint", Static).update(", ".join(hits[:6]) + (" …" if len(hits) > 6 else ""))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        task = find_task(event.value, self.tasks)
        if task is None:
            self.query_one("#jump-hint", Static).update("no single task matches: type more of its name")
            return
        self.dismiss(task)

    def action_cancel(self) -> None:
        self.dismiss(None)
