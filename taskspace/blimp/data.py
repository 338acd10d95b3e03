"""BLiMP minimal pairs: loading (local JSONL folder or the hub), task selection and seeded splits.

Pairs live in a `pyarrow.Table` with columns task, phenomenon, field, pair_id, good, bad — the same schema
whether read from `../shared/data/blimp` or from `nyu-mll/blimp`, so everything downstream is source-blind.
"""

from __future__ import annotations

import difflib
import json
import os
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from taskspace.blimp.meta import PARADIGMS, paper_phenomenon
from taskspace.errors import TaskspaceError

HUB = "hub"
HUB_DATASET = "nyu-mll/blimp"
REQUIRED = ("sentence_good", "sentence_bad", "UID", "pairID", "linguistics_term", "field")
SCHEMA = pa.schema(
    [
        ("task", pa.string()),
        ("phenomenon", pa.string()),
        ("field", pa.string()),
        ("pair_id", pa.int32()),
        ("good", pa.string()),
        ("bad", pa.string()),
    ]
)
TASK_SCHEMA = pa.schema(
    [("task", pa.string()), ("phenomenon", pa.string()), ("paper_phenomenon", pa.string()), ("field", pa.string())]
)


def default_source() -> str:
    """$TASKSPACE_BLIMP, else the shared BLiMP folder beside the checkout when present, else the hub."""
    env = os.environ.get("TASKSPACE_BLIMP")
    if env:
        return env
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "blimp"
    return str(shared) if shared.is_dir() else HUB


def source_files(source: str, project: str | Path = ".") -> str:
    """What the prepare stage reads, as a DVC dependency: the local BLiMP folder (relative to the project folder
    when it can be, so the path is the same on every machine with the usual layout); for the hub, the loading
    code (the dataset's own revision is recorded with the splits)."""
    src = default_source() if str(source) == "auto" else str(source)
    if src == HUB:
        return "taskspace/blimp/data.py"
    return os.path.relpath(Path(src).resolve(), Path(project).resolve()) if Path(src).is_absolute() else src


class DataError(TaskspaceError, ValueError):
    """Bad input data; the message is one line naming the file/line/field and the fix."""


def normalise_field(field: str) -> str:
    """BLiMP spells one file's field `syntax/semantics`; every other file says `syntax_semantics`."""
    return field.replace("/", "_")


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" — did you mean {', '.join(close)}?" if close else ""


def available_tasks(source: str | Path = HUB) -> dict[str, tuple[str, str]]:
    """Tasks a source offers, with (phenomenon, field); a local folder offers its `*.jsonl` files."""
    if str(source) == HUB:
        return dict(PARADIGMS)
    folder = Path(source)
    if not folder.is_dir():
        raise DataError(f"BLiMP folder {folder} does not exist; pass --blimp DIR (the JSONL files) or --blimp hub")
    # dotfiles (`.x.jsonl`: an editor's backup, a sync tool's temp file) are never tasks
    files = sorted(f for f in folder.glob("*.jsonl") if not f.name.startswith("."))
    if not files:
        raise DataError(f"BLiMP folder {folder} has no *.jsonl files; point --blimp at the paradigm files")
    # Unknown paradigms (a user's own minimal pairs) get their metadata from the file itself when read.
    return {f.stem: PARADIGMS.get(f.stem, ("", "")) for f in files}


def select_tasks(
    source: str | Path = HUB,
    tasks: Sequence[str] | None = None,
    phenomena: Sequence[str] | None = None,
    fields: Sequence[str] | None = None,
) -> list[str]:
    """Tasks by name, phenomenon or field (union of what is named); all tasks when nothing is named."""
    known = available_tasks(source)
    if not (tasks or phenomena or fields):
        return sorted(known)
    chosen: list[str] = []
    for t in tasks or []:
        if t not in known:
            raise DataError(f"unknown task '{t}' in {source}{_suggest(t, known)}")
        chosen.append(t)
    phens = {p for p, _ in known.values()}
    for p in phenomena or []:
        if p not in phens:
            raise DataError(f"unknown phenomenon '{p}'{_suggest(p, phens)}")
        chosen += [t for t, (ph, _) in sorted(known.items()) if ph == p]
    flds = {f for _, f in known.values()}
    for f in fields or []:
        f = normalise_field(f)
        if f not in flds:
            raise DataError(f"unknown field '{f}'{_suggest(f, flds)}")
        chosen += [t for t, (_, fl) in sorted(known.items()) if fl == f]
    return list(dict.fromkeys(chosen))


