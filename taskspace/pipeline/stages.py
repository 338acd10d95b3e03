"""DVC stage bodies: each checks params.yaml, then reads and writes one run's folders (`taskspace.runs`).

Every stage validates the whole params.yaml before it loads anything, so a bad setting stops it before any
output is touched. Finished per-task work carries a stamp of the params it depends on (`params.STAGES`, the
same keys dvc.yaml lists), so a killed stage resumes where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from taskspace.blimp import data
from taskspace.config import FTGDConfig
from taskspace.errors import OutputError
from taskspace.io import atomic_write, write_json, write_npz, write_parquet
from taskspace.pipeline import settings as params
from taskspace.runs import DATA, Layout, Run, revision_step, splits_dir
from taskspace.stats.analysis import format_stat, paper_phenomenon, sentence_words

Say = Callable[[str], None]
SPLITS = DATA / "prepare" / "splits"


def splits(root: Path = SPLITS) -> tuple[pa.Table, pa.Table]:
    if not (root / "train.parquet").exists():
        raise OutputError(f"{root}/train.parquet missing: run `dvc repro prepare` (or `taskspace stage prepare`)")
    return pq.read_table(root / "train.parquet"), pq.read_table(root / "eval.parquet")


def task_meta(root: Path = SPLITS) -> dict[str, dict]:
    return {r["task"]: r for r in pq.read_table(root / "tasks.parquet").to_pylist()}


# ---- stages -------------------------------------------------------------------------------------------------


def stage_prepare(p: dict, say: Say = print) -> None:
    """Seeded train/eval splits of the selected tasks, and their metadata."""
    d = params.data_config(p)
    src = params.source(p)
    names = data.select_tasks(src, d.tasks, d.phenomena, d.fields)
    pairs = data.load_blimp(src, names)
    for seed in dict.fromkeys([d.seed, *params.probe_config(p).split_seeds]):  # the primary split, then others
        train, ev = data.split_pairs(pairs, d.n_train, d.n_eval, seed)
        write_parquet(train, splits_dir(DATA, seed, d.seed) / "train.parquet")
        write_parquet(ev, splits_dir(DATA, seed, d.seed) / "eval.parquet")
    train, ev = splits()
    meta = data.task_table(pairs)
    tasks = pa.table(
        {
            "task": [t for t, _, _ in meta],
            "phenomenon": [ph for _, ph, _ in meta],
            "paper_phenomenon": [paper_phenomenon(ph) for _, ph, _ in meta],
            "field": [f for _, _, f in meta],
        }
    )
    write_parquet(tasks, SPLITS / "tasks.parquet")
    say(f"prepared {len(names)} tasks: {train.num_rows} train / {ev.num_rows} eval pairs from {src}")


TINY_KEYS = {"steps", "save_every", "seed", "shape", "lr", "batch_size", "hidden", "layers"}


def stage_tiny(p: dict, name: str, say: Say = print) -> None:
    """A GPT-NeoX trained on the train split's grammatical sentences, saved as data/tiny/<name>/stepN."""
    from taskspace.lm import tiny

    cfg = (p.get("tiny_models") or {}).get(name)
    if cfg is None:
        raise params.ParamsError(f"params.yaml: no tiny model '{name}' under tiny_models")
    unknown = sorted(set(cfg) - TINY_KEYS)
    if unknown:
        raise params.ParamsError(f"params.yaml: unknown key 'tiny_models.{name}.{unknown[0]}'")
    train, ev = splits()
    vocab = pa.concat_tables([train, ev])  # every selected sentence is in the vocabulary: no unknown words
    v, s = tiny.sentences_for_tiny(vocab, train)
    saved = tiny.build_tiny(DATA / "tiny" / name, v, s, **{"steps": 300, "save_every": 100, **cfg})
    say(f"built tiny model '{name}': {', '.join(saved)}")


def load_run_model(p: dict, run: Run, say: Say, device: str | None = None):
    from taskspace.lm.models import load_model

    entry = params.model_entry(p, run.model)
    say(f"{run.label}: loading {entry['spec']}" + (f" on {device}" if device else ""))
    return load_model(
        str(entry["spec"]),
        revision=run.hub_revision,
        device=device,
        prefix=entry.get("prefix"),
        compile=bool(entry.get("compile", False)),
    )


