"""DVC stage bodies: each reads params.yaml and writes `data/<stage>/<model>/<revision>/`.

Stages skip work whose outputs already carry the current settings (see probing's config stamps), so a killed
`dvc repro` re-run picks up where it stopped; DVC itself skips whole stage entries whose deps are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from taskspace import data
from taskspace.io import write_json, write_parquet, write_text
from taskspace.runs import revision_step

DATA = Path("data")
Say = Callable[[str], None]


class ParamsError(ValueError):
    """params.yaml is missing or lacks a key; the message names the key."""


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found; run from the project root (where dvc.yaml is)")
    p = yaml.safe_load(path.read_text()) or {}
    for key in ("data", "models", "ftgd", "probing", "analysis"):
        if key not in p:
            raise ParamsError(f"{path}: missing section '{key}' (see conf/config.yaml)")
    return p


def _check_keys(section: dict, known: set[str], name: str) -> None:
    unknown = sorted(set(section) - known)
    if unknown:
        raise ParamsError(f"params.yaml: unknown key '{name}.{unknown[0]}' (known: {', '.join(sorted(known))})")


def _config(cls, section: dict, name: str):
    _check_keys(section, {f.name for f in fields(cls)}, name)
    return cls(**section)


def ftgd_config(p: dict, model: str | None = None):
    """The `ftgd` section, with a model's own `ftgd` overrides on top (scales differ in a sensible lr)."""
    from taskspace.ftgd import FTGDConfig

    section = {**p["ftgd"], **((p["models"].get(model) or {}).get("ftgd") or {} if model else {})}
    return _config(FTGDConfig, section, f"models.{model}.ftgd" if model else "ftgd")


def probe_config(p: dict):
    from taskspace.probing import ProbeConfig

    return _config(ProbeConfig, p["probing"], "probing")


def model_entry(p: dict, name: str) -> dict:
    if name not in p["models"]:
        raise ParamsError(f"params.yaml: no model '{name}' under models (have: {', '.join(p['models'])})")
    entry = p["models"][name]
    if "spec" not in entry:
        raise ParamsError(f"params.yaml: models.{name} needs a 'spec' (hub id, folder, GGUF file or smollm2)")
    return entry


def revisions(entry: dict) -> list[str]:
    """A model's revisions in training order; `main` (or none listed) means the default weights."""
    from taskspace.runs import order_revisions

    return order_revisions([str(r) for r in entry.get("revisions") or ["main"]])


def run_key(model: str, revision: str) -> str:
    """A run's key in `runs` and its stage entries (`eval@<key>`): DVC splits stage names at the last '@' and
    parameter paths at dots, so neither may appear in it."""
    return f"{model}-{revision}".replace("@", "_").replace(".", "_")


def expand_runs(models: dict) -> dict[str, dict]:
    """One entry per model × revision, carrying everything that run depends on: what dvc.yaml's eval, ftgd and
    probe stages iterate over, so each run is its own stage entry that DVC caches and skips on its own. Hydra
    derives params.yaml's `runs` from `models` with this function (conf/hydra_plugins) at `dvc exp run`."""
    return {
        run_key(m, rev): {**{k: v for k, v in entry.items() if k != "revisions"}, "model": m, "revision": rev}
        for m, entry in models.items()
        for rev in revisions(entry)
    }


def check_runs(p: dict) -> None:
    """`runs` must be what `models` implies (a hand-edited params.yaml can leave it behind)."""
    want, have = expand_runs(p["models"]), p.get("runs") or {}
    if have == want:
        return
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing:
        what = f"missing {', '.join(missing)}"
    elif extra:
        what = f"extra {', '.join(extra)}"
    else:
        what = f"stale {', '.join(k for k in want if want[k] != have[k])}"
    raise ParamsError(
        f"params.yaml: `runs` does not match `models` ({what}); `dvc exp run` derives it, or after editing "
        "params.yaml by hand run `taskspace stage runs`"
    )


def source(p: dict) -> str:
    src = str(p["data"].get("source", "hub"))
    return data.default_source() if src == "auto" else src


NOT_RESULTS = ("revisions", "compile")  # a model entry's keys that do not change any one run's results


def params_hash(p: dict, model: str) -> str:
    """What determines a run's results: its model entry (spec, prefix, ftgd overrides…) and the data/ftgd/probing
    settings — not which other revisions are listed, so adding a checkpoint leaves the others' runs as they are."""
    entry = {k: v for k, v in p["models"][model].items() if k not in NOT_RESULTS}
    keyed = {"model": entry, **{k: p[k] for k in ("data", "ftgd", "probing")}}
    return hashlib.sha1(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:12]


