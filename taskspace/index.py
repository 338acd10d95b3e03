"""The DuckDB index: every run, score and similarity, keyed by run metadata — rebuilt from stage outputs.

Parquet/NPZ stage outputs are the DVC-tracked truth; the index is derived. One writer (`taskspace index`)
copies the file, loads only new or changed runs into the copy with bulk Arrow inserts, and renames it over the
old file, so readers (the TUI) never see a half-written index. Readers open read-only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from taskspace.runs import STEP_SQL, revision_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY, run_key VARCHAR UNIQUE, model VARCHAR, spec VARCHAR, scale VARCHAR,
    n_params BIGINT, revision VARCHAR, prefix VARCHAR, params_hash VARCHAR, experiment VARCHAR, git_rev VARCHAR,
    created VARCHAR, path VARCHAR, params JSON);
CREATE TABLE IF NOT EXISTS tasks (
    task_id INTEGER PRIMARY KEY, task VARCHAR UNIQUE, phenomenon VARCHAR, paper_phenomenon VARCHAR, field VARCHAR);
CREATE TABLE IF NOT EXISTS scores (
    run_id INTEGER, stage VARCHAR, tuned_task_id INTEGER, task_id INTEGER, pair_id INTEGER,
    logp_good DOUBLE, logp_bad DOUBLE, margin DOUBLE, correct BOOLEAN);
CREATE TABLE IF NOT EXISTS similarities (
    run_id INTEGER, kind VARCHAR, task_a INTEGER, task_b INTEGER, value DOUBLE);
CREATE TABLE IF NOT EXISTS pairs (task_id INTEGER, pair_id INTEGER, good VARCHAR, bad VARCHAR);
CREATE TABLE IF NOT EXISTS analysis (run_id INTEGER, kind VARCHAR, metric VARCHAR, value DOUBLE);
CREATE TABLE IF NOT EXISTS comparisons (
    kind VARCHAR, run_a INTEGER, run_b INTEGER, relation VARCHAR, r DOUBLE, p DOUBLE);
"""
TABLES = ("runs", "tasks", "pairs", "scores", "similarities", "analysis", "comparisons")


class IndexUnavailable(RuntimeError):
    """The index cannot be opened (missing or locked); the message says what to do."""


def connect_readonly(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open the index read-only; a clear error when it is missing or a writer holds its lock."""
    path = Path(path)
    if not path.exists():
        raise IndexUnavailable(
            f"no index at {path}: run the pipeline (`dvc repro` / ./scripts/main.sh) or `taskspace index`"
        )
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as e:
        if "lock" in str(e).lower():
            raise IndexUnavailable(
                f"index {path} is locked by a writer (`taskspace index` running?); retry when it ends"
            ) from None
        raise IndexUnavailable(f"cannot open index {path}: {str(e).splitlines()[0]}") from None


# ---- building -----------------------------------------------------------------------------------------------


@dataclass
class RunOutputs:
    """Where one run's files are: probe folder (matrices, eval2, run.json) and its eval1."""

    probe_dir: Path
    eval1: Path


def find_runs(data_dir: Path) -> list[RunOutputs]:
    """Every finished run under data/probe/<model>/<revision>/ (those with run.json and matrices.npz), in
    training order, so new run ids follow it."""
    out = []
    found = (data_dir / "probe").glob("*/*/run.json")
    for run_json in sorted(found, key=lambda f: (f.parent.parent.name, revision_key(f.parent.name))):
        d = run_json.parent
        if (d / "matrices.npz").exists():
            out.append(RunOutputs(d, data_dir / "eval" / d.parent.name / d.name / "eval1.parquet"))
    return out


def _task_ids(con, tasks_file: Path | None, names: Iterable[str]) -> dict[str, int]:
    """Insert unseen tasks (metadata from the prepare stage when available) and return name → id."""
    meta = {}
    if tasks_file and tasks_file.exists():
        t = pq.read_table(tasks_file).to_pylist()
        meta = {r["task"]: r for r in t}
    known = dict(con.execute("SELECT task, task_id FROM tasks").fetchall())
    new = [n for n in dict.fromkeys(list(meta) + list(names)) if n not in known]
    if new:
        from taskspace.analysis import paper_phenomenon
        from taskspace.blimp_meta import PARADIGMS

        start = max(known.values(), default=-1) + 1
        rows = []
        for i, n in enumerate(new):
            ph, field = (meta[n]["phenomenon"], meta[n]["field"]) if n in meta else PARADIGMS.get(n, ("", ""))
            rows.append((start + i, n, ph, paper_phenomenon(ph), field))
        con.executemany("INSERT INTO tasks VALUES (?, ?, ?, ?, ?)", rows)  # a few dozen rows, once
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
    """Long form (run, kind, a, b, value) of every matrix; NaN (e.g. a zero diagonal normalised) becomes NULL."""
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


def _insert(con, table: str, arrow: pa.Table) -> None:
    con.register("_incoming", arrow)
    con.execute(f"INSERT INTO {table} SELECT * FROM _incoming")
    con.unregister("_incoming")


def _load_run(con, run: RunOutputs, ids_of, run_id: int) -> None:
    from taskspace.probing import load_matrices

    info = json.loads((run.probe_dir / "run.json").read_text())
    tasks, mats = load_matrices(run.probe_dir / "matrices.npz")
    ids = ids_of(tasks)
    con.execute(
        "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            info["run_id"] + "#" + info["params_hash"],
            info["model"],
            info["spec"],
            info["scale"],
            info["n_params"],
            info["revision"],
            info["prefix"],
            info["params_hash"],
            info["experiment"],
            info["git_rev"],
            info["created"],
            str(run.probe_dir),
            (run.probe_dir / "probe.json").read_text(),
        ],
    )
    _insert(con, "similarities", similarity_rows(run_id, tasks, mats, ids))
    if run.eval1.exists():
        _insert(con, "scores", _scores_table(pq.read_table(run.eval1), run_id, "eval1", None, ids))
    for task in tasks:
        f = run.probe_dir / "tasks" / task / "eval2.parquet"
        if f.exists():
            _insert(con, "scores", _scores_table(pq.read_table(f), run_id, "eval2", ids[task], ids))


