"""The index's tables, its schema version, and opening it read-only with clear messages."""

from __future__ import annotations

from pathlib import Path

import duckdb

from taskspace.errors import TaskspaceError
from taskspace.stats.spaces import METRIC_UNITS, OWN_UNITS

SCHEMA_VERSION = 5  # bumped whenever a table changes; an index of another version is rebuilt by `taskspace index`
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY, index_key VARCHAR UNIQUE, label VARCHAR, model VARCHAR, spec VARCHAR,
    scale VARCHAR, n_params BIGINT, revision VARCHAR, step BIGINT, prefix VARCHAR, params_hash VARCHAR,
    experiment VARCHAR, git_rev VARCHAR, created VARCHAR, path VARCHAR, probe JSON, analysis_settings JSON,
    weights_sha256 VARCHAR, family VARCHAR, seed INTEGER);
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
    kind VARCHAR, run_a INTEGER, run_b INTEGER, relation VARCHAR, r DOUBLE, p DOUBLE, p_floor DOUBLE, p_exact BOOLEAN);
CREATE TABLE IF NOT EXISTS stability (
    run_id INTEGER, kind VARCHAR, position INTEGER, with_next DOUBLE, with_last DOUBLE, contrast DOUBLE);
CREATE TABLE IF NOT EXISTS seed_spread (
    run_id INTEGER, family VARCHAR, kind VARCHAR, position INTEGER, revision VARCHAR, r_mean DOUBLE, r_sd DOUBLE,
    contrast_mean DOUBLE, contrast_sd DOUBLE, with_next_mean DOUBLE, with_next_sd DOUBLE, seed_r_mean DOUBLE,
    seed_r_sd DOUBLE);
"""


def _sql(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# A space's unit (`taskspace.stats.spaces`): its own, else the run's probing metric (accuracy when unrecorded).
UNIT = (
    "CASE s.kind " + " ".join(f"WHEN {_sql(k)} THEN {_sql(u)}" for k, u in OWN_UNITS.items())
    + " ELSE CASE json_extract_string(r.probe, '$.probing.metric') "
    + " ".join(f"WHEN {_sql(m)} THEN {_sql(u)}" for m, u in METRIC_UNITS.items())
    + f" ELSE {_sql(METRIC_UNITS['accuracy'])} END END"
)  # fmt: skip
# Views for notebooks and SQL: task names instead of ids, the run's identity on every row (a query by model
# alone would mix `dvc exp` variants: filter or group by params_hash / experiment), the direction spelled out.
VIEWS = f"""
CREATE OR REPLACE VIEW spaces AS
SELECT r.run_id, r.label AS run, r.model, r.revision, r.step, r.experiment, r.params_hash, s.kind,
       ta.task AS task_a, ta.phenomenon AS phenomenon_a, tb.task AS task_b, tb.phenomenon AS phenomenon_b,
       s.value,
       {UNIT} AS unit
FROM similarities s JOIN runs r USING (run_id)
JOIN tasks ta ON ta.task_id = s.task_a JOIN tasks tb ON tb.task_id = s.task_b;
CREATE OR REPLACE VIEW transfer AS
SELECT run_id, run, model, revision, step, experiment, params_hash, task_a AS tuned_task, phenomenon_a AS
       tuned_phenomenon, task_b AS eval_task, phenomenon_b AS eval_phenomenon, value, unit
FROM spaces WHERE kind = 'transfer';
CREATE OR REPLACE VIEW task_accuracy AS
SELECT r.run_id, r.label AS run, r.model, r.revision, r.step, r.experiment, r.params_hash, sc.stage,
       tt.task AS tuned_task, t.task, t.phenomenon, avg(sc.correct::INTEGER) AS accuracy,
       avg(sc.margin) AS mean_margin, count(*) AS pairs
FROM scores sc JOIN runs r USING (run_id) JOIN tasks t ON t.task_id = sc.task_id
LEFT JOIN tasks tt ON tt.task_id = sc.tuned_task_id GROUP BY ALL;
CREATE OR REPLACE VIEW fits AS
SELECT r.run_id, r.label AS run, r.model, r.revision, r.step, r.experiment, r.params_hash, a.kind, a.metric, a.value
FROM analysis a JOIN runs r USING (run_id);
"""
VIEW_NAMES = ("spaces", "transfer", "task_accuracy", "fits")
TABLES = ("runs", "tasks", "pairs", "scores", "similarities", "analysis", "comparisons", "stability", "seed_spread")


class IndexUnavailable(TaskspaceError, RuntimeError):
    """The index cannot be opened (missing, locked, or from another schema version); the message says what to do."""


def schema_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The version an index was written with (None: before versions were recorded)."""
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except duckdb.CatalogException:
        return None
    return int(row[0]) if row else None


def connect_readonly(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open the index read-only; a clear error when it is missing, locked by a writer, or of another schema."""
    path = Path(path)
    if not path.exists():
        raise IndexUnavailable(
            f"no index at {path}: run the pipeline (`dvc repro` / ./scripts/main.sh) or `taskspace index`"
        )
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as e:
        if "lock" in str(e).lower():
            raise IndexUnavailable(
                f"index {path} is locked by a writer (`taskspace index` running?); retry when it ends"
            ) from None
        raise IndexUnavailable(f"cannot open index {path}: {str(e).splitlines()[0]}") from None
    version = schema_version(con)
    if version != SCHEMA_VERSION:
        con.close()
        raise IndexUnavailable(
            f"index {path} has schema version {version or 1}, this taskspace reads {SCHEMA_VERSION}: rebuild it "
            "with `taskspace index` (it is derived from the stage outputs)"
        )
    return con
