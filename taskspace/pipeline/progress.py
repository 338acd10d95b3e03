"""How far each run's tasks are, read from the output folders (never from DVC, which knows only whole stages and
is locked while a pipeline runs): what the TUI's pipeline screen shows while local workers or SLURM jobs work.

A task counts as done for a stage when its per-task record carries the current settings' stamp — the same test
a rerun uses to skip it — so stale files from other settings are not counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from taskspace.pipeline import settings as params
from taskspace.runs import DATA, Run


@dataclass(frozen=True)
class RunProgress:
    label: str
    total: int  # tasks × replicates × (1 + control)
    ftgd: int  # tuned with the current settings
    eval2: int  # evaluated after tuning, with the current settings

    def line(self) -> str:
        return f"ftgd {self.ftgd}/{self.total} · eval2 {self.eval2}/{self.total}"


def _stamp_of_json(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        return None


def _stamp_of_parquet(path: Path) -> str:
    try:
        return ((pq.read_schema(path).metadata or {}).get(b"config") or b"").decode()
    except Exception:  # being written, truncated: not done yet
        return ""


def run_progress(p: dict, data: Path = DATA) -> list[RunProgress]:
    """Every run of the params: its tasks tuned and evaluated so far, over all replicates and the control."""
    probe = params.probe_config(p)
    units = len(probe.replicates(0, 0)) * (1 + probe.control)
    tasks_file = data / "prepare" / "splits" / "tasks.parquet"
    n_tasks = pq.read_metadata(tasks_file).num_rows if tasks_file.exists() else 0
    out = []
    for run in params.runs_of(p):
        run = Run(run.model, run.revision, data)
        ftgd_stamp, probe_stamp = params.stamp("ftgd", p, run.stage_key), params.stamp("probe", p, run.stage_key)
        tuned = sum(_stamp_of_json(f) == ftgd_stamp for f in run.dir("ftgd").rglob("ftgd.json"))
        evaluated = sum(
            _stamp_of_parquet(f).startswith(probe_stamp + ":") for f in run.dir("probe").rglob("eval2.parquet")
        )
        out.append(RunProgress(run.label, n_tasks * units, tuned, evaluated))
    return out
