"""The taskspace TUI: a thin App that owns the index path and the screens (Harlequin-style layout).

Every slow call (opening the index, queries, dvc subprocesses) runs in a Textual worker; screens read the index
only through `taskspace.index.Index`.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from taskspace.index import Index, IndexUnavailable
from tui.screens.help import HelpScreen, TooSmallScreen
from tui.screens.pipeline import PipelineScreen
from tui.screens.runs import RunsScreen

MIN_SIZE = (60, 16)


class TaskspaceApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "taskspace"
    SUB_TITLE = "linguistic task spaces"
    BINDINGS = [
        Binding("r", "show_runs", "runs"),
        Binding("p", "show_pipeline", "pipeline"),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, db: str | Path = "data/index/taskspace.duckdb", project: str | Path = ".") -> None:
        super().__init__()
        self.db = Path(db)
        self.project = Path(project)

    def on_mount(self) -> None:
        self.push_screen(RunsScreen())

    def open_index(self) -> Index:
        """A fresh read-only connection (call from a worker thread; raises IndexUnavailable)."""
        return Index(self.db)

    def on_resize(self, event) -> None:
        small = event.size.width < MIN_SIZE[0] or event.size.height < MIN_SIZE[1]
        if small and not isinstance(self.screen, TooSmallScreen):
            self.push_screen(TooSmallScreen(MIN_SIZE))
        elif not small and isinstance(self.screen, TooSmallScreen):
            self.pop_screen()

    def action_show_runs(self) -> None:
        while len(self.screen_stack) > 2 and not isinstance(self.screen, RunsScreen):
            self.pop_screen()

    def action_show_pipeline(self) -> None:
        if not isinstance(self.screen, PipelineScreen):
            self.push_screen(PipelineScreen())

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def index_changed(self) -> None:
        """A pipeline run finished: screens showing index data reload."""
        for screen in self.screen_stack:
            if hasattr(screen, "reload"):
                screen.reload()

    def get_system_commands(self, screen: Screen):
        yield from super().get_system_commands(screen)
        yield SystemCommand("view: runs", "Runs and experiments in the index", self.action_show_runs)
        yield SystemCommand("view: pipeline", "dvc status, repro / exp run with live log", self.action_show_pipeline)
        yield SystemCommand("view: help", "Keys of every screen", self.action_help)
        for name, help_text, action in getattr(screen, "COMMANDS_", []):
            yield SystemCommand(name, help_text, getattr(screen, f"action_{action}"))


__all__ = ["TaskspaceApp", "IndexUnavailable"]