def build_index(db: str | Path, data_dir: str | Path = "data", analysis_file: str | Path | None = None) -> dict:
    """Add new or changed runs under data_dir to the index at db (atomically); returns row counts."""
    db, data_dir = Path(db), Path(data_dir)
    db.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{db.name}.", suffix=".tmp", dir=db.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        if db.exists():
            shutil.copy2(db, tmp)
        con = duckdb.connect(tmp)
        con.execute(SCHEMA)
        tasks_file = data_dir / "prepare" / "splits" / "tasks.parquet"
        added = replaced = 0
        for run in find_runs(data_dir):
            info = json.loads((run.probe_dir / "run.json").read_text())
            key = info["run_id"] + "#" + info["params_hash"]
            have = con.execute("SELECT run_id, created FROM runs WHERE run_key = ?", [key]).fetchone()
            if have and have[1] == info["created"]:
                continue  # already indexed, unchanged
            if have:
                for table in ("scores", "similarities", "analysis"):
                    con.execute(f"DELETE FROM {table} WHERE run_id = ?", [have[0]])
                con.execute("DELETE FROM comparisons WHERE run_a = ? OR run_b = ?", [have[0], have[0]])
                con.execute("DELETE FROM runs WHERE run_id = ?", [have[0]])
                replaced += 1
            else:
                added += 1
            run_id = have[0] if have else (con.execute("SELECT coalesce(max(run_id), -1) + 1 FROM runs").fetchone()[0])
            _load_run(con, run, lambda names: _task_ids(con, tasks_file, names), run_id)
        eval_file = data_dir / "prepare" / "splits" / "eval.parquet"
        if eval_file.exists():  # the sentences behind the scores, for example pairs in the TUI
            ev = pq.read_table(eval_file)
            ids = _task_ids(con, tasks_file, ev.column("task").to_pylist())
            con.execute("DELETE FROM pairs")
            _insert(
                con,
                "pairs",
                pa.table(
                    {
                        "task_id": pa.array([ids[t] for t in ev.column("task").to_pylist()], pa.int32()),
                        "pair_id": ev.column("pair_id"),
                        "good": ev.column("good"),
                        "bad": ev.column("bad"),
                    }
                ),
            )
        if analysis_file and Path(analysis_file).exists():
            load_analysis(con, json.loads(Path(analysis_file).read_text()))
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        con.close()
        os.replace(tmp, db)
    except duckdb.IOException as e:
        raise IndexUnavailable(f"cannot write index {db}: {str(e).splitlines()[0]}") from None
    finally:
        for f in (tmp, tmp + ".wal"):
            if os.path.exists(f):
                os.unlink(f)
    return {**counts, "added": added, "replaced": replaced}


def load_analysis(con, analysis: dict) -> None:
    """Replace the analysis/comparison rows of the runs named in analysis.json (keyed by run_key)."""
    keys = dict(con.execute("SELECT run_key, run_id FROM runs").fetchall())
    rows = []
    for run_key, kinds in analysis.get("runs", {}).items():
        if run_key not in keys:
            continue
        con.execute("DELETE FROM analysis WHERE run_id = ?", [keys[run_key]])
        for kind, metrics in kinds.items():
            rows += [(keys[run_key], kind, m, v) for m, v in metrics.items() if isinstance(v, int | float)]
    if rows:
        _insert(con, "analysis", pa.table(list(zip(*rows)), names=["run_id", "kind", "metric", "value"]))
    comps = [c for c in analysis.get("comparisons", []) if c["a"] in keys and c["b"] in keys]
    con.execute("DELETE FROM comparisons")
    if comps:
        con.executemany(
            "INSERT INTO comparisons VALUES (?, ?, ?, ?, ?, ?)",
            [(c["kind"], keys[c["a"]], keys[c["b"]], c["relation"], c["r"], c["p"]) for c in comps],
        )