def read_jsonl(path: Path) -> pa.Table:
    """One paradigm file, validated line by line (malformed JSON, missing fields, duplicate pair ids)."""
    cols: dict[str, list] = {name: [] for name in SCHEMA.names}
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8-sig") as fh:  # a byte-order mark is tolerated
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg}); fix or remove that line") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object per line, got {type(rec).__name__}")
            missing = [k for k in REQUIRED if k not in rec]
            if missing:
                raise DataError(
                    f"{path}:{lineno}: missing field '{missing[0]}' (BLiMP records need {', '.join(REQUIRED)})"
                )
            pid = str(rec["pairID"])
            if pid in seen:
                raise DataError(
                    f"{path}:{lineno}: duplicate pairID '{pid}' (first on line {seen[pid]}); pair ids must be unique"
                )
            seen[pid] = lineno
            try:
                pair_id = int(pid)
            except ValueError:
                raise DataError(f"{path}:{lineno}: field 'pairID' must be an integer string, got {pid!r}") from None
            for k in ("sentence_good", "sentence_bad"):
                if not isinstance(rec[k], str) or not rec[k].strip():
                    raise DataError(f"{path}:{lineno}: field '{k}' must be a non-empty string")
            if rec["UID"] != path.stem:  # a task is its file: a copied or renamed paradigm must not merge
                raise DataError(
                    f"{path}:{lineno}: UID '{rec['UID']}' differs from the file's task '{path.stem}'; "
                    "fix the UID or rename the file"
                )
            cols["task"].append(path.stem)
            cols["phenomenon"].append(rec["linguistics_term"])
            cols["field"].append(normalise_field(rec["field"]))
            cols["pair_id"].append(pair_id)
            cols["good"].append(rec["sentence_good"])
            cols["bad"].append(rec["sentence_bad"])
    if not seen:
        raise DataError(f"{path}: empty file (no pairs); remove it or restore the paradigm's JSONL")
    return pa.table(cols, schema=SCHEMA)


def _read_hub(task: str) -> pa.Table:
    try:
        import datasets

        ds = datasets.load_dataset(HUB_DATASET, task, split="train")
    except Exception as e:  # noqa: BLE001 - any hub failure gets the same advice
        raise DataError(
            f"cannot load BLiMP paradigm '{task}' from the hub ({HUB_DATASET}): {str(e).splitlines()[0]}; "
            "offline? pass --blimp DIR with the published JSONL files instead"
        ) from None
    t = ds.data.table if hasattr(ds, "data") else ds.to_arrow()
    return pa.table(
        {
            "task": t.column("UID"),
            "phenomenon": t.column("linguistics_term"),
            "field": [normalise_field(f) for f in t.column("field").to_pylist()],
            "pair_id": [int(p) for p in t.column("pairID").to_pylist()],
            "good": t.column("sentence_good"),
            "bad": t.column("sentence_bad"),
        },
        schema=SCHEMA,
    )


def load_blimp(source: str | Path = HUB, tasks: Sequence[str] | None = None) -> pa.Table:
    """Pairs of the given tasks (all when None) from a local folder or `hub`."""
    names = list(tasks) if tasks else select_tasks(source)
    known = available_tasks(source)
    parts = []
    for t in names:
        if t not in known:
            raise DataError(f"unknown task '{t}' in {source}{_suggest(t, known)}")
        parts.append(_read_hub(t) if str(source) == HUB else read_jsonl(Path(source) / f"{t}.jsonl"))
    return pa.concat_tables(parts) if parts else SCHEMA.empty_table()


def _task_seed(seed: int, task: str) -> int:
    # Per-task stream: a task's split does not depend on which other tasks were loaded with it.
    return (seed * 1_000_003 + zlib.crc32(task.encode())) % 2**32


def split_pairs(
    pairs: pa.Table, n_train: int, n_eval: int, seed: int = 0, names: tuple[str, str] = ("data.n_train", "data.n_eval")
) -> tuple[pa.Table, pa.Table]:
    """Disjoint seeded train/eval parts per task; raises when a task has too few pairs."""
    train_idx: list[int] = []
    eval_idx: list[int] = []
    tasks = pairs.column("task").to_numpy(zero_copy_only=False)
    for task in dict.fromkeys(tasks.tolist()):
        rows = np.flatnonzero(tasks == task)
        if n_train + n_eval > len(rows):
            raise DataError(
                f"task '{task}' has {len(rows)} pairs but n_train + n_eval = {n_train} + {n_eval} = "
                f"{n_train + n_eval}; lower {names[0]} or {names[1]}"
            )
        perm = np.random.default_rng(_task_seed(seed, task)).permutation(len(rows))
        train_idx += sorted(rows[perm[:n_train]].tolist())
        eval_idx += sorted(rows[perm[n_train : n_train + n_eval]].tolist())
    return pairs.take(pa.array(train_idx, pa.int64())), pairs.take(pa.array(eval_idx, pa.int64()))


def task_table(tasks: pa.Table | Mapping[str, tuple[str, str]]) -> pa.Table:
    """The tasks table (`TASK_SCHEMA`: task, phenomenon, paper phenomenon, field), one row per task: from pairs
    (their own metadata, in order of first appearance) or from a mapping task → (phenomenon, field) such as
    `PARADIGMS` or `available_tasks(source)`."""
    if isinstance(tasks, pa.Table):
        meta: dict[str, tuple[str, str]] = {}
        for t, ph, f in zip(*(tasks.column(c).to_pylist() for c in ("task", "phenomenon", "field")), strict=True):
            meta.setdefault(t, (ph, f))
        tasks = meta
    rows = [(t, ph, paper_phenomenon(ph), f) for t, (ph, f) in tasks.items()]
    return pa.table({c: [r[k] for r in rows] for k, c in enumerate(TASK_SCHEMA.names)}, schema=TASK_SCHEMA)