def git_rev() -> str:
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        return os.environ["DVC_EXP_BASELINE_REV"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def splits(root: Path = DATA / "prepare") -> tuple[pa.Table, pa.Table]:
    d = root / "splits"
    if not (d / "train.parquet").exists():
        raise FileNotFoundError(f"{d}/train.parquet missing: run `dvc repro prepare` (or `taskspace stage prepare`)")
    return pq.read_table(d / "train.parquet"), pq.read_table(d / "eval.parquet")


# ---- stages -------------------------------------------------------------------------------------------------


def stage_prepare(p: dict, root: Path = DATA / "prepare", say: Say = print) -> None:
    """Seeded train/eval splits of the selected tasks (+ their metadata), and any tiny models to build."""
    from taskspace.analysis import paper_phenomenon

    d = p["data"]
    src = source(p)
    names = data.select_tasks(src, d.get("tasks") or [], d.get("phenomena") or [], d.get("fields") or [])
    pairs = data.load_blimp(src, names)
    train, ev = data.split_pairs(pairs, int(d["n_train"]), int(d["n_eval"]), int(d.get("seed", 0)))
    write_parquet(train, root / "splits" / "train.parquet")
    write_parquet(ev, root / "splits" / "eval.parquet")
    meta = data.task_table(pairs)
    tasks = pa.table(
        {
            "task": [t for t, _, _ in meta],
            "phenomenon": [ph for _, ph, _ in meta],
            "paper_phenomenon": [paper_phenomenon(ph) for _, ph, _ in meta],
            "field": [f for _, _, f in meta],
        }
    )
    write_parquet(tasks, root / "splits" / "tasks.parquet")
    say(f"prepared {len(names)} tasks: {train.num_rows} train / {ev.num_rows} eval pairs from {src}")
    for name, cfg in (p.get("tiny_models") or {}).items():
        from taskspace import tiny

        vocab = data.load_blimp(src, data.select_tasks(src))  # the whole vocabulary: no unknown words anywhere
        v, s = tiny.sentences_for_tiny(vocab, train)
        _check_keys(
            cfg, {"steps", "save_every", "seed", "shape", "lr", "batch_size", "hidden", "layers"}, f"tiny_models.{name}"
        )
        saved = tiny.build_tiny(root / "models" / name, v, s, **{"steps": 300, "save_every": 100, **cfg})
        say(f"built tiny model '{name}': {', '.join(saved)}")


def _each_revision(p: dict, model: str, revision: str | None, say: Say):
    """Load the model at one revision (a stage entry's run), or at each of its revisions in turn."""
    from taskspace.models import load_model

    entry = model_entry(p, model)
    known = revisions(entry)
    if revision is not None and revision not in known:
        raise ParamsError(f"params.yaml: models.{model} has no revision '{revision}' (revisions: {', '.join(known)})")
    for rev in [revision] if revision is not None else known:
        say(f"{model}@{rev}: loading {entry['spec']}")
        lm = load_model(
            str(entry["spec"]),
            revision=None if rev == "main" else rev,
            prefix=entry.get("prefix"),
            compile=bool(entry.get("compile", False)),
        )
        yield rev, lm


def stage_eval(p: dict, model: str, revision: str | None = None, say: Say = print) -> None:
    from taskspace.probing import run_eval1
    from taskspace.scoring import task_accuracy

    _, ev = splits()
    for rev, lm in _each_revision(p, model, revision, say):
        scores = run_eval1(lm, ev, DATA / "eval" / model / rev, probe_config(p))
        acc = task_accuracy(scores)
        say(f"{model}@{rev}: eval1 mean accuracy {sum(r['accuracy'] for r in acc) / len(acc):.3f}")


def stage_ftgd(p: dict, model: str, revision: str | None = None, say: Say = print) -> None:
    from taskspace.probing import run_ftgd

    train, _ = splits()
    for rev, lm in _each_revision(p, model, revision, say):
        run_ftgd(
            lm,
            train,
            DATA / "ftgd" / model / rev,
            ftgd_config(p, model),
            probe_config(p),
            progress=lambda stage, i, n, rev=rev: say(f"{model}@{rev}: ftgd {i}/{n}"),
        )


def stage_probe(p: dict, model: str, revision: str | None = None, say: Say = print) -> None:
    from taskspace.probing import run_eval2

    _, ev = splits()
    entry = model_entry(p, model)
    for rev, lm in _each_revision(p, model, revision, say):
        out = DATA / "probe" / model / rev
        eval1 = pq.read_table(DATA / "eval" / model / rev / "eval1.parquet")
        run_eval2(
            lm,
            ev,
            eval1,
            DATA / "ftgd" / model / rev,
            out,
            ftgd_config(p, model),
            probe_config(p),
            progress=lambda stage, i, n, rev=rev: say(f"{model}@{rev}: eval2 {i}/{n}"),
        )
        run = {
            "run_id": f"{model}@{rev}",
            "model": model,
            "spec": str(entry["spec"]),
            "scale": str(entry.get("scale", "")),
            "n_params": lm.n_params,
            "revision": rev,
            "prefix": lm.prefix,
            "params_hash": params_hash(p, model),
            "experiment": os.environ.get("DVC_EXP_NAME", ""),
            "git_rev": git_rev(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_json(run, out / "run.json")


def write_runs(path: str | Path = "params.yaml") -> dict:
    """Rewrite `runs` in a params file from its `models` (for a params.yaml edited by hand)."""
    path = Path(path)
    p = load_params(path)
    p["runs"] = expand_runs(p["models"])
    write_text(path, yaml.safe_dump(p, sort_keys=False, allow_unicode=True))
    return p["runs"]


def _groups(p: dict, tasks: list[str], meta: dict[str, dict]) -> list[str]:
    from taskspace import analysis as A

    how = str(p["analysis"].get("grouping", "phenomenon"))
    if how in ("phenomenon", "paper", "field"):
        col = {"phenomenon": "phenomenon", "paper": "paper_phenomenon", "field": "field"}[how]
        return [meta[t][col] for t in tasks]
    return A.groups_for(tasks, A.load_grouping(how))


def stage_analyze(p: dict, out: Path = DATA / "analyze", say: Say = print) -> dict:
    """Per run and kind: fit to the hypothesis space (Mantel), within−between contrast, lexical control; across
    runs: scale and checkpoint comparisons and stability curves. Writes analysis.json, metrics.json, plots/."""
    from taskspace import analysis as A
    from taskspace.probing import load_matrices

    cfg = p["analysis"]
    perms, seed, sym = int(cfg.get("permutations", 1000)), int(cfg.get("seed", 0)), bool(cfg.get("symmetric", True))
    train, ev = splits()
    meta = {r["task"]: r for r in pq.read_table(DATA / "prepare" / "splits" / "tasks.parquet").to_pylist()}
    words: dict[str, set[str]] = {}
    for table in (train, ev):
        for t, g, b in zip(*(table.column(c).to_pylist() for c in ("task", "good", "bad"))):
            words.setdefault(t, set()).update(A.sentence_words([g, b]))
    result: dict = {"runs": {}, "comparisons": [], "stability": {}, "settings": dict(cfg)}
    metrics: dict = {}
    series: dict[str, list[tuple[str, str, list[str], dict]]] = {}
    plots = out / "plots"
    for model, entry in p["models"].items():
        for rev in revisions(entry):
            d = DATA / "probe" / model / rev
            if not (d / "matrices.npz").exists():
                raise FileNotFoundError(f"{d}/matrices.npz missing: run the probe stage for {model}@{rev} first")
            run = json.loads((d / "run.json").read_text())
            key = f"{run['run_id']}#{run['params_hash']}"
            tasks, mats = load_matrices(d / "matrices.npz")
            sparsity = ftgd_config(p, model).sparsity
            kinds = analyze_run(tasks, mats, _groups(p, tasks, meta), words, sparsity, perms, seed, sym)
            result["runs"][key] = kinds
            metrics[f"{model}@{rev}"] = {
                "transfer_mantel_r": kinds["transfer"]["mantel_r"],
                "transfer_mantel_p": kinds["transfer"]["mantel_p"],
                "transfer_contrast": kinds["transfer"]["contrast"],
                "gradient_mantel_r": kinds["gradient"]["mantel_r"],
                "sharing_contrast": kinds["sharing"]["contrast"],
            }
            series.setdefault(model, []).append((key, rev, tasks, mats))
            say(
                f"{model}@{rev}: transfer Mantel r={_fmt(kinds['transfer']['mantel_r'])} "
                f"p={_fmt(kinds['transfer']['mantel_p'])}, within−between={_fmt(kinds['transfer']['contrast'])}"
            )
        key, rev, tasks, mats = series[model][-1]
        _write_matrix_csv(plots / "transfer" / f"{model}.csv", tasks, mats["transfer"])
    result["comparisons"] = _comparisons(series, perms, seed)
    result["stability"] = series_stability(series)
    rows = []
    for model, runs in series.items():
        if model in result["stability"]:
            st = result["stability"][model]["transfer"]
            rows += [
                {
                    "model": model,
                    "step": revision_step(r) if revision_step(r) is not None else i,
                    "revision": r,
                    "with_next": (st["with_next"] + [1.0])[i],
                    "with_last": st["with_last"][i],
                    "contrast": result["runs"][runs[i][0]]["transfer"]["contrast"],
                }
                for i, r in enumerate(st["revisions"])
            ]
    _write_csv(
        plots / "stability.csv",
        rows or [{"model": "", "step": 0, "revision": "", "with_next": None, "with_last": None, "contrast": None}],
    )
    write_json(result, out / "analysis.json")
    write_json(metrics, out / "metrics.json", sort_keys=False)  # runs in training order, as computed
    return result


def analyze_run(
    tasks: list[str],
    mats: dict,
    groups: list[str],
    words: dict[str, set[str]],
    sparsity: float,
    permutations: int = 1000,
    seed: int = 0,
    symmetric: bool = True,
) -> dict:
    """Every kind of one run's task spaces against the hypothesis space, with the lexical control."""
    from taskspace import analysis as A

    lexical = A.lexical_overlap([words.get(t, set()) for t in tasks])
    kinds = {}
    for kind in ("transfer", "transfer_norm", "gradient", "sharing"):
        m = np.nan_to_num(mats[kind], nan=0.0)  # a NaN row (zero diagonal) carries no transfer information
        kinds[kind] = A.summarize(m, groups, lexical, permutations, seed, symmetric)
    chance = A.jaccard_chance(sparsity)
    kinds["sharing"].update(
        within_vs_chance=_ratio(kinds["sharing"]["within"], chance),
        between_vs_chance=_ratio(kinds["sharing"]["between"], chance),
    )
    return kinds


def series_stability(series: dict) -> dict:
    """Per model with ≥ 2 revisions over the same tasks: stability curves of each kind."""
    from taskspace import analysis as A

    out: dict = {}
    for model, runs in series.items():
        if len(runs) > 1 and len({tuple(r[2]) for r in runs}) == 1:
            for kind in ("transfer", "gradient", "sharing"):
                st = A.stability([np.nan_to_num(r[3][kind]) for r in runs])
                out.setdefault(model, {})[kind] = {
                    "revisions": [r[1] for r in runs],
                    "with_next": st.with_next,
                    "with_last": st.with_last,
                }
    return out


def _comparisons(series: dict, perms: int, seed: int) -> list[dict]:
    """Consecutive checkpoints of a model, and the last checkpoints of each pair of models (scales)."""
    from taskspace import analysis as A

    pairs = [(a, b, "checkpoint") for runs in series.values() for a, b in zip(runs, runs[1:])]
    last = [runs[-1] for runs in series.values()]
    pairs += [(a, b, "scale") for i, a in enumerate(last) for b in last[i + 1 :]]
    out = []
    for a, b, relation in pairs:
        if a[2] != b[2]:
            continue  # different task sets cannot be compared entry by entry
        for kind in ("transfer", "gradient", "sharing"):
            c = A.compare_spaces(
                np.nan_to_num(a[3][kind]), np.nan_to_num(b[3][kind]), a[2], permutations=perms, seed=seed
            )
            out.append(
                {
                    "a": a[0],
                    "b": b[0],
                    "kind": kind,
                    "relation": relation,
                    "r": _num(c.r),
                    "p": _num(c.p),
                    "most_changed": [[t, float(v)] for t, v in c.most_changed],
                }
            )
    return out


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def _ratio(x, chance: float):
    return None if x is None or not chance else float(x) / chance


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _write_matrix_csv(path: Path, tasks: list[str], m: np.ndarray) -> None:
    _write_csv(
        path,
        [
            {"task_a": a, "task_b": b, "value": _num(float(m[i, j]))}
            for i, a in enumerate(tasks)
            for j, b in enumerate(tasks)
        ],
    )


def _write_csv(path: Path, rows: list[dict]) -> None:
    import csv
    import io

    from taskspace.io import atomic_write

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, lambda f: f.write_text(buf.getvalue()))


def compose_params(overrides: list[str] | None = None, out: str | Path = "params.yaml", conf: str = "conf") -> Path:
    """Write params.yaml from conf/ the way `dvc exp run -S …` does (Hydra), e.g. overrides=["profile=offline"]."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(out, str(Path(conf).resolve()), None, "config", str(Path(conf).resolve()), overrides or [])
    return Path(out)
