"""How far each run's tasks are, read from the output folders (never from DVC, which knows only whole stages and
is locked while a pipeline runs): what the TUI's pipeline screen shows while local workers or SLURM jobs work.

A task counts as done for a stage when its per-task record carries the current settings' stamp — the same test
a rerun uses to skip it — so stale files from other settings are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from taskspace.io import parquet_stamp, record_stamp
from taskspace.pipeline.settings import Settings
from taskspace.runs import DATA, Run, tasks_file


@dataclass(frozen=True)
class RunProgress:
    label: str
    total: int  # tasks × replicates × (1 + control)
    ftgd: int  # tuned with the current settings
    eval2: int  # evaluated after tuning, with the current settings

    def line(self) -> str:
        return f"ftgd {self.ftgd}/{self.total} · eval2 {self.eval2}/{self.total}"


def run_progress(s: Settings, data: Path = DATA) -> list[RunProgress]:
    """Every run of the settings: its tasks tuned and evaluated so far, over all replicates and the control."""
    units = len(s.probe.replicates(0, 0)) * (1 + s.probe.control)
    tasks = tasks_file(data)
    n_tasks = pq.read_metadata(tasks).num_rows if tasks.exists() else 0
    out = []
    for run in s.runs:
        run = Run(run.model, run.revision, data)
        ftgd_stamp, probe_stamp = s.stamp("ftgd", run), s.stamp("eval2", run)
        tuned = sum(record_stamp(f) == ftgd_stamp for f in run.dir("ftgd").rglob("ftgd.json"))
        evaluated = sum(
            parquet_stamp(f).startswith(probe_stamp + ":") for f in run.dir("probe").rglob("eval2.parquet")
        )
        out.append(RunProgress(run.label, n_tasks * units, tuned, evaluated))
    return out
