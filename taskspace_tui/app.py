"""The taskspace TUI: a thin App that owns the index path and the screens (Harlequin-style layout).

Every slow call (opening the index, queries, dvc subprocesses) runs in a Textual worker; screens read the index
only through `taskspace.index.Index`. Keys are declared once per screen (`taskspace_tui.keys`): bindings, the command
palette and the help screen all come from them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from textual.app import App, SystemCommand
from textual.screen import Screen

from taskspace.index import Index, IndexUnavailable
from taskspace.runs import INDEX_DB
from taskspace_tui.keys import Key, bindings
from taskspace_tui.messages import IndexChanged
from taskspace_tui.runner import DvcRunner, PipelineRun
from taskspace_tui.screens.base import DataScreen
from taskspace_tui.screens.compare import CompareScreen
from taskspace_tui.screens.confirm import QuitScreen, quit_question
from taskspace_tui.screens.heatmap import HeatmapScreen
from taskspace_tui.screens.help import HelpScreen, TooSmallScreen
from taskspace_tui.screens.pipeline import PipelineScreen
from taskspace_tui.screens.runs import RunsScreen
from taskspace_tui.screens.task import TaskScreen

MIN_SIZE = (60, 16)


class TaskspaceApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "taskspace"
    SUB_TITLE = "linguistic task spaces"
    NAME = "view"
    KEYS = [
        Key("r", "show_runs", "runs", "Runs and experiments in the index"),
        Key("p", "show_pipeline", "pipeline", "dvc status, repro / exp run with a live log"),
        Key("question_mark", "help", "help", "Every screen's keys and what the statistics mean", shown="?"),
        Key("q", "quit", "quit", "Leave taskspace (asks first while a pipeline command runs)", palette=False),
    ]
    BINDINGS = bindings(KEYS)
    KEYED_SCREENS = (RunsScreen, HeatmapScreen, CompareScreen, TaskScreen, PipelineScreen)  # in the help's order

    def __init__(self, db: str | Path = INDEX_DB, project: str | Path = ".", dvc: Sequence[str] | None = None) -> None:
        super().__init__()
        self.db = Path(db)
        self.project = Path(project)
        # the pipeline command lives here, not in its screen: leaving the screen neither orphans nor forgets it
        self.pipeline = PipelineRun(DvcRunner(self.project, dvc))

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

    async def action_quit(self) -> None:
        """Quit at once, unless a pipeline command runs (`q`, ctrl+q and the palette's Quit alike): then ask whether
        to cancel it, leave it running, or stay; never leave it running unasked."""
        if not self.pipeline.busy:
            self.exit()
        elif not isinstance(self.screen, QuitScreen):
            self.push_screen(QuitScreen(quit_question(self.pipeline)), self._quit_as)

    def _quit_as(self, choice: str | None) -> None:
        run = self.pipeline
        if choice == "cancel":
            run.cancel()  # as ctrl+c on the pipeline screen: SIGINT to its group, then SIGTERM, SIGKILL
            self.notify(f"cancelling {run.command}: taskspace quits once it has stopped", timeout=60)
            self.run_worker(self._quit_when_stopped(), group="quit", exit_on_error=False)
        elif choice == "leave" and run.busy:
            self.exit(message=f"{run.command} goes on (PID {run.runner.pid}); its output: {run.runner.log_path}")
        elif choice == "leave":
            self.exit()

    async def _quit_when_stopped(self) -> None:
        while self.pipeline.busy:
            await asyncio.sleep(0.05)
        self.exit()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.key_sections()))

    @classmethod
    def key_sections(cls) -> list[tuple[str, list[Key]]]:
        """Every screen's keys, titled, for the help screen (which imports no screen)."""
        return [("everywhere", cls.KEYS)] + [(screen.NAME, screen.KEYS) for screen in cls.KEYED_SCREENS]

    def on_index_changed(self, _: IndexChanged) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, DataScreen):
                screen.reload()

    @property
    def exports(self) -> Path:
        """Where the TUI writes figures and screenshots: inside the project (a server has no ~/Downloads)."""
        return Path(self.project) / "exports"

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None, time_format=None):
        self.exports.mkdir(parents=True, exist_ok=True)
        saved = super().deliver_screenshot(filename, path or str(self.exports), time_format)
        if saved:
            self.notify(f"screenshot: {saved}")
        return saved

    def get_system_commands(self, screen: Screen):
        yield from super().get_system_commands(screen)
        for owner in (self, screen):
            for k in getattr(owner, "KEYS", []):
                if k.palette:
                    yield SystemCommand(f"{owner.NAME}: {k.label}", k.help, getattr(owner, f"action_{k.action}"))


__all__ = ["IndexChanged", "TaskspaceApp", "IndexUnavailable"]
