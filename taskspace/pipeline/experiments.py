"""`dvc exp show`, readable in a terminal: one row per experiment × run, the settings that differ between
experiments, and each run's headline metrics — instead of DVC's hundreds of columns (every derived `runs.*`
param, every run's metrics side by side, every dependency's hash)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

from taskspace import runs
from taskspace.errors import TaskspaceError
from taskspace.index.settings_diff import differing, flatten

METRICS_FILE = str(runs.METRICS_FILE)  # as DVC names it in `dvc exp show`
HEADLINE = ("transfer_mantel_r", "transfer_mantel_p", "transfer_contrast", "transfer_reliability", "self_transfer",
            "lm_loss_rise")  # fmt: skip
# not settings a user chose (runs, data_files), not what is computed (executor), or which model a row is (tiny
# models are built from their entry: their name in the run label says which)
DERIVED = ("runs", "data_files", "executor", "tiny_models")
# which model and revisions an entry of `models` is: the run label says it; the rest (its own `ftgd:` overrides,
# `prefix`…) are settings, shown as `models.<name>.ftgd.lr`
MODEL_IDENTITY = ("spec", "scale", "revisions", "seeds", "seed", "family")


def settings(params: dict) -> dict[str, object]:
    """One experiment's params.yaml as the settings `exps` compares: flattened, DERIVED sections left out, each
    model entry by its own settings only."""
    out = flatten({k: v for k, v in params.items() if k not in (*DERIVED, "models")})
    for name, entry in (params.get("models") or {}).items():
        if isinstance(entry, dict):
            own = {k: v for k, v in entry.items() if k not in MODEL_IDENTITY}
            out |= {k: v for k, v in flatten(own, f"models.{name}.").items() if v != {}}
    return out


def differ(params: list[dict]) -> list[str]:
    """The settings that differ between experiments (their params.yaml): shared sections over all of them, a
    model's own settings only over the experiments that have that model (one without it has no such rows)."""
    flat = [settings(p) for p in params]
    shared = differing([{k: v for k, v in f.items() if not k.startswith("models.")} for f in flat])
    per_model = []
    for name in sorted({m for p in params for m in (p.get("models") or {})}):
        having = [f for f, p in zip(flat, params) if name in (p.get("models") or {})]
        per_model += differing([{k: v for k, v in f.items() if k.startswith(f"models.{name}.")} for f in having])
    return shared + per_model


def _entries(shown: list[dict]) -> Iterator[tuple[str, dict]]:
    """(name, data) of every commit and experiment in `dvc exp show --json`."""
    for commit in shown:
        if commit.get("data"):
            yield commit.get("name") or _rev(commit.get("rev", "")), commit["data"]
        for ref in commit.get("experiments") or []:
            for rev in ref.get("revs") or []:
                if rev.get("data"):
                    yield rev.get("name") or ref.get("name") or _rev(rev.get("rev", "")), rev["data"]


def _rev(rev: str) -> str:
    """A commit by its short hash; `workspace` as it is."""
    return rev[:7] if len(rev) == 40 else rev


def exp_rows(shown: list[dict]) -> tuple[list[str], list[dict]]:
    """(the params that differ between experiments, one row per experiment × run with them and the headline
    metrics). Workspace first, as DVC lists it; a setting an experiment lacks is None."""
    entries = list(_entries(shown))
    raw = {name: (data.get("params") or {}).get("params.yaml", {}).get("data") or {} for name, data in entries}
    params = {name: settings(p) for name, p in raw.items()}
    measured = [name for name, data in entries if _metrics(data)] or [name for name, _ in entries]
    keys = differ([raw[n] for n in measured])
    rows = []
    for name, data in entries:
        metrics = _metrics(data)
        for run, values in metrics.items():
            rows.append({"experiment": name, **{k: params[name].get(k) for k in keys}, "run": run,
                         **{m: values.get(m) for m in HEADLINE}})  # fmt: skip
        if not metrics:
            rows.append({"experiment": name, **{k: params[name].get(k) for k in keys}, "run": "(not computed)"})
    return keys, rows


def _metrics(data: dict) -> dict:
    return ((data.get("metrics") or {}).get(METRICS_FILE) or {}).get("data") or {}


def short(value, width: int = 24) -> str:
    """A setting's value in a table cell: long lists by their length, one not set (None) as —."""
    if value is None:
        return "—"
    if isinstance(value, list) and len(json.dumps(value)) > width:
        return f"[{len(value)} items]"
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def exp_show(dvc: str = "dvc", cwd: str = ".") -> list[dict]:
    res = subprocess.run([dvc, "exp", "show", "--json"], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        why = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise TaskspaceError(f"dvc exp show failed: {why}")
    return json.loads(res.stdout or "[]")
