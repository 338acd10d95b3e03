"""Pipeline screen: dvc status and stages, launch `dvc repro` / `dvc exp run -S …` with a live log, cancel.

A shell over a `DvcRunner` (taskspace_tui.runner), which runs the process: DVC allows one pipeline command per
repo at a time, so a second launch while one runs is refused with a message rather than failing on DVC's lock."""

from __future__ import annotations

import shlex
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Footer, Header, Input, LoadingIndicator, RichLog, Static

from taskspace_tui.keys import Key
from taskspace_tui.messages import IndexChanged
from taskspace_tui.runner import BUSY, DvcRunner, stage_states
from taskspace_tui.screens.base import KeyedScreen
from taskspace_tui.screens.confirm import ConfirmScreen

PROGRESS_SECONDS = 2.0


class PipelineScreen(KeyedScreen):
    NAME = "pipeline"
    KEYS = [
        Key("ctrl+r", "repro", "dvc repro", "Reproduce the pipeline (dvc repro)", priority=True),
        Key("ctrl+e", "exp_run", "dvc exp run", "Run an experiment with the overrides in the form", priority=True),
        Key("ctrl+c", "cancel", "cancel", "Stop the running dvc command (it resumes next time)", priority=True),
        Key("ctrl+s", "status", "status", "Re-read dvc status", priority=True),
    ]
    runner: DvcRunner  # made on mount, in the app's project

    def __init__(self) -> None:
        super().__init__()
        self.last_preview: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="pipeline-top"):
            with Vertical(id="pipeline-left"):
                yield DataTable(id="stages", cursor_type="row")
                yield DataTable(id="progress", cursor_type="row")
            with Vertical(id="pipeline-form"):
                yield Static("overrides for dvc exp run (e.g. profile=offline ftgd.sparsity=0.05)")
                yield Input(placeholder="profile=offline ftgd.sparsity=0.05", id="overrides")
                with Horizontal(id="buttons"):
                    yield Button("repro", id="repro", variant="primary")
                    yield Button("exp run", id="exp_run", variant="success")
                    yield Button("cancel", id="cancel", variant="error", disabled=True)
                yield Static("idle", id="run-state")
                yield LoadingIndicator(id="running")
        yield RichLog(id="log", highlight=False, markup=False, wrap=True, max_lines=5000)
        yield Footer()

    def on_mount(self) -> None:
        self.runner = DvcRunner(self.app.project)
        self.query_one("#running").display = False
        self.query_one("#stages", DataTable).add_columns("stage", "state")
        self.query_one("#progress", DataTable).add_columns("run", "ftgd", "eval2")
        self.action_status()
        # tasks done, read from the output folders: moves while workers or SLURM jobs run, DVC locked or not
        self.set_interval(PROGRESS_SECONDS, self._progress_while_running)

    # ---- status --------------------------------------------------------------------------------------------

    def action_status(self) -> None:
        self.load_status()

    @work(exclusive=True, group="status", exit_on_error=False)
    async def load_status(self) -> None:
        names = await self.runner.output("stage", "list", "--name-only")
        status = await self.runner.output("status", "--json")
        table = self.query_one("#stages", DataTable)
        table.clear()
        if names.rc != 0:
            table.add_row("(no DVC project here)", str(self.app.project))
            return
        for name, state in stage_states(names.out.split(), status, self.runner.busy):
            table.add_row(name, state)
        self.load_progress()

    def _progress_while_running(self) -> None:
        if self.runner.busy:
            self.load_progress()

    @work(thread=True, exclusive=True, group="progress", exit_on_error=False)
    def load_progress(self) -> None:
        from taskspace.errors import TaskspaceError
        from taskspace.pipeline.progress import run_progress
        from taskspace.pipeline.settings import Settings

        try:
            settings = Settings.load(Path(self.app.project) / "params.yaml")
            rows = run_progress(settings, Path(self.app.project) / "data")
        except (TaskspaceError, OSError, KeyError, ValueError):
            rows = []  # no project, or params being edited: nothing to show, never an error on screen
        self.app.call_from_thread(self._show_progress, rows)

    def _show_progress(self, rows: list) -> None:
        table = self.query_one("#progress", DataTable)
        table.clear()
        for r in rows:
            table.add_row(r.label, f"{r.ftgd}/{r.total}", f"{r.eval2}/{r.total}")

    # ---- launching -----------------------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        getattr(self, f"action_{event.button.id}")()

    def action_repro(self) -> None:
        self.launch(["repro"])

    def action_exp_run(self) -> None:
        overrides = [item.removeprefix("-S") for item in shlex.split(self.query_one("#overrides", Input).value)]
        self.preview(overrides)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def preview(self, overrides: list[str]) -> None:
        """What the experiment would run; beyond the workspace's runs, ask first (it may be hours of GPU work)."""
        from taskspace.pipeline.settings import preview_exp_run

        args = ["exp", "run", *(a for item in overrides for a in ("-S", item))]
        try:
            runs, now = preview_exp_run(self.app.project, overrides)
        except Exception as e:  # noqa: BLE001 - a bad override or params file: said, nothing launched
            self.app.call_from_thread(self.notify, f"cannot tell what this runs: {e}", severity="error")
            return
        self.app.call_from_thread(self._confirm_or_launch, args, runs, now)

    def _confirm_or_launch(self, args: list[str], runs: list[str], now: list[str]) -> None:
        self.last_preview = runs
        new = [r for r in runs if r not in now]
        profile = next((a.split("=", 1)[1] for a in args if a.startswith("profile=")), None)
        what = f"profile {profile}" if profile else "the committed default profile (no profile= override)"
        self.query_one("#log", RichLog).write(f"will run {what}: {len(runs)} runs: {', '.join(runs)}")
        if not new:
            self.launch(args)
            return
        shown = ", ".join(new[:8]) + (f" and {len(new) - 8} more" if len(new) > 8 else "")
        question = (
            f"dvc {' '.join(args)}\n\n{what}: {len(runs)} runs, {len(new)} not in the workspace's params.yaml: "
            f"{shown}.\n(`taskspace plan` estimates their cost.) Run it?"
        )
        self.app.push_screen(ConfirmScreen(question), lambda yes: self.launch(args) if yes else None)

    def launch(self, args: list[str]) -> None:
        if self.runner.busy:
            self.notify(BUSY, severity="warning")
            return
        self.stream(args)

    @work(exclusive=True, group="run", exit_on_error=False)
    async def stream(self, args: list[str]) -> None:
        log = self.query_one("#log", RichLog)
        log.write("$ dvc " + " ".join(args))
        self._show_running(True, " ".join(["dvc", *args]))
        rc = -1
        try:
            await self.runner.start(args)
            self.load_status()  # DVC now holds its lock: the stages show "busy", not a stale "up to date"
            async for line in self.runner.lines():
                log.write(line)
            rc = self.runner.returncode
        except Exception as e:  # shown in the log, never a traceback on screen
            log.write(f"[error: {type(e).__name__}: {e}]")
        finally:
            self._show_running(False, f"finished with exit code {rc}")
        log.write(f"[exit {rc}]")
        self.load_status()
        if rc == 0:
            self.app.post_message(IndexChanged())

    def _show_running(self, on: bool, text: str) -> None:
        self.query_one("#running").display = on
        self.query_one("#cancel", Button).disabled = not on
        self.query_one("#run-state", Static).update(("running: " if on else "") + text)

    def action_cancel(self) -> None:
        if self.runner.cancel():  # DVC stops cleanly on SIGINT; stages resume next time
            self.query_one("#log", RichLog).write("[cancel requested]")
