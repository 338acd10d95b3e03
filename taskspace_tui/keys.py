"""Keys, declared once per screen: each `Key` makes its binding (footer), its command-palette entry and its line
in the help screen; a test checks the README's key table against them."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Key:
    keys: str  # Textual key names, comma-separated for alternatives
    action: str  # action name; "app.…" for app actions
    label: str  # footer label
    help: str  # one line: what it does (help screen, palette)
    shown: str = ""  # how help and README spell the key (default: `keys`)
    palette: bool = True  # offered in the command palette
    priority: bool = False  # fires even while an input has focus

    @property
    def spelled(self) -> str:
        return self.shown or self.keys


def bindings(keys: list[Key]) -> list[Binding]:
    return [Binding(k.keys, k.action, k.label, priority=k.priority) for k in keys]


def help_line(title: str, keys: list[Key]) -> str:
    return f"[b]{title:<10}[/b] " + " · ".join(f"{k.spelled} {k.label}" for k in keys)
