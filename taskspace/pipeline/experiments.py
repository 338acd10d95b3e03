"""`dvc exp show`, readable in a terminal: one row per experiment × run, the settings that differ between
experiments, and each run's headline metrics — instead of DVC's hundreds of columns (every derived `runs.*`
param, every run's metrics side by side, every dependency's hash)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

from taskspace import runs
from taskspace.errors import TaskspaceError

METRICS_FILE = str(runs.METRICS_FILE)  # as DVC names it in `dvc exp show`
HEADLINE = ("transfer_mantel_r", "transfer_mantel_p", "transfer_contrast", "transfer_reliability", "self_transfer",
            "lm_loss_rise")  # fmt: skip
# not settings a user chose (runs, data_files), not what is computed (executor), or already in the run label
# (models, tiny_models: which model and revision each row is)
DERIVED = ("runs", "data_files", "executor", "models", "tiny_models")


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
    measured = [name for name, data in entries if _metrics(data)] or [name for name, _ in entries]
    keys = sorted({k for name in measured for k in params[name]})
    differ = [k for k in keys if len({json.dumps(params[n].get(k), sort_keys=True) for n in measured}) > 1]
    rows = []
    for name, data in entries:
        metrics = _metrics(data)
        for run, values in metrics.items():
            rows.append({"experiment": name, **{k: params[name].get(k) for k in differ}, "run": run,
                         **{m: values.get(m) for m in HEADLINE}})  # fmt: skip
        if not metrics:
            rows.append({"experiment": name, **{k: params[name].get(k) for k in differ}, "run": "(not computed)"})
    return differ, rows


def _metrics(data: dict) -> dict:
    return ((data.get("metrics") or {}).get(METRICS_FILE) or {}).get("data") or {}


def short(value, width: int = 24) -> str:
    """A setting's value in a table cell: long lists by their length."""
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
