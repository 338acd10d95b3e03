"""DVC stage bodies: each takes the checked `Settings` and one run, and reads and writes that run's folders
(`taskspace.runs`).

The CLI builds `Settings` once, before any stage body runs, so a bad setting stops a stage before any output is
touched. Finished per-task work carries a stamp of the params it depends on (`dvcfile.STAGES`, the same keys
dvc.yaml lists), so a killed stage resumes where it stopped.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from taskspace.blimp import data
from taskspace.blimp.words import task_words
from taskspace.errors import OutputError
from taskspace.io import atomic_write, parquet_stamp, read_json, read_parquet, write_json, write_npz, write_parquet
from taskspace.pipeline import shards
from taskspace.pipeline.replicates import (
    PREPARE,
    Say,
    load_run_model,
    progress_line,
    replicates,
    split_files,
    splits,
    step_line,
    unit_name,
)
from taskspace.pipeline.settings import Settings, git_rev, preflight
from taskspace.report.labels import fit_summary
from taskspace.runs import (
    ANALYZE,
    DATA,
    MODEL_CODE,
    Run,
    revision_step,
    splits_dir,
    tasks_file,
    tiny_dir,
    weights,
)

EVAL1 = "eval1"  # a replicate's one unit of eval work, as the executor's workers are handed it


def task_meta() -> dict[str, dict]:
    return {r["task"]: r for r in read_parquet(tasks_file(), PREPARE).to_pylist()}


# ---- stages -------------------------------------------------------------------------------------------------


def stage_check(s: Settings) -> str:
    """`taskspace check`: preflight (every setting, run, task and model folder; raises the first problem), then
    the runs of one model whose weights are identical (flagged, not refused: a published branch may repeat one)."""
    summary = preflight(s)
    same = identical_weights(s)
    return summary + (f"; identical weights: {', '.join(f'{a} = {b}' for a, b in same.items())}" if same else "")


def identical_weights(s: Settings) -> dict[str, str]:
    """Run label → the label of the same model's earlier revision with identical weights, for models with several
    revisions in local folders that exist now (the tiny model's, `models/…`): hashing those is cheap and cached, and
    nothing is downloaded (hub and bundled models are left to the analysis, which hashes what the runs loaded)."""
    from taskspace.lm.weights import files_sha256, weight_files
    from taskspace.stats.spaces import identical_to

    out: dict[str, str] = {}
    for name, entry in s.models.items():
        revs = [run.revision for run in s.runs if run.model == name]  # training order
        folders = [weights(entry.spec, rev) for rev in revs]
        if len(revs) < 2 or any(f == MODEL_CODE or not Path(f).is_dir() for f in folders):
            continue
        hashes = [files_sha256(fs) if (fs := weight_files(f)) else None for f in folders]
        for rev, j in zip(revs, identical_to(hashes)):
            if j is not None:
                out[Run(name, rev).label] = Run(name, revs[j]).label
    return out


def stage_prepare(s: Settings, say: Say = print) -> None:
    """Seeded train/eval splits of the selected tasks, and their metadata."""
    d, src = s.data, s.source
    names = data.select_tasks(src, d.tasks, d.phenomena, d.fields)
    pairs = data.load_blimp(src, names)
    for seed in dict.fromkeys([d.seed, *s.probe.split_seeds]):  # the primary split, then others
        train, ev = data.split_pairs(pairs, d.n_train, d.n_eval, seed)
        for table, path in zip((train, ev), split_files(splits_dir(DATA, seed, d.seed))):
            write_parquet(table, path)
    train, ev = splits()
    write_parquet(data.task_table(pairs), tasks_file())
    say(f"prepared {len(names)} tasks: {train.num_rows} train / {ev.num_rows} eval pairs from {src}")


def stage_tiny(s: Settings, name: str, say: Say = print) -> None:
    """A GPT-NeoX trained on the train split's grammatical sentences, saved as data/tiny/<name>/stepN."""
    from taskspace.lm import tiny

    cfg = s.tiny(name)
    train, ev = splits()
    vocab = pa.concat_tables([train, ev])  # every selected sentence is in the vocabulary: no unknown words
    v, sentences = tiny.sentences_for_tiny(vocab, train)
    saved = tiny.build_tiny(tiny_dir(name), v, sentences, **cfg.build_args())
    say(f"built tiny model '{name}': {', '.join(saved)}")


def stage_eval(s: Settings, run: Run, say: Say = print) -> None:
    """eval1 of every replicate: in this process, or on the executor's workers (where eval2 will run, so both are
    computed on the same kind of device in the same dtype)."""
    from taskspace.lm.scoring import task_accuracy
    from taskspace.method.probing import run_eval1

    stamp = s.stamp("eval", run)
    reps = replicates(s, run)
    if s.executor.kind != "serial":
        pending = {(r, False): [EVAL1] for r, rep in enumerate(reps) if parquet_stamp(rep.layout.eval1) != stamp}
        _spread(s, run, "eval", pending, lambda u, _t: parquet_stamp(reps[u[0]].layout.eval1) == stamp, say)
        left = [unit_name(run, r, reps) for r, rep in enumerate(reps) if parquet_stamp(rep.layout.eval1) != stamp]
        if left:
            raise OutputError(f"eval1 of {', '.join(left)} unfinished after the workers exited; rerun")
        scores = [pq.read_table(rep.layout.eval1) for rep in reps]
    else:
        lm = load_run_model(s, run, say)
        scores = [run_eval1(lm, rep.eval, rep.layout, s.probe, stamp) for rep in reps]
    for r, table in enumerate(scores):
        acc = task_accuracy(table)
        say(f"{unit_name(run, r, reps)}: eval1 mean accuracy {sum(a['accuracy'] for a in acc) / len(acc):.3f}")


def stage_ftgd(s: Settings, run: Run, say: Say = print) -> None:
    """FTGD of every task of every replicate (and control): in this process, or on the executor's workers."""
    from taskspace.method.probing import ftgd_finished, recorded, run_ftgd

    stamp = s.stamp("ftgd", run)
    reps = replicates(s, run)
    units = {(r, c): layout for r, rep in enumerate(reps) for layout, c in rep.units(s.probe.control)}
    tasks = _tasks(reps[0].train)
    if s.executor.kind != "serial":
        pending = {u: [t for t in tasks if not ftgd_finished(lay, t, stamp, keep=True)] for u, lay in units.items()}
        _spread(s, run, "ftgd", pending, lambda u, t: recorded(units[u], t, stamp), say)
        left = [t for u, ts in pending.items() for t in ts if not ftgd_finished(units[u], t, stamp)]
        if left:  # a worker that exited without an error must not leave a hole only eval2 would notice
            raise OutputError(f"{run.label}: ftgd of {', '.join(left)} unfinished after the workers exited; rerun")
        for r, c in units:
            say(f"{unit_name(run, r, reps, c)}: tuned {len(pending[r, c])} of {len(tasks)} tasks on workers")
        return
    lm = load_run_model(s, run, say)
    for (r, c), layout in units.items():
        what, rep = unit_name(run, r, reps, c), reps[r]
        tuned = run_ftgd(
            lm, rep.train, layout, rep.ftgd, s.probe, stamp, progress_line(f"{what}: ftgd", say), keep=True, control=c
        )
        say(f"{what}: tuned {len(tuned)} of {len(tasks)} tasks (the others were finished: kept)")


def _tasks(table: pa.Table) -> list[str]:
    return list(dict.fromkeys(table.column("task").to_pylist()))


def _spread(s: Settings, run: Run, stage: str, pending: dict, done: Callable[[tuple, str], bool], say: Say) -> None:
    """Hand the pending tasks ({(replicate, control): tasks}) to the executor's workers; `done` (cheap: read
    while they work) tells progress from the output folders."""
    shards.spread(s, run, stage, pending, lambda: sum(done(u, t) for u, ts in pending.items() for t in ts), say)


def stage_probe(s: Settings, run: Run, say: Say = print) -> None:
    """eval2 of every replicate (and control); with several, or a control, the run's spaces are their aggregate:
    the mean, per-cell intervals, reliability and the noise floor (taskspace.stats.reliability)."""
    from taskspace.method.paired import cell_space
    from taskspace.method.probing import eval2_finished, run_eval2
    from taskspace.stats.reliability import aggregate
    from taskspace.stats.spaces import TaskSpaces

    stamps = s.stamp("eval2", run), s.stamp("ftgd", run)
    replicas = replicates(s, run)
    units = {(r, c): layout for r, rep in enumerate(replicas) for layout, c in rep.units(s.probe.control)}
    device, exact = None, s.probe.transfer != "linear"
    if s.executor.kind != "serial" and exact:  # first order alone is T gradients: done below, in this process
        tasks = _tasks(replicas[0].eval)
        pending = {u: [t for t in tasks if not eval2_finished(lay, t, *stamps, keep=True)] for u, lay in units.items()}
        _spread(s, run, "probe", pending, lambda u, t: eval2_finished(units[u], t, *stamps), say)
        device = "cpu"  # what is left is the reduction: no accelerator memory taken from the workers
    lm = load_run_model(s, run, say, device)
    reps, controls, summaries, changes = [], [], [], {False: [], True: []}
    for (r, c), layout in units.items():
        rep, what = replicas[r], unit_name(run, r, replicas, c)
        eval1 = read_parquet(rep.layout.eval1, f"rerun `dvc repro -f eval@{run.stage_key}`")
        say_step = step_line(what, say)
        if s.executor.kind == "serial" and exact:
            tasks = _tasks(rep.eval)
            kept = sum(eval2_finished(layout, t, *stamps, keep=True) for t in tasks)
            say(f"{what}: eval2 of {kept} of {len(tasks)} tasks finished earlier: kept")
        res = run_eval2(lm, rep.eval, eval1, layout, rep.ftgd, s.probe, *stamps, progress=say_step, keep=True)
        (controls if c else reps).append(TaskSpaces.load(layout.matrices))
        changes[c].append(res["pair_changes"])
        if not c:
            summaries.append(res["summary"])
    summary = {**summaries[0], "impact": impact(reps[0].tasks, reps, summaries)}
    if len(reps) > 1 or controls:
        spaces, quality = aggregate(reps, controls)
        if changes[False][0] is not None:  # each cell tested on every replicate's pairs, against its control
            spaces.matrices |= cell_space(changes[False], changes[True], s.probe.cell_permutations)
        spaces.save(run.layout.matrices)
        write_npz(run.layout.replicates_file, **{k: np.stack([r.matrices[k] for r in reps]) for k in reps[0].matrices})
        summary["replicates"] = quality
        if "transfer" in spaces.matrices:
            summary["impact"]["self_transfer"] = float(np.nanmean(np.diag(spaces.matrices["transfer"])))
    write_json(summary, run.layout.summary)
    write_json(run_info(s, run, lm), run.layout.info)


def impact(tasks: list[str], reps: list, summaries: list[dict]) -> dict:
    """Low impact, per run: the own-task gain (the transfer diagonal) next to the LM-loss rise on the other
    tasks' grammatical sentences, averaged over tasks and replicates. Both need eval2: none with first-order
    transfer alone."""
    if "transfer" not in reps[0].matrices:
        return {"self_transfer": None, "lm_loss_rise": None, "lm_loss_rise_max": None}
    rise = [s["per_task"][t]["lm_loss_after"] - s["per_task"][t]["lm_loss_before"] for s in summaries for t in tasks]
    gain = [float(np.nanmean(np.diag(r.matrices["transfer"]))) for r in reps]
    return {"self_transfer": float(np.mean(gain)), "lm_loss_rise": float(np.mean(rise)), "lm_loss_rise_max": max(rise)}


def _share(part: int | None, whole: int | None) -> float | None:
    return part / whole if part is not None and whole else None


def run_info(s: Settings, run: Run, lm) -> dict:
    from taskspace.lm.weights import weights_sha256

    entry = s.model(run.model)
    return {
        "run": run.label,
        "model": run.model,
        "spec": entry.spec,
        "scale": entry.scale,
        "family": entry.family,  # seeds of one model share it (runs.expand_seeds)
        "seed": entry.seed,
        "n_params": lm.n_params,
        "revision": run.revision,
        "weights_sha256": weights_sha256(lm),  # checkpoints serving the same weights are flagged by the analysis
        "prefix": lm.prefix,
        "params_hash": s.settings_hash(run),
        "experiment": os.environ.get("DVC_EXP_NAME", ""),
        "git_rev": git_rev(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def stage_analyze(s: Settings, out: Path = ANALYZE, say: Say = print) -> dict:
    """Every run's fit to the hypothesis space, comparisons and stability (spaces.analyze) → analysis.json,
    metrics.json (one row per run, in training order) and plots/."""
    from taskspace.stats import spaces
    from taskspace.stats.seeds import seed_line

    cfg = s.analysis
    meta, words = task_meta(), task_words(splits())
    series: dict[str, list[tuple[str, spaces.TaskSpaces]]] = {}
    summaries: dict[str, dict] = {}
    hashes: dict[str, str | None] = {}  # index key → weights hash (None: a run.json from before it was recorded)
    for run in s.runs:
        layout = run.layout
        if not layout.matrices.exists():
            raise OutputError(f"{layout.matrices} missing: run the probe stage for {run.label} first")
        probe_fix = f"rerun `dvc repro -f probe@{run.stage_key}`"
        info = read_json(layout.info, probe_fix)
        key = run.index_key(info["params_hash"])
        hashes[key] = info.get("weights_sha256")
        series.setdefault(run.model, []).append((run.revision, spaces.TaskSpaces.load(layout.matrices, key)))
        summaries[key] = read_json(layout.summary, probe_fix) if layout.summary.exists() else {}

    def report(s: spaces.TaskSpaces, fits: dict) -> None:
        kind = "transfer" if "transfer" in fits else "transfer_linear"
        say(f"{s.key.split('#')[0]}: {kind} {fit_summary(fits[kind])}")

    result = spaces.analyze(
        series,
        lambda tasks: spaces.groups_of(tasks, cfg.grouping, meta),
        words,
        lambda model, _: s.ftgd(model).sparsity,
        cfg,
        report,
        quality=lambda s: summaries.get(s.key, {}),
        weights=lambda s: hashes.get(s.key),
        family=lambda m: (s.model(m).family, s.model(m).seed),
    )
    for name, kinds in result.seeds.items():
        say(seed_line(name, kinds))
    same = identical_runs(series, hashes)
    for label, earlier in same.items():
        say(f"{label}: weights identical to {earlier}'s (its spaces differ only by tuning noise)")
    metrics = {
        key.split("#")[0]: run_metrics(f, result.linear_agreement.get(key), result.cells.get(key, {}))
        | {"identical_weights_to": same.get(key.split("#")[0])}
        for key, f in result.fits.items()
    }
    write_plots(
        out / "plots", series, result, {t: m["phenomenon"] for t, m in meta.items()}, s.probe.metric
    )
    write_json(result.as_json(), out / "analysis.json")
    write_json(metrics, out / "metrics.json", sort_keys=False)  # runs in training order, as computed
    return result.as_json()


def identical_runs(series: dict, hashes: dict[str, str | None]) -> dict[str, str]:
    """Run label → the label of the model's earlier checkpoint (training order) with the same weights hash."""
    from taskspace.stats.spaces import identical_to

    out = {}
    for model, runs in series.items():
        for (rev, _), j in zip(runs, identical_to([hashes.get(s.key) for _, s in runs])):
            if j is not None:
                out[f"{model}@{rev}"] = f"{model}@{runs[j][0]}"
    return out


def run_metrics(f: dict, linear: dict | None, cells: dict) -> dict:
    """metrics.json's row of one run (`dvc exp show` columns): transfer's fit, reliability and noise floor, the share
    of its cells significant on their own pairs (BH q < 0.05), the other spaces' headline fits, and first-order
    transfer's agreement with exact (where the run has both)."""
    from taskspace.stats.spaces import Fit

    empty = Fit(None, None, None, None, None, None)  # a kind the run does not have: every figure missing
    t, lin = f.get("transfer", empty), f.get("transfer_linear", empty)
    return {
        "transfer_mantel_r": t.mantel_r,
        "transfer_mantel_p": t.mantel_p,
        "transfer_p_floor": t.p_floor,
        "transfer_contrast": t.contrast,
        "gradient_mantel_r": f["gradient"].mantel_r,
        "sharing_contrast": f["sharing"].contrast,
        "transfer_reliability": t.reliability_sb,
        "transfer_noise_floor": t.noise_floor,
        "transfer_above_noise": _share(t.cells_above_noise, t.cells),
        "transfer_cells_q05": _share(cells.get("cells_q05"), cells.get("cells_tested")),
        "self_transfer": t.self_transfer,
        "lm_loss_rise": t.lm_loss_rise,
        "linear_mantel_r": lin.mantel_r,
        "linear_pearson": (linear or {}).get("pearson"),
        "linear_spearman": (linear or {}).get("spearman"),
    }


def write_plots(plots: Path, series: dict, result, groups: dict[str, str], metric: str) -> None:
    """DVC plot data: each model's last transfer space (heatmap data), its stability over checkpoints (one file
    per model, real training steps), and both as static images that `dvc plots show` renders offline."""
    from taskspace.report import export

    for model, runs in series.items():
        s = runs[-1][1]
        kind = "transfer" if "transfer" in s.matrices else "transfer_linear"  # first order alone: its screen
        rows = [
            {"task_a": a, "task_b": b, "value": _num(s.matrices[kind][i, j])}
            for i, a in enumerate(s.tasks)
            for j, b in enumerate(s.tasks)
        ]
        write_csv(plots / "transfer" / f"{model}.csv", rows)
        title = f"{model}@{runs[-1][0]} ({kind}: rows tuned on, columns evaluated on)"
        fig = export.space_figure(s.tasks, s.matrices[kind], groups, kind, metric, title)
        export.save_figure(fig, plots / "images" / f"{model}-transfer.png")
    for model, kinds in result.stability.items():
        st = kinds.get("transfer") or kinds.get("transfer_linear")
        if st is None:
            continue
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