def _run(p: dict, model: str, revision: str) -> Run:
    params.check(p)  # the whole params.yaml, before any model is loaded or output touched
    run = Run(model, revision)
    if run.stage_key not in p["runs"]:
        raise params.ParamsError(f"params.yaml: models.{model} has no revision '{revision}'")
    return run


@dataclass
class Replicate:
    """One replicate of a run: its folders, its FTGD settings (with its seed) and its split."""

    layout: Layout
    ftgd: FTGDConfig
    train: pa.Table
    eval: pa.Table


def replicates(p: dict, run: Run) -> list[Replicate]:
    """The run's replicates (probing.ftgd_seeds × split_seeds side by side; one when both are empty)."""
    ftgd, probe, d = params.ftgd_config(p, run.model), params.probe_config(p), params.data_config(p)
    seeds = probe.replicates(ftgd.seed, d.seed)
    return [
        Replicate(
            run.layout.replicate(r, len(seeds)),
            dataclasses.replace(ftgd, seed=fs),
            *splits(splits_dir(DATA, ss, d.seed)),
        )
        for r, (fs, ss) in enumerate(seeds)
    ]


def unit_name(run: Run, r: int, reps: list, control: bool = False) -> str:
    """How a stage names what it is doing: the run, its replicate when it has several, and the control."""
    return (run.label if len(reps) == 1 else f"{run.label} r{r}") + (" control" if control else "")


def progress_line(what: str, say: Say) -> Callable[[str, int, int], None]:
    return lambda _stage, i, n: say(f"{what} {i}/{n}")


def _units(rep: Replicate, control: bool) -> list[tuple[Layout, bool]]:
    """The replicate's own folders, then its control's when the run has one."""
    return [(rep.layout, False), (rep.layout.control, True)][: 1 + control]


def stage_eval(p: dict, model: str, revision: str, say: Say = print) -> None:
    from taskspace.lm.scoring import task_accuracy
    from taskspace.method.probing import run_eval1

    run = _run(p, model, revision)
    lm, pcfg, stamp = load_run_model(p, run, say), params.probe_config(p), params.stamp("eval", p, run.stage_key)
    reps = replicates(p, run)
    for r, rep in enumerate(reps):
        acc = task_accuracy(run_eval1(lm, rep.eval, rep.layout, pcfg, stamp))
        say(f"{unit_name(run, r, reps)}: eval1 mean accuracy {sum(a['accuracy'] for a in acc) / len(acc):.3f}")


def stage_ftgd(p: dict, model: str, revision: str, say: Say = print) -> None:
    """FTGD of every task of every replicate (and control): in this process, or on the executor's workers."""
    from taskspace.method.probing import ftgd_finished, recorded, run_ftgd

    run = _run(p, model, revision)
    pcfg, stamp = params.probe_config(p), params.stamp("ftgd", p, run.stage_key)
    reps = replicates(p, run)
    units = {(r, c): layout for r, rep in enumerate(reps) for layout, c in _units(rep, pcfg.control)}
    tasks = _tasks(reps[0].train)
    if params.executor_config(p).kind != "serial":
        pending = {u: [t for t in tasks if not ftgd_finished(lay, t, stamp, keep=True)] for u, lay in units.items()}
        _spread(p, run, "ftgd", pending, lambda u, t: recorded(units[u], t, stamp), say)
        left = [t for u, ts in pending.items() for t in ts if not ftgd_finished(units[u], t, stamp)]
        if left:  # a worker that exited without an error must not leave a hole only eval2 would notice
            raise OutputError(f"{run.label}: ftgd of {', '.join(left)} unfinished after the workers exited; rerun")
        for r, c in units:
            say(f"{unit_name(run, r, reps, c)}: tuned {len(pending[r, c])} of {len(tasks)} tasks on workers")
        return
    lm = load_run_model(p, run, say)
    for (r, c), layout in units.items():
        what, rep = unit_name(run, r, reps, c), reps[r]
        tuned = run_ftgd(
            lm, rep.train, layout, rep.ftgd, pcfg, stamp, progress_line(f"{what}: ftgd", say), keep=True, control=c
        )
        say(f"{what}: tuned {len(tuned)} of {len(tasks)} tasks (the others were finished: kept)")


def _tasks(table: pa.Table) -> list[str]:
    return list(dict.fromkeys(table.column("task").to_pylist()))


