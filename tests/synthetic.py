"""Synthetic stage outputs (splits, probe folders) in the pipeline's layout, for tests that need runs without
computing them: analysis, index and TUI behaviour on any number of tasks, models and revisions, in seconds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from taskspace.blimp.data import task_table
from taskspace.blimp.meta import PARADIGMS
from taskspace.io import write_json, write_parquet
from taskspace.runs import Run
from taskspace.stats.spaces import KINDS, TaskSpaces


def write_splits(data_dir: Path, tasks: list[str], n: int = 4) -> None:
    """data/prepare/splits: train/eval pairs (made-up sentences with a task's own word) and task metadata."""
    rows = [(t, i, f"the {t} word {i} is good .", f"the {t} word {i} good is .") for t in tasks for i in range(n)]
    table = pa.table({k: [r[j] for r in rows] for j, k in enumerate(("task", "pair_id", "good", "bad"))})
    split = data_dir / "prepare" / "splits"
    write_parquet(table, split / "train.parquet")
    write_parquet(table, split / "eval.parquet")
    write_parquet(task_table({t: PARADIGMS[t] for t in tasks}), split / "tasks.parquet")


def scores(tasks: list[str], n: int, rng) -> pa.Table:
    """Made-up per-pair scores in the scoring schema."""
    good = rng.normal(-20, 3, len(tasks) * n)
    bad = good - rng.normal(1, 2, good.size)
    return pa.table(
        {
            "task": [t for t in tasks for _ in range(n)],
            "pair_id": pa.array([i for _ in tasks for i in range(n)], pa.int32()),
            "logp_good": good,
            "logp_bad": bad,
            "margin": good - bad,
            "correct": good - bad > 0,
        }
    )


def weights_hash(model: str, revision: str) -> str:
    """A synthetic run's made-up weights hash: one per model and revision."""
    return hashlib.sha256(f"{model}@{revision}".encode()).hexdigest()


def write_run(
    data_dir: Path,
    model: str,
    revision: str,
    tasks: list[str],
    seed: int = 0,
    created: str = "",
    cells: bool = False,
    weights_of: str | None = None,
    recorded: dict | None = None,
) -> Path:
    """data/{eval,probe}/<model>/<revision>/: made-up eval1/eval2 scores, spaces (phenomenon blocks plus noise)
    and run.json; with `cells`, each transfer cell's paired test (its q below 0.05 within phenomena). The run's
    weights hash is its own, or with `weights_of` that revision's (a checkpoint repeated on purpose). `recorded`
    ({"probe": {...}, "run": {...}}) adds to probe.json and run.json: a run of another experiment or setting."""
    rng = np.random.default_rng(seed)
    t = len(tasks)
    groups = np.array([PARADIGMS[x][0] for x in tasks])
    signal = (groups[:, None] == groups[None, :]).astype(float)
    mats = {k: signal + rng.normal(scale=0.5, size=(t, t)) for k in KINDS if k != "transfer_linear"}
    # first order: the margin space overstated, plus its own error (a stream of its own: the others stay as they were)
    extra = np.random.default_rng(seed + 1000)
    mats["transfer_linear"] = 1.5 * mats["transfer_margin"] + extra.normal(scale=0.3, size=(t, t))
    if cells:
        p = np.where(signal > 0, 0.001, 0.5)
        np.fill_diagonal(p, np.nan)
        mats |= {"transfer_p": p, "transfer_q": p * 2, "transfer_low": mats["transfer"] - 0.1,
                 "transfer_high": mats["transfer"] + 0.1}  # fmt: skip
    layout = Run(model, revision, data_dir).layout
    write_parquet(scores(tasks, 4, rng), layout.eval1)
    for task in tasks:
        write_parquet(scores(tasks, 4, rng), layout.eval2(task))
    TaskSpaces(tasks, mats).save(layout.matrices)
    write_json({"per_task": {}, **(recorded or {}).get("probe", {})}, layout.summary)
    run = {
        "run": f"{model}@{revision}",
        "model": model,
        "spec": model,
        "scale": "1M",
        "n_params": 1_000_000,
        "revision": revision,
        "weights_sha256": weights_hash(model, weights_of or revision),
        "prefix": "<|endoftext|>",
        "params_hash": "h" * 12,
        "experiment": "",
        "git_rev": "",
        "created": created or f"2026-01-01T00:00:{seed:02d}",
    }
    layout.info.write_text(json.dumps(run | (recorded or {}).get("run", {})))
    return layout.probe


def build_synthetic_index(
    root: Path,
    runs: dict[str, list[str]],
    tasks: list[str],
    cells: bool = False,
    same: dict | None = None,
    recorded: dict | None = None,
) -> Path:
    """A project folder with made-up outputs for `runs` (model → revisions), analysed and indexed like the
    pipeline does it; returns the index file. `same` ({(model, revision): earlier revision}) gives a run the
    weights of another revision of its model, on purpose; `recorded` ({(model, revision): write_run's recorded})
    gives a run its own recorded settings."""
    import os

    from taskspace.index import build_index
    from taskspace.pipeline import stages as pipeline
    from taskspace.pipeline.settings import Settings
    from taskspace.runs import expand_runs

    data_dir = root / "data"
    write_splits(data_dir, tasks)
    models = {m: {"spec": m, "revisions": revs} for m, revs in runs.items()}
    for i, (m, rev) in enumerate((m, r) for m, revs in runs.items() for r in revs):
        write_run(data_dir, m, rev, tasks, seed=i, cells=cells, weights_of=(same or {}).get((m, rev)),
                  recorded=(recorded or {}).get((m, rev)))  # fmt: skip
    p = {"models": models, "data": {}, "ftgd": {}, "probing": {}, "analysis": {"permutations": 100}}
    p["runs"] = expand_runs(models)
    p["data_files"] = "taskspace/blimp/data.py"  # what data.source (hub, the default) derives
    cwd = os.getcwd()
    os.chdir(root)  # the stages read and write data/ under the project folder
    try:
        pipeline.stage_analyze(Settings.from_dict(p), say=lambda _: None)
        build_index(Path("data/index/taskspace.duckdb"), Path("data"), Path("data/analyze/analysis.json"))
    finally:
        os.chdir(cwd)
    return data_dir / "index" / "taskspace.duckdb"
