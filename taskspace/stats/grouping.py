"""A user's grouping of tasks, the hypothesis a space is fitted to when it is not a BLiMP column (phenomenon,
paper phenomenon, field): read from a task→group file, and looked up for the tasks of a space."""

from __future__ import annotations

import csv
import difflib
import json
import re
from collections.abc import Collection, Sequence
from pathlib import Path

from taskspace.errors import AnalysisError

GROUPINGS = ("phenomenon", "paper", "field")  # the built-in ones (BLiMP's columns); anything else is a file


class Grouping(dict):
    """task → group, read from a file: it remembers the file and each task's line, so every complaint names them."""

    def __init__(self, pairs: dict[str, str], path: Path | None = None, lines: dict[str, int] | None = None):
        super().__init__(pairs)
        self.path, self.lines = path, lines or {}

    def where(self, task: str | None = None) -> str:
        """`file:line` of a task's row (the file alone without one); "grouping" when not read from a file."""
        if self.path is None:
            return "grouping"
        line = self.lines.get(task) if task else None
        return f"{self.path}:{line}" if line else str(self.path)


def _json_lines(text: str, keys: Sequence[str]) -> dict[str, int]:
    """The line of each key in a JSON object's text (its first occurrence as a quoted key)."""
    lines = {}
    for k in keys:
        m = re.search(re.escape(json.dumps(k)) + r"\s*:", text)
        if m:
            lines[k] = text.count("\n", 0, m.start()) + 1
    return lines


def load_grouping(path: str | Path) -> Grouping:
    """A user grouping: JSON {task: group}, or CSV/TSV rows `task,group` (header optional)."""
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"grouping file {path} not found; use phenomenon, paper, field or a task→group file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise AnalysisError(f"{path}: not UTF-8 text ({e.reason})") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise AnalysisError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
        if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
            raise AnalysisError(f"{path}: expected a JSON object mapping task names to group names")
        return Grouping({str(k): v for k, v in obj.items()}, path, _json_lines(text, [str(k) for k in obj]))
    lines = text.splitlines()
    tab = path.suffix.lower() == ".tsv" or (bool(lines) and "\t" in lines[0])
    out: dict[str, str] = {}
    where: dict[str, int] = {}
    for lineno, row in enumerate(csv.reader(lines, dialect="excel-tab" if tab else "excel"), 1):
        row = [c.strip() for c in row]
        if not any(row) or row[0].startswith("#"):
            continue
        if len(row) != 2 or not all(row):
            raise AnalysisError(f"{path}:{lineno}: expected two non-empty columns task,group; got {row!r}")
        if not out and [c.lower() for c in row] == ["task", "group"]:
            continue
        if out.get(row[0], row[1]) != row[1]:
            raise AnalysisError(f"{path}:{lineno}: task {row[0]} is given two groups ({out[row[0]]}, {row[1]})")
        out[row[0]] = row[1]
        where.setdefault(row[0], lineno)
    if not out:
        raise AnalysisError(f"{path}: no task,group rows")
    return Grouping(out, path, where)


def groups_for(tasks: Sequence[str], grouping: dict[str, str]) -> list[str]:
    """The group of each task, in task order. Every task must be covered (a silent default would bias H), and the
    tasks must fall into at least two groups (else there is no between-group cell and every fit statistic would be
    a blank, with no reason given)."""
    g = grouping if isinstance(grouping, Grouping) else Grouping(grouping)
    missing = [t for t in tasks if t not in g]
    if missing:
        extra = [k for k in g if k not in set(tasks)]
        for t in missing:  # a typo'd row: a name no task of the space has, close to one that has no group
            close = difflib.get_close_matches(t, extra, n=1, cutoff=0.8)
            if close:
                raise AnalysisError(
                    f"{g.where(close[0])}: task '{close[0]}' is not a task of this space — did you mean '{t}'? "
                    f"Fix the name in that row"
                )
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise AnalysisError(
            f"{g.where()} has no group for task(s) {', '.join(missing[:5])}{more}: add a row `task,group` for each"
        )
    groups = [g[t] for t in tasks]
    if len(tasks) > 1 and len(set(groups)) < 2:
        raise AnalysisError(
            f"{g.where()}: all {len(tasks)} tasks of this space are in group '{groups[0]}': a fit compares "
            "within-group with between-group cells, so give the tasks at least two groups"
        )
    return groups


def check_names(grouping: dict[str, str], known: Collection[str]) -> None:
    """Refuse a row naming a task the data does not have (a typo, or another data set's task), with the closest
    known name: rows for tasks outside the run are fine, rows for no task at all are a mistake."""
    g = grouping if isinstance(grouping, Grouping) else Grouping(grouping)
    for task in g:
        if task not in known:
            close = difflib.get_close_matches(task, list(known), n=1, cutoff=0.6)
            hint = f" — did you mean '{close[0]}'?" if close else ""
            raise AnalysisError(f"{g.where(task)}: unknown task '{task}'{hint} Fix or remove that row")
