"""A run's units of work: its replicates (FTGD seed × split seed) and their controls, each with its folders, its
FTGD settings and its split — shared by the stage bodies and the executor's shard workers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from taskspace.config import FTGDConfig
from taskspace.errors import OutputError
from taskspace.io import read_parquet
from taskspace.pipeline.settings import Settings
from taskspace.runs import DATA, Layout, Run, split_files, splits_dir, splits_root

Say = Callable[[str], None]
PREPARE = "restore it with `dvc checkout --relink {path}` or rerun `dvc repro -f prepare`"


def splits(root: Path | None = None) -> tuple[pa.Table, pa.Table]:
    """(train, eval) pairs of a split folder (the primary split by default)."""
    train, ev = split_files(root or splits_root())
    if not train.exists():
        raise OutputError(f"{train} missing: run `dvc repro prepare` (or `taskspace stage prepare`)")
    return read_parquet(train, PREPARE), read_parquet(ev, PREPARE)


@dataclass
class Replicate:
    """One replicate of a run: its folders, its FTGD settings (with its seed) and its split."""

    layout: Layout
    ftgd: FTGDConfig
    train: pa.Table
    eval: pa.Table

    def units(self, control: bool) -> list[tuple[Layout, bool]]:
        """The replicate's own folders, then its control's when the run has one."""
        return [(self.layout, False), (self.layout.control, True)][: 1 + control]


def replicates(s: Settings, run: Run) -> list[Replicate]:
    """The run's replicates (probing.ftgd_seeds × split_seeds side by side; one when both are empty)."""
    seeds = s.replicate_seeds(run.model)
    return [
        Replicate(
            run.layout.replicate(r, len(seeds)),
            dataclasses.replace(s.ftgd(run.model), seed=fs),
            *splits(splits_dir(DATA, ss, s.data.seed)),
        )
        for r, (fs, ss) in enumerate(seeds)
    ]


def unit_name(run: Run, r: int, reps: list, control: bool = False) -> str:
    """How a stage names what it is doing: the run, its replicate when it has several, and the control."""
    return (run.label if len(reps) == 1 else f"{run.label} r{r}") + (" control" if control else "")


def progress_line(what: str, say: Say) -> Callable[[str, int, int], None]:
    return lambda _stage, i, n: say(f"{what} {i}/{n}")


def step_line(what: str, say: Say) -> Callable[[str, int, int], None]:
    """Progress of a loop with several steps (eval2, then first-order transfer): each line names its step."""
    return lambda step, i, n: say(f"{what}: {step} {i}/{n}")


def load_run_model(s: Settings, run: Run, say: Say, device: str | None = None):
    """The run's model, loaded as its `models` entry says, on the device and in the dtype `compute` asks for
    (`device`: the one a worker is pinned to)."""
    from taskspace.lm.models import load_model

    entry, compute = s.model(run.model), s.compute
    if compute.device == "cpu":
        device = "cpu"
    elif not device:
        device = None if compute.device == "auto" else "cuda"
    say(f"{run.label}: loading {entry.spec}" + (f" on {device}" if device else ""))
    return load_model(
        entry.spec,
        revision=run.hub_revision,
        device=device,
        dtype=compute.torch_dtype,
        prefix=entry.prefix,
        compile=entry.compile,
        setting="compute.device",
    )