def _spread(p: dict, run: Run, stage: str, pending: dict, done: Callable[[tuple, str], bool], say: Say) -> None:
    """Hand the pending tasks ({(replicate, control): tasks}) to the executor's workers; `done` (cheap: read
    while they work) tells progress from the output folders."""
    from taskspace.pipeline import shards

    shards.spread(p, run, stage, pending, lambda: sum(done(u, t) for u, ts in pending.items() for t in ts), say)


def stage_probe(p: dict, model: str, revision: str, say: Say = print) -> None:
    """eval2 of every replicate (and control); with several, or a control, the run's spaces are their aggregate:
    the mean, per-cell intervals, reliability and the noise floor (taskspace.stats.reliability)."""
    from taskspace.method.probing import eval2_finished, run_eval2
    from taskspace.stats.reliability import aggregate
    from taskspace.stats.spaces import TaskSpaces

    run = _run(p, model, revision)
    pcfg = params.probe_config(p)
    stamps = params.stamp("probe", p, run.stage_key), params.stamp("ftgd", p, run.stage_key)
    replicas = replicates(p, run)
    units = {(r, c): layout for r, rep in enumerate(replicas) for layout, c in _units(rep, pcfg.control)}
    device = None
    if params.executor_config(p).kind != "serial":
        tasks = _tasks(replicas[0].eval)
        pending = {u: [t for t in tasks if not eval2_finished(lay, t, *stamps, keep=True)] for u, lay in units.items()}
        _spread(p, run, "probe", pending, lambda u, t: eval2_finished(units[u], t, *stamps), say)
        device = "cpu"  # what is left is the reduction: no accelerator memory taken from the workers
    lm = load_run_model(p, run, say, device)
    reps, controls, summaries = [], [], []
    for (r, c), layout in units.items():
        rep, what = replicas[r], unit_name(run, r, replicas, c)
        eval1 = pq.read_table(rep.layout.eval1)
        say_eval2 = progress_line(f"{what}: eval2", say)
        res = run_eval2(lm, rep.eval, eval1, layout, rep.ftgd, pcfg, *stamps, progress=say_eval2, keep=True)
        (controls if c else reps).append(TaskSpaces.load(layout.matrices))
        if not c:
            summaries.append(res["summary"])
    summary = {**summaries[0], "impact": impact(reps[0].tasks, reps, summaries)}
    if len(reps) > 1 or controls:
        spaces, quality = aggregate(reps, controls)
        spaces.save(run.layout.matrices)
        write_npz(run.layout.replicates_file, **{k: np.stack([r.matrices[k] for r in reps]) for k in reps[0].matrices})
        summary["replicates"] = quality
        summary["impact"]["self_transfer"] = float(np.nanmean(np.diag(spaces.matrices["transfer"])))
    write_json(summary, run.layout.summary)
    write_json(run_info(p, run, lm), run.layout.info)


def impact(tasks: list[str], reps: list, summaries: list[dict]) -> dict:
    """Low impact, per run: the own-task gain (the transfer diagonal) next to the LM-loss rise on the other
    tasks' grammatical sentences, averaged over tasks and replicates."""
    rise = [s["per_task"][t]["lm_loss_after"] - s["per_task"][t]["lm_loss_before"] for s in summaries for t in tasks]
    gain = [float(np.nanmean(np.diag(r.matrices["transfer"]))) for r in reps]
    return {"self_transfer": float(np.mean(gain)), "lm_loss_rise": float(np.mean(rise)), "lm_loss_rise_max": max(rise)}


def _share(part: int | None, whole: int | None) -> float | None:
    return part / whole if part is not None and whole else None


