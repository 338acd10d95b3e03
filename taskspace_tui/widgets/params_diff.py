"""The compare screen's settings line: what distinguishes run A from run B besides their spaces (the settings
that differ, A's value → B's), or, when none does, what does (the checkpoint, the model) — so two runs that look
alike on screen are never taken for the same experiment, nor two experiments for one."""

from __future__ import annotations

import json

from rich.text import Text
from textual.widgets import Static

from taskspace.index.settings_diff import RunsDiff


def value_text(value: object, width: int = 20) -> str:
    """A setting's value, short: lists by their length when long, a setting one run lacks as —."""
    if value is None:
        return "—"
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    if isinstance(value, list) and len(text) > width:
        return f"[{len(value)} items]"
    return text if len(text) <= width else text[: width - 1] + "…"


def diff_text(diff: RunsDiff | None) -> Text:
    """`settings A → B (2 differ): ftgd.lr 0.0001 → 0.0003 · probing.metric accuracy → margin`, or one line saying
    what differs instead."""
    if diff is None:
        return Text("settings: not read yet", style="dim")
    out = Text()
    if diff.experiments:  # the maps' titles may be too narrow to show it
        a, b = (name or "(dvc repro)" for name in diff.experiments)
        out.append("experiment ", style="dim").append(f"{a} → {b}", style="bold").append(" · ", style="dim")
    out.append("settings A → B ", style="dim")
    if not diff.settings:
        return out.append(diff.summary(), style="bold" if diff.unrecorded else "")
    out.append(f"({diff.summary()}): ", style="dim")
    for i, (key, a, b) in enumerate(diff.settings):
        if i:
            out.append(" · ", style="dim")
        out.append(key, style="bold cyan").append(f" {value_text(a)} → {value_text(b)}")
    return out


class ParamsDiff(Static):
    """One or a few lines (they wrap) under the compare screen's maps (app.tcss: `#params-diff`); `show(diff)`
    fills it."""

    def show(self, diff: RunsDiff | None) -> None:
        self.update(diff_text(diff))
