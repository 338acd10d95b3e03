"""A user's grouping of tasks, the hypothesis a space is fitted to when it is not a BLiMP column (phenomenon,
paper phenomenon, field): read from a task→group file, and looked up for the tasks of a space."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from taskspace.errors import AnalysisError


def load_grouping(path: str | Path) -> dict[str, str]:
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
        return {str(k): v for k, v in obj.items()}
    lines = text.splitlines()
    tab = path.suffix.lower() == ".tsv" or (bool(lines) and "\t" in lines[0])
    out: dict[str, str] = {}
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
    if not out:
        raise AnalysisError(f"{path}: no task,group rows")
    return out


def groups_for(tasks: Sequence[str], grouping: dict[str, str]) -> list[str]:
    """The group of each task, in task order; every task must be covered (a silent default would bias H)."""
    missing = [t for t in tasks if t not in grouping]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise AnalysisError(f"grouping has no group for task(s) {', '.join(missing[:5])}{more}; add them")
    return [grouping[t] for t in tasks]
