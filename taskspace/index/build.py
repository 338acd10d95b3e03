"""Building the index from the stage outputs (the DVC-tracked truth; the index is derived).

One writer at a time copies the file, loads only new or changed runs into the copy with bulk Arrow inserts, and
renames it over the old file, so readers (the TUI) never see a half-written index. An index of another schema
version is rebuilt from scratch.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from taskspace.blimp.data import task_table
from taskspace.blimp.meta import PARADIGMS
from taskspace.index.schema import SCHEMA, SCHEMA_VERSION, TABLES, VIEWS, IndexUnavailable, schema_version
from taskspace.io import read_json, read_parquet
from taskspace.runs import Run, finished_runs, revision_step, split_files, splits_root, tasks_file


def _task_ids(con, tasks_file: Path | None, names: Iterable[str]) -> dict[str, int]:
    """Insert unseen tasks (metadata from the prepare stage's tasks table, else BLiMP's) and return name → id."""
    meta = {}
    if tasks_file and tasks_file.exists():
        meta = {r["task"]: (r["phenomenon"], r["field"]) for r in read_parquet(tasks_file, PREPARE).to_pylist()}
    known = dict(con.execute("SELECT task, task_id FROM tasks").fetchall())
    new = [n for n in dict.fromkeys(list(meta) + list(names)) if n not in known]
    if new:
        start = max(known.values(), default=-1) + 1
        rows = task_table({n: meta.get(n) or PARADIGMS.get(n, ("", "")) for n in new})
        insert(con, "tasks", rows.add_column(0, "task_id", pa.array(range(start, start + len(new)), pa.int32())))
        known.update({n: start + i for i, n in enumerate(new)})
    return known


def _scores_table(t: pa.Table, run_id: int, stage: str, tuned: int | None, ids: dict[str, int]) -> pa.Table:
    n = t.num_rows
    return pa.table(
        {
            "run_id": pa.array(np.full(n, run_id, np.int32)),
            "stage": pa.array([stage] * n),
            "tuned_task_id": pa.array([tuned] * n, pa.int32()),
            "task_id": pa.array([ids[x] for x in t.column("task").to_pylist()], pa.int32()),
            "pair_id": t.column("pair_id"),
            "logp_good": t.column("logp_good"),
            "logp_bad": t.column("logp_bad"),
            "margin": t.column("margin"),
            "correct": t.column("correct"),
        }
    )


def similarity_rows(run_id: int, tasks: list[str], mats: dict[str, np.ndarray], ids: dict[str, int]) -> pa.Table:
    """Long form (run, kind, a = tuned/row task, b = column task, value); NaN (a zero diagonal normalised) is NULL."""
    t = len(tasks)
    tid = np.array([ids[x] for x in tasks], np.int32)
    a, b = np.repeat(tid, t), np.tile(tid, t)
    parts = []
    for kind, m in mats.items():
        v = np.asarray(m, np.float64).reshape(-1)
        parts.append(
            pa.table(
                {
                    "run_id": np.full(t * t, run_id, np.int32),
                    "kind": [kind] * (t * t),
                    "task_a": a,
                    "task_b": b,
                    "value": pa.array(v, mask=np.isnan(v)),
                }
            )
        )
    return pa.concat_tables(parts)


def insert(con, table: str, arrow: pa.Table) -> None:
    con.register("_incoming", arrow)
    con.execute(f"INSERT INTO {table} SELECT * FROM _incoming")
    con.unregister("_incoming")


def _load_run(con, run: Run, info: dict, ids_of, run_id: int) -> None:
    from taskspace.stats.spaces import TaskSpaces

    layout = run.layout
    spaces = TaskSpaces.load(layout.matrices)
    ids = ids_of(spaces.tasks)
    row = [
        run_id,
        run.index_key(info["params_hash"]),
        run.label,
        run.model,
        info.get("spec", ""),
        info.get("scale", ""),
        info.get("n_params"),
        run.revision,
        revision_step(run.revision),
        info.get("prefix", ""),
        info["params_hash"],
        info.get("experiment", ""),
        info.get("git_rev", ""),
        info.get("created", ""),
        str(layout.probe),
        _json_text(layout.summary, _rerun("probe", run)) if layout.summary.exists() else "{}",
        None,
        info.get("weights_sha256"),  # NULL: a run.json from before weights were hashed
        info.get("family") or run.model,  # seeds of one model share a family (each model its own by default)
        info.get("seed"),
    ]
    con.execute(f"INSERT INTO runs VALUES ({', '.join('?' * len(row))})", row)
    insert(con, "similarities", similarity_rows(run_id, spaces.tasks, spaces.matrices, ids))
    if layout.eval1.exists():
        eval1 = read_parquet(layout.eval1, _rerun("eval", run))
        insert(con, "scores", _scores_table(eval1, run_id, "eval1", None, ids))
    for task in spaces.tasks:
        if layout.eval2(task).exists():
            eval2 = read_parquet(layout.eval2(task), _rerun("probe", run))
            insert(con, "scores", _scores_table(eval2, run_id, "eval2", ids[task], ids))


PREPARE = "restore it with `dvc checkout --relink {path}` or rerun `dvc repro -f prepare`"
RESTORE_ANALYSIS = "restore it with `dvc checkout --relink {path}` or rerun `dvc repro -f analyze`"


def _rerun(stage: str, run: Run) -> str:
    """The fix for an unreadable output of one run: restore it from the DVC cache, or rerun its stage."""
    return f"restore it with `dvc checkout --relink {{path}}` or rerun `dvc repro -f {stage}@{run.stage_key}`"


def _json_text(path: Path, fix: str) -> str:
    """A JSON file's text, checked to be JSON (a truncated one is named, not stored)."""
    read_json(path, fix)
    return path.read_text(encoding="utf-8")


