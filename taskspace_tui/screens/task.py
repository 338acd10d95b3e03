"""Task screen: one task's strongest transfers to and from other tasks, accuracy before/after, example pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Static

from taskspace.errors import OutputError
from taskspace_tui.keys import Key
from taskspace_tui.screens.base import DataScreen, message_box


@dataclass
class TaskData:
    tasks: list[str]
    transfer: np.ndarray  # rows: tuned task
    task: str  # the task shown
    accuracy: dict[str, dict]  # task → accuracy and margin before/after tuning on it
    examples: list[dict]  # the shown task's eval pairs, worst margin first


class TaskScreen(DataScreen):
    NAME = "task"
    KEYS = [
        Key("n", "next_task", "next task", "Show the next task of this run"),
    ]

    def __init__(self, run: dict, task: str | None) -> None:
        super().__init__()
        self.run_row, self.task_name = run, task

    def compose(self) -> ComposeResult:
        self.sub_title = f"task view · {self.run_row['label']}"  # the header names the run
        yield Header()
        yield message_box()
        yield Static(id="task-title")
        with Horizontal(id="task-top"):
            yield DataTable(id="from", cursor_type="row")
            yield DataTable(id="to", cursor_type="row")
        yield DataTable(id="examples", cursor_type="row")
        yield Footer()

    def fetch(self, index) -> TaskData:
        tasks, m = index.matrix(self.run_row["run_id"], "transfer")
        if not tasks:
            raise OutputError(f"run {self.run_row['label']} has no transfer matrix in the index")
        task = self.task_name if self.task_name in tasks else tasks[0]
        acc = {r["task"]: r for r in index.accuracy(self.run_row["run_id"])}
        return TaskData(tasks, m, task, acc, index.examples(self.run_row["run_id"], task, limit=12))

    def show(self, data: TaskData) -> None:
        tasks, m, self.task_name, acc, examples = data.tasks, data.transfer, data.task, data.accuracy, data.examples
        self.tasks = tasks
        i = tasks.index(self.task_name)
        a = acc.get(self.task_name, {})

        def f(x, fmt="{:.3f}"):
            return "—" if x is None else fmt.format(x)

        self.query_one("#task-title", Static).update(
            f"[b]{self.run_row['label']}[/b] · [b]{self.task_name}[/b]  ({a.get('phenomenon', '')})   "
            f"accuracy {f(a.get('acc_before'))} → "
            f"{f(a.get('acc_after'))} after tuning on it   mean margin {f(a.get('margin_before'), '{:+.2f}')} → "
            f"{f(a.get('margin_after'), '{:+.2f}')}"
        )
        for table_id, values, title in (  # the value first: a long task name is cut at the edge, never the value
            ("#from", m[i], "tuning on it → moves task"),
            ("#to", m[:, i], "tuning on task → moves it"),
        ):
            t = self.query_one(table_id, DataTable)
            t.clear(columns=True)
            t.add_columns("transfer", title)
            order = [k for k in np.argsort(-np.nan_to_num(values)) if k != i]
            for k in order:
                t.add_row(f"{values[k]:+.3f}", tasks[k])
        ex = self.query_one("#examples", DataTable)
        ex.clear(columns=True)
        ex.add_columns("pair", "margin", "correct", "good sentence", "bad sentence")
        for e in examples:
            ex.add_row(
                str(e["pair_id"]),
                f"{e['margin']:+.2f}",
                "✓" if e["correct"] else "✗",
                e.get("good") or "",
                e.get("bad") or "",
            )

    def action_next_task(self) -> None:
        if getattr(self, "tasks", None):
            self.task_name = self.tasks[(self.tasks.index(self.task_name) + 1) % len(self.tasks)]
            self.reload()
