"""Synthetic stage outputs (splits, probe folders) in the pipeline's layout, for tests that need runs without
computing them: analysis, index and TUI behaviour on any number of tasks, models and revisions, in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from taskspace.analysis import paper_phenomenon
from taskspace.blimp_meta import PARADIGMS
from taskspace.io import write_json, write_parquet
from taskspace.probing import KINDS, save_matrices


def write_splits(data_dir: Path, tasks: list[str], n: int = 4) -> None:
    """data/prepare/splits: train/eval pairs (made-up sentences with a task's own word) and task metadata."""
    rows = [(t, i, f"the {t} word {i} is good .", f"the {t} word {i} good is .") for t in tasks for i in range(n)]
    table = pa.table({k: [r[j] for r in rows] for j, k in enumerate(("task", "pair_id", "good", "bad"))})
    split = data_dir / "prepare" / "splits"
    write_parquet(table, split / "train.parquet")
    write_parquet(table, split / "eval.parquet")
    meta = [(t, *PARADIGMS[t]) for t in tasks]
    write_parquet(
        pa.table(
            {
                "task": [t for t, _, _ in meta],
                "phenomenon": [p for _, p, _ in meta],
                "paper_phenomenon": [paper_phenomenon(p) for _, p, _ in meta],
                "field": [f for _, _, f in meta],
            }
        ),
        split / "tasks.parquet",
    )


def write_run(data_dir: Path, model: str, revision: str, tasks: list[str], seed: int = 0, created: str = "") -> Path:
    """data/probe/<model>/<revision>/: matrices.npz (random, symmetric-ish spaces) and run.json."""
    rng = np.random.default_rng(seed)
    t = len(tasks)
    groups = np.array([PARADIGMS[x][0] for x in tasks])
    signal = (groups[:, None] == groups[None, :]).astype(float)
    mats = {k: signal + rng.normal(scale=0.5, size=(t, t)) for k in KINDS}
    out = data_dir / "probe" / model / revision
    save_matrices(out / "matrices.npz", tasks, mats)
    write_json({"per_task": {}}, out / "probe.json")
    run = {
        "run_id": f"{model}@{revision}",
        "model": model,
        "spec": model,
        "scale": "1M",
        "n_params": 1_000_000,
        "revision": revision,
        "prefix": "<|endoftext|>",
        "params_hash": "h" * 12,
        "experiment": "",
        "git_rev": "",
        "created": created or f"2026-01-01T00:00:{seed:02d}",
    }
    (out / "run.json").write_text(json.dumps(run))
    return out
