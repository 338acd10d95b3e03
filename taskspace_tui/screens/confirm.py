"""Questions asked before something that cannot be taken back: a pipeline launch beyond the workspace's runs
(yes/no), and quitting while a pipeline command runs (cancel it, leave it running, or stay)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from taskspace_tui.keys import Key, bindings
from taskspace_tui.runner import PipelineRun


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(self.question)
            with Horizontal(id="confirm-buttons"):
                yield Button("run it (y)", id="yes", variant="warning")
                yield Button("cancel (n)", id="no", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class QuitScreen(ModalScreen[str]):
    """Quitting while a pipeline command runs: dismissed with the choice ("cancel", "leave" or "stay"); a button
    and a key for each (the keys' `choose('…')` actions name the choices). Focus starts on stay: enter changes
    nothing."""

    KEYS: ClassVar[list[Key]] = [
        Key("c", "choose('cancel')", "cancel & quit", "Stop the command (as ctrl+c does), then quit"),
        Key("l", "choose('leave')", "leave running & quit", "Quit; the command goes on, its output in its log"),
        Key("escape", "choose('stay')", "stay", "Back to taskspace; nothing changes"),
    ]
    BINDINGS = bindings(KEYS)
    AUTO_FOCUS = "#stay"

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    @classmethod
    def choices(cls) -> list[tuple[str, Key]]:
        return [(k.action.split("'")[1], k) for k in cls.KEYS]

    def compose(self) -> ComposeResult:
        variants = {"cancel": "error", "leave": "warning", "stay": "primary"}
        with Vertical(id="confirm"):
            yield Static(self.question, id="quit-question")
            with Horizontal(id="confirm-buttons"):
                for choice, k in self.choices():
                    yield Button(f"{k.label} ({k.spelled})", id=choice, variant=variants[choice])

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)


def quit_question(run: PipelineRun) -> str:
    """What runs and what each choice does to it: where its output goes when it is left running, and how to stop
    it then."""
    pid = run.runner.pid or "not yet known"
    doing = "is being cancelled" if run.cancelled else "is running" if run.runner.busy else "is starting"
    return (
        f"{run.command} {doing} (PID {pid}).\n\n"
        "cancel & quit: it stops as ctrl+c stops it (DVC stops cleanly); finished tasks are kept and the next run "
        "resumes from them. taskspace quits once it has stopped.\n"
        f"leave running & quit: it goes on without taskspace; its output goes on into {run.runner.log_path}; "
        f"stop it with `kill -INT -- -{pid}`.\n"
        "stay: back to taskspace; the command goes on."
    )