def run_info(p: dict, run: Run, lm) -> dict:
    entry = params.model_entry(p, run.model)
    return {
        "run": run.label,
        "model": run.model,
        "spec": str(entry["spec"]),
        "scale": str(entry.get("scale", "")),
        "n_params": lm.n_params,
        "revision": run.revision,
        "prefix": lm.prefix,
        "params_hash": params.settings_hash(p, run.stage_key),
        "experiment": os.environ.get("DVC_EXP_NAME", ""),
        "git_rev": params.git_rev(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def task_words() -> dict[str, set[str]]:
    """Each task's vocabulary over both splits: the lexical control a space should beat."""
    words: dict[str, set[str]] = {}
    for table in splits():
        for t, g, b in zip(*(table.column(c).to_pylist() for c in ("task", "good", "bad"))):
            words.setdefault(t, set()).update(sentence_words([g, b]))
    return words


def stage_analyze(p: dict, out: Path = DATA / "analyze", say: Say = print) -> dict:
    """Every run's fit to the hypothesis space, comparisons and stability (spaces.analyze) → analysis.json,
    metrics.json (one row per run, in training order) and plots/."""
    from taskspace.stats import spaces

    params.check(p)
    cfg = params.analysis_config(p)
    meta, words = task_meta(), task_words()
    series: dict[str, list[tuple[str, spaces.TaskSpaces]]] = {}
    summaries: dict[str, dict] = {}
    for run in params.runs_of(p):
        layout = run.layout
        if not layout.matrices.exists():
            raise OutputError(f"{layout.matrices} missing: run the probe stage for {run.label} first")
        key = run.index_key(json.loads(layout.info.read_text())["params_hash"])
        series.setdefault(run.model, []).append((run.revision, spaces.TaskSpaces.load(layout.matrices, key)))
        summaries[key] = json.loads(layout.summary.read_text()) if layout.summary.exists() else {}

    def report(s: spaces.TaskSpaces, fits: dict) -> None:
        t = fits["transfer"]
        say(
            f"{s.key.split('#')[0]}: transfer Mantel r={format_stat(t.mantel_r)} "
            f"p={format_stat(t.mantel_p, 'p')}, within−between={format_stat(t.contrast)}"
        )

    result = spaces.analyze(
        series,
        lambda tasks: spaces.groups_of(tasks, cfg.grouping, meta),
        words,
        lambda model, _: params.ftgd_config(p, model).sparsity,
        cfg,
        report,
        quality=lambda s: summaries.get(s.key, {}),
    )
    metrics = {
        key.split("#")[0]: {
            "transfer_mantel_r": f["transfer"].mantel_r,
            "transfer_mantel_p": f["transfer"].mantel_p,
            "transfer_p_floor": f["transfer"].p_floor,
            "transfer_contrast": f["transfer"].contrast,
            "gradient_mantel_r": f["gradient"].mantel_r,
            "sharing_contrast": f["sharing"].contrast,
            "transfer_reliability": f["transfer"].reliability_sb,
            "transfer_noise_floor": f["transfer"].noise_floor,
            "transfer_above_noise": _share(f["transfer"].cells_above_noise, f["transfer"].cells),
            "self_transfer": f["transfer"].self_transfer,
            "lm_loss_rise": f["transfer"].lm_loss_rise,
        }
        for key, f in result.fits.items()
    }
    write_plots(
        out / "plots", series, result, {t: m["phenomenon"] for t, m in meta.items()}, params.probe_config(p).metric
    )
    write_json(result.as_json(), out / "analysis.json")
    write_json(metrics, out / "metrics.json", sort_keys=False)  # runs in training order, as computed
    return result.as_json()


def write_plots(plots: Path, series: dict, result, groups: dict[str, str], metric: str) -> None:
    """DVC plot data: each model's last transfer space (heatmap data), its stability over checkpoints (one file
    per model, real training steps), and both as static images that `dvc plots show` renders offline."""
    from taskspace.report import export

    for model, runs in series.items():
        s = runs[-1][1]
        rows = [
            {"task_a": a, "task_b": b, "value": _num(s.matrices["transfer"][i, j])}
            for i, a in enumerate(s.tasks)
            for j, b in enumerate(s.tasks)
        ]
        write_csv(plots / "transfer" / f"{model}.csv", rows)
        title = f"{model}@{runs[-1][0]} (transfer: rows tuned on, columns evaluated on)"
        fig = export.space_figure(s.tasks, s.matrices["transfer"], groups, "transfer", metric, title)
        export.save_figure(fig, plots / "images" / f"{model}-transfer.png")
    for model, kinds in result.stability.items():
        st = kinds["transfer"]
        steps = [revision_step(r) for r in st.revisions]
        real = all(x is not None for x in steps)
        rows = [
            {
                "step": steps[i] if real else i,  # the checkpoint's position when revisions are not steps
                "revision": r,
                "with_next": (st.with_next + [1.0])[i],
                "with_last": st.with_last[i],
                "contrast": st.contrast[i],
            }
            for i, r in enumerate(st.revisions)
        ]
        write_csv(plots / "stability" / f"{model}.csv", rows)
        if len(rows) > 1:
            fig = export.stability_figure({model: rows}, "transfer", metric)
            export.save_figure(fig, plots / "images" / f"{model}-stability.png")


def _num(x) -> float | None:
    x = float(x)
    return None if x != x else x


def write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, lambda f: f.write_text(buf.getvalue()))