def _drop_run(con, run_id: int) -> None:
    for table in ("scores", "similarities", "analysis", "stability", "seed_spread"):
        con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
    con.execute("DELETE FROM comparisons WHERE run_a = ? OR run_b = ?", [run_id, run_id])
    con.execute("DELETE FROM runs WHERE run_id = ?", [run_id])


def _fill(con, data_dir: Path, analysis_file: Path | None) -> tuple[int, int]:
    tasks = tasks_file(data_dir)
    added = replaced = 0
    for run in finished_runs(data_dir):
        info = read_json(run.layout.info, _rerun("probe", run))
        key = run.index_key(info["params_hash"])
        have = con.execute("SELECT run_id, created FROM runs WHERE index_key = ?", [key]).fetchone()
        if have and have[1] == info.get("created", ""):
            continue  # already indexed, unchanged
        if have:
            _drop_run(con, have[0])
        replaced, added = (replaced + 1, added) if have else (replaced, added + 1)
        run_id = have[0] if have else con.execute("SELECT coalesce(max(run_id), -1) + 1 FROM runs").fetchone()[0]
        _load_run(con, run, info, lambda names: _task_ids(con, tasks, names), run_id)
    eval_file = split_files(splits_root(data_dir))[1]
    if eval_file.exists():  # the sentences behind the scores, for example pairs in the TUI
        ev = read_parquet(eval_file, PREPARE)
        ids = _task_ids(con, tasks, ev.column("task").to_pylist())
        con.execute("DELETE FROM pairs")
        task_ids = pa.array([ids[t] for t in ev.column("task").to_pylist()], pa.int32())
        insert(con, "pairs", pa.table({"task_id": task_ids, **{c: ev.column(c) for c in ("pair_id", "good", "bad")}}))
    if analysis_file and Path(analysis_file).exists():
        load_analysis(con, read_json(analysis_file, RESTORE_ANALYSIS))
    return added, replaced


def _inputs_digest(data_dir: Path, analysis_file) -> str:
    """What the rows besides the runs' own come from: the eval split (pairs) and analysis.json, by content."""
    h = hashlib.sha1()
    for f in (split_files(splits_root(data_dir))[1], Path(analysis_file) if analysis_file else None):
        h.update(f.read_bytes() if f is not None and f.exists() else b"-")
    return h.hexdigest()


