"""Reading the index: every query the TUI and scripts need lives here, not in widgets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from taskspace.index.schema import TABLES, VIEW_NAMES, connect_readonly
from taskspace.index.settings_diff import RunsDiff, diff_runs, run_settings
from taskspace.runs import revision_key


def mark_identical(rows: list[dict]) -> list[dict]:
    """Give each run row `identical_to`: the model's earliest revision (training order) whose weights hash equals
    this run's, when that is another revision (None otherwise, or when the hash is unknown)."""
    first: dict[tuple[str, str], str] = {}
    for r in sorted(rows, key=lambda r: (revision_key(r["revision"]), r["run_id"])):
        if r.get("weights_sha256"):
            first.setdefault((r["model"], r["weights_sha256"]), r["revision"])
    for r in rows:
        earlier = first.get((r["model"], r.get("weights_sha256") or ""))
        r["identical_to"] = earlier if earlier and earlier != r["revision"] else None
    return rows


class Index:
    """Read-only access to the index (opened read-only, so any number of readers alongside no writer)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.con = connect_readonly(self.path)

    def close(self) -> None:
        self.con.close()

    def _rows(self, q: str, args: list | None = None) -> list[dict]:
        cur = self.con.execute(q, args or [])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def frame(self, view: str, **where):
        """A view (`spaces`, `transfer`, `task_accuracy`, `fits`) or table as a pandas DataFrame, filtered by
        column = value, e.g. `frame("transfer", model="pythia-160m", revision="step143000")`."""
        if view not in (*VIEW_NAMES, *TABLES):
            raise ValueError(f"no view or table {view!r}: use one of {', '.join((*VIEW_NAMES, *TABLES))}")
        cols = [d[0] for d in self.con.execute(f"SELECT * FROM {view} LIMIT 0").description]
        unknown = sorted(set(where) - set(cols))
        if unknown:
            raise ValueError(f"{view} has no column {unknown[0]!r} (columns: {', '.join(cols)})")
        cond = " AND ".join(f"{c} = ?" for c in where) or "TRUE"
        return self.con.execute(f"SELECT * FROM {view} WHERE {cond}", list(where.values())).df()

    def space(self, model: str, revision: str | None = None, kind: str = "transfer", params_hash: str | None = None):
        """One run's space as a task × task DataFrame (rows: task_a, the tuned task for transfer kinds).
        Refuses to mix runs: name the revision (and params_hash when `dvc exp` variants share a model@revision)."""
        where = {"model": model, "kind": kind}
        where |= {"revision": revision} if revision else {}
        where |= {"params_hash": params_hash} if params_hash else {}
        df = self.frame("spaces", **where)
        keys = df[["run", "params_hash"]].drop_duplicates()
        if len(keys) != 1:
            found = ", ".join(f"{r}#{h}" for r, h in keys.itertuples(index=False)) or "none"
            raise ValueError(f"{len(keys)} runs match {where} ({found}): give revision= and params_hash=")
        return df.pivot(index="task_a", columns="task_b", values="value")

    def find_run(self, ref: str) -> dict:
        """A run by run_id, `model@revision` or its index key (`model@revision#hash`, a prefix of the hash will do,
        or `model@revision#<experiment name>`); one clear line when none or several match."""
        runs = self.runs()
        label, _, exp = ref.partition("#")
        named = [r for r in runs if "#" in ref and r["label"] == label and r["experiment"] == exp]
        found = named or [
            r for r in runs
            if ref in (str(r["run_id"]), r["label"]) or r["index_key"].startswith(ref + "#")
            or ("#" in ref and r["index_key"].startswith(ref))
        ]  # fmt: skip
        if len(found) != 1:
            keys = ", ".join(r["index_key"] for r in (found or runs)) or "none indexed"
            what = "several runs match" if found else "no run matches"
            raise ValueError(f"{what} {ref!r}: use one of {keys}")
        return found[0]

    def metric(self, run_id: int) -> str:
        """The probing metric the run's transfer is measured in (accuracy or margin)."""
        row = self.con.execute(
            "SELECT json_extract_string(probe, '$.probing.metric') FROM runs WHERE run_id = ?", [run_id]
        ).fetchone()
        return (row and row[0]) or "accuracy"

    def counts(self) -> dict[str, int]:
        return {t: self.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}

    def runs(self) -> list[dict]:
        """Runs with their key metrics (Mantel r/p and within−between contrast of the transfer space), each
        model's checkpoints in training order; `identical_to` names an earlier revision with the same weights."""
        return mark_identical(self._rows(
            """
            SELECT r.run_id, r.index_key, r.label, r.model, r.scale, r.n_params, r.revision, r.step, r.experiment,
                   r.params_hash, r.created, r.weights_sha256, r.family, r.seed,
                   max(CASE WHEN a.metric = 'mantel_r' THEN a.value END) AS mantel_r,
                   max(CASE WHEN a.metric = 'mantel_p' THEN a.value END) AS mantel_p,
                   max(CASE WHEN a.metric = 'contrast' THEN a.value END) AS contrast,
                   max(CASE WHEN a.metric = 'reliability_sb' THEN a.value END) AS reliability
            FROM runs r LEFT JOIN analysis a ON a.run_id = r.run_id AND a.kind = 'transfer'
            GROUP BY ALL ORDER BY r.model, r.n_params, r.step NULLS LAST, r.run_id"""
        ))

    def tasks(self) -> list[dict]:
        return self._rows("SELECT task_id, task, phenomenon, paper_phenomenon, field FROM tasks ORDER BY task_id")

    def kinds(self, run_id: int) -> list[str]:
        rows = self.con.execute("SELECT DISTINCT kind FROM similarities WHERE run_id = ? ORDER BY kind", [run_id])
        return [r[0] for r in rows.fetchall()]

    def matrix(self, run_id: int, kind: str) -> tuple[list[str], np.ndarray]:
        """One T×T space (rows: the tuned task): long form with integer ids, scattered into NumPy in id order."""
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
        return self._rows(
            """
            SELECT t.task, t.phenomenon,
                   avg(CASE WHEN s.stage = 'eval1' THEN s.correct::INT END) AS acc_before,
                   avg(CASE WHEN s.stage = 'eval2' AND s.tuned_task_id = s.task_id THEN s.correct::INT END)
                       AS acc_after,
                   avg(CASE WHEN s.stage = 'eval1' THEN s.margin END) AS margin_before,
                   avg(CASE WHEN s.stage = 'eval2' AND s.tuned_task_id = s.task_id THEN s.margin END) AS margin_after
            FROM scores s JOIN tasks t ON t.task_id = s.task_id WHERE s.run_id = ?
            GROUP BY t.task_id, t.task, t.phenomenon ORDER BY t.task_id""",
            [run_id],
        )

    def examples(self, run_id: int, task: str, limit: int = 10) -> list[dict]:
        """Example eval1 pairs of a task with their margins (worst first: the informative ones)."""
        return self._rows(
            """SELECT s.pair_id, s.margin, s.correct, p.good, p.bad
               FROM scores s JOIN tasks t ON t.task_id = s.task_id
               LEFT JOIN pairs p ON p.task_id = s.task_id AND p.pair_id = s.pair_id
               WHERE s.run_id = ? AND s.stage = 'eval1' AND t.task = ? ORDER BY s.margin, s.pair_id LIMIT ?""",
            [run_id, task, limit],
        )

    def analysis(self, run_id: int) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for kind, metric, value in self.con.execute(
            "SELECT kind, metric, value FROM analysis WHERE run_id = ?", [run_id]
        ).fetchall():
            out.setdefault(kind, {})[metric] = value
        return out

    def analysis_settings(self, run_id: int) -> dict:
        """The settings the run was analysed with (empty when it has not been analysed)."""
        row = self.con.execute("SELECT analysis_settings FROM runs WHERE run_id = ?", [run_id]).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def settings(self, run_id: int) -> dict[str, object]:
        """The settings the run was computed with, flattened (`ftgd.lr`, `probing.metric`, `analysis.seed`…)."""
        row = self.con.execute(
            "SELECT probe, analysis_settings, prefix FROM runs WHERE run_id = ?", [run_id]
        ).fetchone()
        if not row:
            return {}
        return run_settings(json.loads(row[0]) if row[0] else {}, json.loads(row[1]) if row[1] else {}, row[2])

    def settings_diff(self, run_a: int, run_b: int) -> RunsDiff:
        """What distinguishes run A from run B besides their spaces: the settings that differ, or what does."""
        rows = {r["run_id"]: r for r in self._rows(
            "SELECT run_id, model, revision, params_hash, experiment FROM runs WHERE run_id IN (?, ?)", [run_a, run_b]
        )}  # fmt: skip
        a, b = ({**rows.get(i, {}), "settings": self.settings(i)} for i in (run_a, run_b))
        return diff_runs(a, b)

    def comparison(self, run_a: int, run_b: int, kind: str) -> dict | None:
        """The stored comparison of two runs (either order), as the analyze stage computed it."""
        rows = self._rows(
            """SELECT run_a, run_b, relation, r, p, p_floor, p_exact FROM comparisons
               WHERE kind = ? AND ((run_a = ? AND run_b = ?) OR (run_a = ? AND run_b = ?))""",
            [kind, run_a, run_b, run_b, run_a],
        )
        return rows[0] if rows else None

    def stability(self, run_id: int, kind: str) -> list[dict]:
        """The stability curve of a kind over the checkpoint series the run belongs to (training order):
        revision, correlation with the next and the last checkpoint, and that kind's within − between;
        `identical_to`: an earlier checkpoint of the series with the same weights."""
        rows = self._rows(
            """SELECT r.run_id, r.model, r.revision, r.step, r.weights_sha256, s.position, s.with_next, s.with_last,
                      s.contrast FROM stability s
               JOIN runs r ON r.run_id = s.run_id
               JOIN runs me ON me.run_id = ? AND me.model = r.model AND me.params_hash = r.params_hash
               WHERE s.kind = ? ORDER BY s.position""",
            [run_id, kind],
        )
        return mark_identical(rows)

    def seed_spread(self, run_id: int, kind: str) -> list[dict]:
        """The spread over seeds of the run's family (stats.seeds), per revision in training order: fit r and
        within − between (mean, SD), Spearman with the next checkpoint and between seeds (mean, SD); empty when
        the run's model has no other seeds."""
        return self._rows(
            """SELECT s.* FROM seed_spread s JOIN runs me ON me.run_id = ? AND me.family = s.family
               WHERE s.kind = ? ORDER BY s.position""",
            [run_id, kind],
        )


def load_space(db: str | Path, model: str, revision: str | None = None, kind: str = "transfer", **kw):
    """A task space from the index as a pandas DataFrame (for notebooks): `load_space(db, "pythia-160m",
    "step143000")`; see `Index.space`."""
    idx = Index(db)
    try:
        return idx.space(model, revision, kind, **kw)
    finally:
        idx.close()
