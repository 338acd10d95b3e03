"""One base for every error a user can act on: its message is one line naming the file, key or value and the
fix. The CLI, the stages and the TUI catch `TaskspaceError` and show the message, never a traceback."""

from __future__ import annotations


class TaskspaceError(Exception):
    """Bad input or a state the user must fix; the message says what and how, in one line."""


class ConfigError(TaskspaceError, ValueError):
    """A setting (params.yaml key or CLI option) out of range, of the wrong type or unknown."""


class OutputError(TaskspaceError, RuntimeError):
    """A stage output that is missing, stale or corrupt; the message names the file and what to rerun."""


class AnalysisError(TaskspaceError, ValueError):
    """Spaces or groupings the statistics cannot use (too few tasks, one group only, NaN entries…)."""