# ---- reading ------------------------------------------------------------------------------------------------


class Index:
    """Read-only access for the TUI and scripts; every query the UI needs lives here, not in widgets."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.con = connect_readonly(self.path)

    def close(self) -> None:
        self.con.close()

    def counts(self) -> dict[str, int]:
        return {t: self.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}

    def runs(self) -> list[dict]:
        """Runs with their key metrics (Mantel r/p and within−between contrast of the transfer space), each
        model's checkpoints in training order."""
        q = f"""
        SELECT r.run_id, r.run_key, r.model, r.scale, r.n_params, r.revision, r.experiment, r.params_hash,
               r.created, {STEP_SQL.format(col="r.revision")} AS step,
               max(CASE WHEN a.metric = 'mantel_r' THEN a.value END) AS mantel_r,
               max(CASE WHEN a.metric = 'mantel_p' THEN a.value END) AS mantel_p,
               max(CASE WHEN a.metric = 'contrast' THEN a.value END) AS contrast
        FROM runs r LEFT JOIN analysis a ON a.run_id = r.run_id AND a.kind = 'transfer'
        GROUP BY ALL ORDER BY r.model, r.n_params, step NULLS LAST, r.run_id"""
        cur = self.con.execute(q)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def tasks(self) -> list[dict]:
        cur = self.con.execute("SELECT task_id, task, phenomenon, paper_phenomenon, field FROM tasks ORDER BY task_id")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def kinds(self, run_id: int) -> list[str]:
        rows = self.con.execute("SELECT DISTINCT kind FROM similarities WHERE run_id = ? ORDER BY kind", [run_id])
        return [r[0] for r in rows.fetchall()]

    def matrix(self, run_id: int, kind: str) -> tuple[list[str], np.ndarray]:
        """One T×T space: long form with integer ids, scattered into NumPy in task-id order."""
        res = self.con.execute(
            "SELECT task_a, task_b, value FROM similarities WHERE run_id = ? AND kind = ?", [run_id, kind]
        ).fetchnumpy()
        a, b = res["task_a"], res["task_b"]
        if a.size == 0:
            return [], np.zeros((0, 0))
        ids = np.unique(np.concatenate([a, b]))
        pos = np.full(ids.max() + 1, -1)
        pos[ids] = np.arange(ids.size)
        m = np.full((ids.size, ids.size), np.nan)
        v = res["value"]
        m[pos[a], pos[b]] = np.ma.filled(v.astype(float), np.nan) if np.ma.isMaskedArray(v) else v
        names = dict(self.con.execute("SELECT task_id, task FROM tasks").fetchall())
        return [names[int(i)] for i in ids], m

    def accuracy(self, run_id: int) -> list[dict]:
        """Per task: eval1 accuracy and mean margin, and after tuning on that task (eval2 of its own model)."""
        q = """
        SELECT t.task, t.phenomenon,
               avg(CASE WHEN s.stage = 'eval1' THEN s.correct::INT END) AS acc_before,
               avg(CASE WHEN s.stage = 'eval2' AND s.tuned_task_id = s.task_id THEN s.correct::INT END) AS acc_after,
               avg(CASE WHEN s.stage = 'eval1' THEN s.margin END) AS margin_before,
               avg(CASE WHEN s.stage = 'eval2' AND s.tuned_task_id = s.task_id THEN s.margin END) AS margin_after
        FROM scores s JOIN tasks t ON t.task_id = s.task_id WHERE s.run_id = ?
        GROUP BY t.task_id, t.task, t.phenomenon ORDER BY t.task_id"""
        cur = self.con.execute(q, [run_id])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def examples(self, run_id: int, task: str, limit: int = 10) -> list[dict]:
        """Example eval1 pairs of a task with their margins (worst first: the informative ones)."""
        q = """SELECT s.pair_id, s.margin, s.correct, p.good, p.bad
               FROM scores s JOIN tasks t ON t.task_id = s.task_id
               LEFT JOIN pairs p ON p.task_id = s.task_id AND p.pair_id = s.pair_id
               WHERE s.run_id = ? AND s.stage = 'eval1' AND t.task = ? ORDER BY s.margin, s.pair_id LIMIT ?"""
        cur = self.con.execute(q, [run_id, task, limit])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def analysis(self, run_id: int) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for kind, metric, value in self.con.execute(
            "SELECT kind, metric, value FROM analysis WHERE run_id = ?", [run_id]
        ).fetchall():
            out.setdefault(kind, {})[metric] = value
        return out
