"""Keys, declared once per screen: each `Key` makes its binding (footer), its command-palette entry and its line
in the help screen; a test checks the key table of docs/reference/tui.md against them. `BACK` is declared here
once for every screen above the first (`screens.base.KeyedScreen` adds it)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Key:
    keys: str  # Textual key names, comma-separated for alternatives
    action: str  # action name; "app.…" for app actions
    label: str  # footer label
    help: str  # one line: what it does (help screen, palette)
    shown: str = ""  # how help and the docs spell the key (default: `keys`)
    palette: bool = True  # offered in the command palette
    priority: bool = False  # fires even while an input has focus

    @property
    def spelled(self) -> str:
        return self.shown or self.keys


BACK = Key("escape", "app.pop_screen", "back", "Back to the previous screen", palette=False)


def bindings(keys: list[Key]) -> list[Binding]:
    return [Binding(k.keys, k.action, k.label, priority=k.priority) for k in keys]


def help_line(title: str, keys: list[Key]) -> str:
    """One help line; escape keys are left out (the help's title says once that escape goes back)."""
    keys = [k for k in keys if k.keys != "escape"]
    return f"[b]{title:<10}[/b] " + " · ".join(f"{k.spelled} {k.label}" for k in keys)
