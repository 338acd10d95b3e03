"""Pipeline screen: dvc status and stages, launch `dvc repro` / `dvc exp run [-n NAME] -S …` with a live log, cancel.

A view of the App's `PipelineRun` (taskspace_tui.runner), which runs the process and keeps its output: leaving this
screen leaves the command running, and coming back shows it, its output so far and lets you cancel it. DVC allows one
pipeline command per repo at a time, so a second launch while one runs is refused with a message (and the way to
cancel) rather than failing on DVC's lock. Focus starts in the overrides box, and the screen's keys are ctrl keys:
what is typed there or in the name box goes into the box, never to a key."""

from __future__ import annotations

import shlex
from collections.abc import Coroutine
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Footer, Header, Input, LoadingIndicator, RichLog, Static

from taskspace_tui.keys import BACK, Key
from taskspace_tui.messages import IndexChanged
from taskspace_tui.runner import BUSY, DvcRunner, PipelineRun, exp_name_problem, group_stages, stage_states
from taskspace_tui.screens.base import KeyedScreen
from taskspace_tui.screens.confirm import ConfirmScreen

PROGRESS_SECONDS = 2.0


async def run_and_tell(app, work: Coroutine[None, None, int]) -> None:
    """An App worker (it outlives the screen): the command, then IndexChanged when it succeeded."""
    if await work == 0:
        app.post_message(IndexChanged())


class PipelineScreen(KeyedScreen):
    NAME = "pipeline"
    KEYS = [
        Key("ctrl+r", "repro", "dvc repro", "Reproduce the pipeline (dvc repro)", priority=True),
        Key("ctrl+e", "exp_run", "dvc exp run", "Run an experiment with the form's overrides and name", priority=True),
        Key("ctrl+c", "cancel", "cancel", "Stop the running dvc command (it resumes next time)", priority=True),
        Key("ctrl+s", "status", "status", "Re-read dvc status", priority=True),
    ]
    AUTO_FOCUS = "#overrides"  # typing goes into the form at once (the keys above are ctrl keys)

    def __init__(self) -> None:
        super().__init__()
        self.last_preview: list[str] = []

    @property
    def pipeline(self) -> PipelineRun:
        return self.app.pipeline

    @property
    def runner(self) -> DvcRunner:
        return self.app.pipeline.runner

    @classmethod
    def spelled(cls, action: str) -> str:
        return next(k.spelled for k in cls.KEYS + [BACK] if k.action == action)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="pipeline-top"):
            with Vertical(id="pipeline-left"):
                yield DataTable(id="stages", cursor_type="row")
                yield DataTable(id="progress", cursor_type="row")
            with Vertical(id="pipeline-form"):
                yield Static("exp run: overrides · name (optional)", id="overrides-label")
                with Horizontal(id="exp-fields"):
                    yield Input(placeholder="profile=offline ftgd.sparsity=0.05", id="overrides")
                    yield Input(placeholder="e.g. lr-3e-4", id="exp-name")
                with Horizontal(id="buttons"):
                    yield Button("repro", id="repro", variant="primary")
                    yield Button("exp run", id="exp_run", variant="success")
                    yield Button("cancel", id="cancel", variant="error", disabled=True)
                yield Static("idle", id="run-state")
                yield LoadingIndicator(id="running")
        yield RichLog(id="log", highlight=False, markup=False, wrap=True, max_lines=5000)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#stages", DataTable).add_columns("stage", "state")
        progress = self.query_one("#progress", DataTable)
        progress.add_columns("run", "ftgd", "eval2")
        progress.display = False  # until it has rows: never an empty box that Tab can land on
        log = self.query_one("#log", RichLog)
        for line in self.pipeline.log:  # a command started before this screen opened: its output so far
            log.write(line)
        self.pipeline.watch(self._heard)
        self._show_state()
        self.action_status()
        # tasks done, read from the output folders: moves while workers or SLURM jobs run, DVC locked or not
        self.set_interval(PROGRESS_SECONDS, self._progress_while_running)

    def on_unmount(self) -> None:
        self.pipeline.unwatch(self._heard)

    def _heard(self, line: str | None) -> None:
        """The App's PipelineRun: a line of output, or (None) a change of state."""
        if line is not None:
            self.query_one("#log", RichLog).write(line)
            return
        self._show_state()
        self.load_status()  # started: DVC holds its lock (stages say busy); ended: what changed

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
        for name, state in group_stages(stage_states(names.out.split(), status, self.pipeline.busy)):
            table.add_row(name, state)
        self.load_progress()

    def _progress_while_running(self) -> None:
        if self.pipeline.busy:
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
        table.display = bool(rows)

    # ---- launching -----------------------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        getattr(self, f"action_{event.button.id}")()

    def action_repro(self) -> None:
        self.launch(["repro"])

    def action_exp_run(self) -> None:
        if self._refuse_while_busy():
            return
        overrides = [item.removeprefix("-S") for item in shlex.split(self.query_one("#overrides", Input).value)]
        overrides = [item for item in overrides if item]
        name = self.query_one("#exp-name", Input).value.strip()
        problem = exp_name_problem(name)
        if problem:
            self.notify(problem, severity="error")
        elif name:
            self.check_name(name, overrides)
        else:
            self.preview(overrides, "")

    @work(exclusive=True, group="name", exit_on_error=False)
    async def check_name(self, name: str, overrides: list[str]) -> None:
        """A name the baseline has already: said now, not after DVC refuses it (`dvc exp run -f` would overwrite)."""
        listed = await self.runner.output("exp", "list", "--name-only")
        problem = exp_name_problem(name, listed.out.split() if listed.rc == 0 else ())
        if problem:
            self.notify(problem, severity="error")
        else:
            self.preview(overrides, name)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def preview(self, overrides: list[str], name: str = "") -> None:
        """What the experiment would run; beyond the workspace's runs, ask first (it may be hours of GPU work)."""
        from taskspace.pipeline.settings import preview_exp_run

        args = ["exp", "run", *(("-n", name) if name else ()), *(a for item in overrides for a in ("-S", item))]
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

    def _refuse_while_busy(self) -> bool:
        """While a command runs: say which, and how to cancel it (True: nothing is launched)."""
        if not self.pipeline.busy:
            return False
        self.notify(f"{BUSY}: {self.pipeline.command} (PID {self.runner.pid}); {self.spelled('cancel')} cancels it",
                    severity="warning")  # fmt: skip
        return True

    def launch(self, args: list[str]) -> None:
        if self._refuse_while_busy():
            return
        self.app.run_worker(run_and_tell(self.app, self.pipeline.launch(args)), group="pipeline", exit_on_error=False)

    def _show_state(self) -> None:
        on = self.pipeline.busy
        self.query_one("#running").display = on
        self.query_one("#cancel", Button).disabled = not on
        self.query_one("#run-state", Static).update(self.state_line())

    def state_line(self) -> str:
        run = self.pipeline
        if run.busy and run.cancelled:
            return f"cancelling: {run.command} (DVC stops cleanly)"
        if run.busy:
            return f"running: {run.command} (PID {self.runner.pid}) · {self.spelled('cancel')} cancels"
        if run.cancelled:
            return (
                f"cancelled: {run.command}. Finished tasks are kept (the next run resumes from them). "
                f"{self.spelled('repro')} relaunches repro, {self.spelled('exp_run')} exp run · "
                f"{self.spelled('app.pop_screen')} goes back"
            )
        if run.rc is None:
            return "idle"
        return f"finished: {run.command}, exit code {run.rc}"

    def action_cancel(self) -> None:
        self.pipeline.cancel()  # DVC stops cleanly on SIGINT; stages resume next time
