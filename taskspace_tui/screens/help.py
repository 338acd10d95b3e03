"""Help (every screen's keys, handed over by the App, and what the numbers mean) and the too-small-terminal notice."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from taskspace.report.labels import DESCRIPTIONS, GLOSSARY
from taskspace_tui.keys import Key, help_line


def help_text(sections: list[tuple[str, list[Key]]]) -> str:
    """`sections`: (title, keys) of the app and of each screen, as the App hands them over."""
    lines = ["[b]taskspace[/b] — keys (ctrl+p opens the command palette; escape goes back)", ""]
    lines += [help_line(title, keys) for title, keys in sections]
    lines += ["", "[b]spaces[/b] (rows: the task tuned on, columns: the task evaluated)"]
    lines += [f"  {kind:<16} {text}" for kind, text in DESCRIPTIONS.items()]  # some names are longer than 16
    lines += ["", "[b]statistics[/b]"]
    lines += [f"  {name:<16} {text}" for name, text in GLOSSARY.items()]
    return "\n".join(lines)


class HelpScreen(ModalScreen):
    """Knows no screen: the App gives it every screen's keys."""

    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "close")]
    AUTO_FOCUS = "#help"

    def __init__(self, sections: list[tuple[str, list[Key]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):  # focused: arrows, page keys, home and end scroll it
            yield Static(help_text(self.sections))


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
