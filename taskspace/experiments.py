"""`dvc exp show`, readable in a terminal: one row per experiment × run, the settings that differ between
experiments, and each run's headline metrics — instead of DVC's hundreds of columns (every derived `runs.*`
param, every run's metrics side by side, every dependency's hash)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

from taskspace.errors import TaskspaceError

METRICS_FILE = "data/analyze/metrics.json"
HEADLINE = ("transfer_mantel_r", "transfer_mantel_p", "transfer_contrast", "transfer_reliability", "self_transfer",
            "lm_loss_rise")  # fmt: skip
DERIVED = ("runs", "data_files", "executor")  # not settings a user chose (or, executor, not what is computed)


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """{"ftgd": {"lr": 1e-4}} → {"ftgd.lr": 1e-4}; lists stay values."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out |= flatten(v, key + ".")
        else:
            out[key] = v
    return out


def _entries(shown: list[dict]) -> Iterator[tuple[str, dict]]:
    """(name, data) of every commit and experiment in `dvc exp show --json`."""
    for commit in shown:
        if commit.get("data"):
            yield commit.get("name") or commit.get("rev", "")[:7], commit["data"]
        for ref in commit.get("experiments") or []:
            for rev in ref.get("revs") or []:
                if rev.get("data"):
                    yield rev.get("name") or ref.get("name") or rev.get("rev", "")[:7], rev["data"]


def exp_rows(shown: list[dict]) -> tuple[list[str], list[dict]]:
    """(the params that differ between experiments, one row per experiment × run with them and the headline
    metrics). Workspace first, as DVC lists it."""
    entries = list(_entries(shown))
    params = {
        name: {
            k: v
            for k, v in flatten((data.get("params") or {}).get("params.yaml", {}).get("data") or {}).items()
            if k.split(".")[0] not in DERIVED
        }
        for name, data in entries
    }
    keys = sorted({k for p in params.values() for k in p})
    differ = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in params.values()}) > 1]
    rows = []
    for name, data in entries:
        metrics = ((data.get("metrics") or {}).get(METRICS_FILE) or {}).get("data") or {}
        for run, values in metrics.items():
            rows.append({"experiment": name, **{k: params[name].get(k) for k in differ}, "run": run,
                         **{m: values.get(m) for m in HEADLINE}})  # fmt: skip
        if not metrics:
            rows.append({"experiment": name, **{k: params[name].get(k) for k in differ}, "run": "(no metrics)"})
    return differ, rows


def exp_show(dvc: str = "dvc", cwd: str = ".") -> list[dict]:
    res = subprocess.run([dvc, "exp", "show", "--json"], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        why = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise TaskspaceError(f"dvc exp show failed: {why}")
    return json.loads(res.stdout or "[]")