def build_index(
    db: str | Path,
    data_dir: str | Path = "data",
    analysis_file: str | Path | None = None,
    say: Callable[[str], None] | None = None,
) -> dict:
    """Add new or changed runs under data_dir to the index at db (atomically); returns row counts."""
    db, data_dir = Path(db), Path(data_dir)
    db.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(db):
        return _build(db, data_dir, analysis_file, say)


@contextlib.contextmanager
def writer_lock(db: Path):
    """One writer at a time (a second one is told who holds it); leftovers of a killed writer are removed."""
    import fcntl

    lock = db.with_name(db.name + ".lock")
    fh = open(lock, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            raise IndexUnavailable(
                f"index {db} is being written by another `taskspace index` (pid {holder}); retry when it ends"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        for stale in db.parent.glob(f".{db.name}.*.tmp*"):  # a killed writer's copy and its WAL
            stale.unlink(missing_ok=True)
        yield
    finally:
        fh.close()  # releases the lock


def _build(db: Path, data_dir: Path, analysis_file, say) -> dict:
    fd, tmp = tempfile.mkstemp(prefix=f".{db.name}.", suffix=".tmp", dir=db.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        before = _settle(db)
        if db.exists():
            shutil.copy2(db, tmp)
            if os.path.exists(f"{db}.wal"):  # left by a writer that ended without a checkpoint, while readers held it
                shutil.copy2(f"{db}.wal", tmp + ".wal")
        con = duckdb.connect(tmp)
        version = schema_version(con)
        if db.exists() and version != SCHEMA_VERSION:
            con.close()
            os.unlink(tmp)
            if say:
                say(
                    f"{db}: schema version {version or 1} is not {SCHEMA_VERSION}; rebuilding it from the stage outputs"
                )
            con = duckdb.connect(tmp)
        try:
            con.execute(SCHEMA)
            con.execute(VIEWS)
            con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            inputs = _inputs_digest(data_dir, analysis_file)
            kept = con.execute("SELECT value FROM meta WHERE key = 'inputs'").fetchone()
            con.execute("INSERT OR REPLACE INTO meta VALUES ('inputs', ?)", [inputs])
            added, replaced = _fill(con, data_dir, analysis_file)
            counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        finally:
            con.close()
        if db.exists() and not added and not replaced and kept and kept[0] == inputs:
            return {**counts, "added": 0, "replaced": 0}  # nothing new: the file stays byte for byte (DVC's md5)
        if _settle(db) != before:
            raise IndexUnavailable(
                f"index {db} was changed by another process while this one was built; nothing was replaced: rerun "
                "`taskspace index` when no other process writes it"
            )
        os.replace(tmp, db)
        Path(f"{db}.wal").unlink(missing_ok=True)  # the old file's (folded into the copy): never replayed onto it
    except (duckdb.IOException, duckdb.TransactionException, duckdb.OutOfMemoryException, duckdb.FatalException,
            OSError) as e:  # fmt: skip
        why = _first_line(e)
        full = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
        full = full or any(w in why.lower() for w in ("no space left", "file too large", "disk quota"))
        fix = f"free disk space in {db.parent}, then " if full else ""
        msg = f"cannot write index {db}: {why}; it is unchanged: {fix}rerun `taskspace index`"
        raise IndexUnavailable(msg) from None
    finally:
        for f in (tmp, tmp + ".wal"):
            if os.path.exists(f):
                os.unlink(f)
    return {**counts, "added": added, "replaced": replaced}


def _first_line(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e).strip() or type(e).__name__
    return text.splitlines()[0]


HOLDER = re.compile(r"Conflicting lock is held in (?P<exe>.+?) \(PID (?P<pid>\d+)\)")


def _settle(db: Path) -> tuple | None:
    """Take DuckDB's own lock on the index for a moment: refuse (one line, naming the process) when another process
    holds it open for writing — `taskspace index` or not, its writes would be lost under the renamed copy and its
    WAL replayed onto the wrong file — else fold a WAL left behind into the file, so the copy holds all of it.
    Readers (the TUI, read-only) are no obstacle: they keep the old file. Returns the file's identity, compared
    again before the rename (nobody changed it meanwhile); None when there is no index yet."""
    if not db.exists():
        return None
    try:
        con = duckdb.connect(str(db))
    except duckdb.ConnectionException:  # this process reads it (read-only): a reader, no obstacle
        con = None
    except duckdb.IOException as e:
        held = HOLDER.search(str(e))
        if held is None:
            raise
        con = None
        try:  # readers hold a shared lock: a read-only connection still opens; a writer's exclusive one refuses it
            duckdb.connect(str(db), read_only=True).close()
        except duckdb.IOException:
            raise IndexUnavailable(
                f"index {db} is open for writing in another process (pid {held['pid']}, {Path(held['exe']).name}): "
                "close that connection or end the process, then rerun `taskspace index`; nothing in the index was "
                "changed"
            ) from None
    if con is not None:
        try:
            con.execute("CHECKPOINT")
        finally:
            con.close()
    st = db.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns, os.path.exists(f"{db}.wal")


COMPARISON_VALUES = ("relation", "r", "p", "p_floor", "p_exact")


def load_analysis(con, analysis: dict) -> None:
    """Replace the analysis, comparison and stability rows of the runs analysis.json names (by index key)."""
    keys = dict(con.execute("SELECT index_key, run_id FROM runs").fetchall())
    settings = json.dumps(analysis.get("settings", {}))
    rows = []
    for key, kinds in analysis.get("runs", {}).items():
        if key not in keys:
            continue
        con.execute("DELETE FROM analysis WHERE run_id = ?", [keys[key]])
        con.execute("UPDATE runs SET analysis_settings = ? WHERE run_id = ?", [settings, keys[key]])
        for kind, metrics in kinds.items():
            rows += [(keys[key], kind, m, v) for m, v in metrics.items() if isinstance(v, int | float)]
            rows += [(keys[key], kind, f"n_{m}", len(v)) for m, v in metrics.items() if isinstance(v, list)]
    if rows:
        insert(con, "analysis", pa.table(list(zip(*rows)), names=["run_id", "kind", "metric", "value"]))
    comps = [c for c in analysis.get("comparisons", []) if c["a"] in keys and c["b"] in keys]
    con.execute("DELETE FROM comparisons")
    if comps:
        con.executemany(
            "INSERT INTO comparisons VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    c["kind"],
                    keys[c["a"]],
                    keys[c["b"]],
                    c["relation"],
                    c["r"],
                    c["p"],
                    c.get("p_floor"),
                    c.get("p_exact"),
                )
                for c in comps
            ],
        )
    con.execute("DELETE FROM stability")
    st = [
        (
            keys[key],
            kind,
            i,
            s["with_next"][i] if i < len(s["with_next"]) else None,
            s["with_last"][i],
            s["contrast"][i],
        )
        for kinds in analysis.get("stability", {}).values()
        for kind, s in kinds.items()
        for i, key in enumerate(s.get("runs", []))
        if key in keys
    ]
    if st:
        con.executemany("INSERT INTO stability VALUES (?, ?, ?, ?, ?, ?)", st)
    load_seed_spread(con, analysis, keys)


SPREAD = ("r", "contrast", "with_next", "seed_r")


def load_seed_spread(con, analysis: dict, keys: dict) -> None:
    """Each family's spread over seeds (analysis.json `seeds`), per kind and revision, by its first seed's run."""
    con.execute("DELETE FROM seed_spread")
    rows = [
        (keys[key], family, kind, i, sp["revisions"][i], *(sp[f"{v}_{m}"][i] for v in SPREAD for m in ("mean", "sd")))
        for family, kinds in analysis.get("seeds", {}).items()
        for kind, sp in kinds.items()
        for i, key in enumerate(sp.get("runs", []))
        if key in keys
    ]
    if rows:
        con.executemany(f"INSERT INTO seed_spread VALUES ({', '.join('?' * 13)})", rows)
