"""The TUI's messages: posted by screens, handled by the App (which knows the screens; senders need not)."""

from __future__ import annotations

from textual.message import Message


class IndexChanged(Message):
    """A pipeline run finished: the index may hold new runs."""
