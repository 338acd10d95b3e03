"""Similarity probing → task spaces (method.md, "Similarity probing").

eval1 on every task; for each task i: gradient differential g_i and FTGD footprint, tune, eval2 on every task
with the delta applied to the one loaded base model, then remove it. Three T×T spaces come out:
transfer (eval2_i[j] − eval1[j], raw and diagonal-normalised), gradient similarity (cos(g_i, g_j)) and
parameter sharing (Jaccard of footprints). Each finished task is written to `OUT/tasks/<task>/` before the next
starts, so an interrupted probe resumes where it stopped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from taskspace.config import FTGDConfig, ProbeConfig
from taskspace.errors import ConfigError, OutputError
from taskspace.io import file_hash, parquet_stamp, read_npy, read_record, write_json, write_npy, write_parquet
from taskspace.lm.models import LM, recorded_compute
from taskspace.lm.scoring import PreparedEval, score_pairs
from taskspace.method import resume
from taskspace.method.ftgd import Delta, EncodedPairs, FTGDError, finetune, gradient_differential, lm_loss, param_group
from taskspace.method.impact import collapse
from taskspace.method.linear import delta_steps, linear_transfer
from taskspace.method.paired import cell_space, pair_changes
from taskspace.method.similarity import (  # noqa: F401 (re-exported: the maths a probe uses, importable from here)
    EXACT_GRADIENT_MAX,
    MERSENNE,
    _hash_coefficients,
    cosine_matrix,
    count_sketch,
    exact_gradient_refusal,
    flatten,
    global_indices,
    gradient_vector,
    jaccard_matrix,
    normalise_transfer,
    transfer_matrix,
)
from taskspace.runs import Layout
from taskspace.stats.reliability import swap_labels
from taskspace.stats.spaces import KINDS, TaskSpaces

__all__ = ["KINDS", "FTGDConfig", "ProbeConfig", "probe", "run_eval1", "run_ftgd", "run_eval2"]


# ---- the loop: I/O at the edges -----------------------------------------------------------------------------


def accuracy_and_margin(scores: pa.Table, tasks: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    names = np.asarray(scores.column("task").to_pylist())
    margin = scores.column("margin").to_numpy()
    acc = np.array([(margin[names == t] > 0).mean() for t in tasks])
    mm = np.array([margin[names == t].mean() for t in tasks])
    return acc, mm


def _lm_loss_other(scores: pa.Table, good_tokens: np.ndarray, task: str) -> float:
    """Mean NLL per token of the grammatical eval sentences of every *other* task (the low-impact measure)."""
    other = np.asarray(scores.column("task").to_pylist()) != task
    return float(-scores.column("logp_good").to_numpy()[other].sum() / good_tokens[other].sum())


def config_hash(*cfgs) -> str:
    """A stamp from config objects (the CLI's); the pipeline stamps with `Settings.stamp`, over dvc.yaml's keys."""
    return hashlib.sha1(json.dumps([asdict(c) for c in cfgs], sort_keys=True).encode()).hexdigest()[:12]


def _stamped(path: Path, h: str) -> bool:
    """A Parquet output exists, is readable and was made with stamp h (otherwise it is stale and redone)."""
    return parquet_stamp(path) == h


def _record(layout: Layout, task: str) -> dict | None:
    return read_record(layout.ftgd_info(task))


def _files_match(layout: Layout, task: str, info: dict) -> bool:
    """The task's delta and gradient files are the ones its ftgd.json recorded (present, same bytes)."""
    files = info.get("files") or {}
    paths = (layout.delta(task), layout.gradient(task))
    return all(p.exists() and files.get(p.name) == file_hash(p) for p in paths)


def _tuned(layout: Layout, task: str, stamp: str) -> bool:
    """Finished with these settings and intact: a corrupt or missing file makes the task redone."""
    info = _record(layout, task)
    return info is not None and info.get("config") == stamp and _files_match(layout, task, info)


def recorded(layout: Layout, task: str, stamp: str) -> bool:
    """The task's record is written with these settings (cheap: no file hashing; for progress)."""
    return (_record(layout, task) or {}).get("config") == stamp


def ftgd_finished(layout: Layout, task: str, stamp: str, keep: bool = False) -> bool:
    """The task's FTGD is done with these settings (with `keep`, after restoring it from the resume stash)."""
    files = [layout.delta(task), layout.gradient(task), layout.ftgd_info(task)]
    return _tuned(layout, task, stamp) or (keep and resume.restore(files) and _tuned(layout, task, stamp))


def eval2_finished(layout: Layout, task: str, stamp: str, ftgd_stamp: str, keep: bool = False) -> bool:
    """The task's eval2 is done with these settings and its current delta (restored from the stash with `keep`)."""
    info = _record(layout, task)
    if info is None or info.get("config") != ftgd_stamp:
        return False
    path, stamp2 = layout.eval2(task), _eval2_stamp(layout, task, stamp, info)
    return _stamped(path, stamp2) or (keep and resume.restore([path]) and _stamped(path, stamp2))


def _eval2_stamp(layout: Layout, task: str, stamp: str, info: dict) -> str:
    """eval2 is stale when its delta was re-made, whatever the settings: stamped with the delta's content."""
    return f"{stamp}:{(info.get('files') or {}).get(layout.delta(task).name, '')[:12]}"


def same_compute(layout: Layout, what: str, compute: dict | None, want: dict | None = None) -> None:
    """Refuse scores or deltas computed on another kind of device or in another dtype than eval1 (or `want`):
    transfer subtracts eval1 from eval2, and a CPU's fp32 against a GPU's bf16 shifts every cell of a column."""
    if want is None:
        if compute is None or not layout.eval1.exists():
            return
        want, of = recorded_compute(pq.read_schema(layout.eval1).metadata), f"{layout.eval1} (eval1)"
    else:
        of = "this process"
    if compute is None or want is None or compute == want:
        return  # the same, or not recorded (then the settings stamps decide what is stale)
    raise OutputError(
        f"{what} is {compute['dtype']} on {compute['device']} but {of} is {want['dtype']} on {want['device']}: "
        "transfer would mix them; run eval, ftgd and probe with the same compute.device and compute.dtype "
        "(rerun the stale stage, e.g. dvc repro -f eval@<run>)"
    )


def _verified(layout: Layout, task: str, stamp: str) -> dict:
    """The ftgd record of a task for eval2, after checking its settings and its files' hashes."""
    info = _record(layout, task)
    if info is None or info.get("config") != stamp:
        raise OutputError(f"{layout.ftgd_info(task)} is missing or was made with other settings; rerun the ftgd stage")
    if not _files_match(layout, task, info):
        raise OutputError(
            f"{layout.delta(task).parent}: the delta or gradient file is missing or differs from what ftgd.json "
            "recorded (corrupt?); rerun the ftgd stage, which redoes this task"
        )
    return info


def _tasks(table: pa.Table) -> list[str]:
    return list(dict.fromkeys(table.column("task").to_pylist()))


def _prepared(lm: LM, evalset: pa.Table | PreparedEval, cfg: ProbeConfig) -> PreparedEval:
    """The eval set prepared once for every pass of this call (it is built on the first pass that scores); pass
    a `PreparedEval` to share one across calls (`probe` does, for eval1 and eval2)."""
    return evalset if isinstance(evalset, PreparedEval) else PreparedEval(lm, evalset, cfg.eval_batch_size)


def run_eval1(
    lm: LM, evalset: pa.Table | PreparedEval, layout: Layout, cfg: ProbeConfig, stamp: str | None = None
) -> pa.Table:
    """eval1: the untuned model on every task's eval pairs."""
    path, h = layout.eval1, stamp or config_hash(cfg)
    if _stamped(path, h):
        return pq.read_table(path)
    scores = score_pairs(lm, _prepared(lm, evalset, cfg), cfg.eval_batch_size)
    write_parquet(scores.replace_schema_metadata({"config": h, **{k: str(v) for k, v in lm.meta().items()}}), path)
    return scores


def run_ftgd(
    lm: LM,
    train: pa.Table,
    layout: Layout,
    ftgd_cfg: FTGDConfig,
    cfg: ProbeConfig,
    stamp: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    keep: bool = False,
    control: bool = False,
    only: Sequence[str] | None = None,
) -> list[str]:
    """Per task: gradient differential (→ gradient vector), FTGD (→ delta; ftgd.json written last); returns the
    tasks tuned now (the others were finished already).

    A task whose ftgd.json carries the current stamp (and whose files match it) is skipped, so a killed run
    resumes; with `keep` (the pipeline), finished tasks are also kept outside DVC's outputs (taskspace.method.resume).
    With `control`, each task is tuned on its pairs with a random half's labels swapped (the noise floor).
    With `only`, just those tasks (an executor's shard; the others' sentences still feed the collapse check).
    """
    h = stamp or config_hash(ftgd_cfg, cfg)
    tasks = _tasks(train)
    names = np.asarray(train.column("task").to_pylist())
    ftgd_params = param_group(lm.model, ftgd_cfg.params)
    grad_params = param_group(lm.model, cfg.grad_params)
    grad_size = sum(p.numel() for p in grad_params.values())
    if not cfg.grad_projection and grad_size > EXACT_GRADIENT_MAX:
        raise ConfigError(exact_gradient_refusal(grad_size))  # before any task: nothing half-done
    tuned: list[str] = []
    mine = tasks if only is None else [t for t in tasks if t in set(only)]
    for i, task in enumerate(mine):
        done = layout.ftgd_info(task)
        files = [layout.delta(task), layout.gradient(task), done]
        if not ftgd_finished(layout, task, h, keep):
            tuned.append(task)
            rows = train.filter(pa.array(names == task))
            good, bad = rows.column("good").to_pylist(), rows.column("bad").to_pylist()
            if control:
                swap = swap_labels(len(good), ftgd_cfg.seed * 1_000_003 + zlib.crc32(task.encode()))
                good, bad = (
                    [b if s else g for g, b, s in zip(good, bad, swap)],
                    [g if s else b for g, b, s in zip(good, bad, swap)],
                )
            pairs = EncodedPairs.of(lm, good, bad)
            # one pass gives both the FTGD mask's differential and the task gradient g_i
            grads = gradient_differential(lm, pairs, {**ftgd_params, **grad_params}, ftgd_cfg.batch_size)
            try:
                result = finetune(lm, pairs, ftgd_cfg, grads={n: grads[n] for n in ftgd_params})
            except FTGDError as e:
                raise FTGDError(f"task {task}: {e}") from None
            others = _sample_others(train, names, task)  # the collapse check's held-out sentences
            why = collapse(lm, result.delta, pairs, others, lm_loss(lm, others), ftgd_cfg)
            if why:
                raise FTGDError(
                    f"task {task}: tuning collapsed the model after {len(result.history)} steps at lr {ftgd_cfg.lr}: "
                    f"{why}; lower ftgd.lr or ftgd.steps. Nothing was written for this task"
                )
            gvec = gradient_vector({n: grads[n] for n in grad_params}, cfg.grad_projection, cfg.projection_seed)
            result.delta.meta["task"] = task
            result.delta.save(layout.delta(task))
            write_npy(layout.gradient(task), gvec.astype(np.float32))
            info = {
                "task": task,
                "config": h,
                "steps_run": len(result.history),
                # no timings: identical results keep identical bytes, so DVC skips what follows
                "history": [{k: v for k, v in step.items() if k != "seconds"} for step in result.history],
                "n_selected": result.delta.n_selected,
                "n_changed": result.delta.n_changed,
                "gradient": "exact" if gvec.size == grad_size else f"count sketch, k = {gvec.size}",
                "compute": lm.compute,
                "files": {f.name: file_hash(f) for f in (layout.delta(task), layout.gradient(task))},
            }
            if keep:  # the files first, then the record: once the record is in place, the task is kept
                resume.stash(files[:2])
                resume.write_kept(done, functools.partial(write_json, info))
            else:
                write_json(info, done)  # written last: its presence marks the task finished
        if progress:
            progress("ftgd", i + 1, len(mine))
    return tuned


def _sample_others(train: pa.Table, names: np.ndarray, task: str, k: int = 64) -> list[str]:
    """Up to k grammatical train sentences of the other tasks (evenly over them); the task's own when alone."""
    good = np.asarray(train.column("good").to_pylist(), dtype=object)
    other = np.flatnonzero(names != task)
    pool = other if other.size else np.flatnonzero(names == task)
    return good[pool[np.linspace(0, pool.size - 1, min(k, pool.size)).astype(int)]].tolist()


def run_eval2(
    lm: LM,
    evalset: pa.Table | PreparedEval,
    eval1: pa.Table,
    layout: Layout,
    ftgd_cfg: FTGDConfig,
    cfg: ProbeConfig,
    stamp: str | None = None,
    ftgd_stamp: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    keep: bool = False,
) -> dict:
    """Per tuned task: apply its delta, eval2 on every task, remove it (exact transfer), and/or its first-order
    transfer against every task's margin gradient (`cfg.transfer`); then the T×T spaces and probe.json."""
    h, ftgd_h = stamp or config_hash(ftgd_cfg, cfg), ftgd_stamp or config_hash(ftgd_cfg, cfg)
    exact, linear = cfg.transfer in ("exact", "both"), cfg.transfer in ("linear", "both")
    prepared = _prepared(lm, evalset, cfg)
    tasks = _tasks(prepared.pairs)
    acc1, margin1 = accuracy_and_margin(eval1, tasks)
    acc2, margin2, grad_vecs, masks, steps, per_task, eval2s = [], [], [], [], [], {}, []
    for i, task in enumerate(tasks):
        if exact:
            info, delta, eval2 = _eval2_task(lm, prepared, layout, task, h, ftgd_h, cfg, keep)
            a2, m2 = accuracy_and_margin(eval2, tasks)
            acc2.append(a2)
            margin2.append(m2)
            eval2s.append(eval2)
        else:
            info, delta = _verified(layout, task, ftgd_h), Delta.load(layout.delta(task))
        grad_vecs.append(read_npy(layout.gradient(task)))
        masks.append(global_indices(lm.model, delta.idx))
        if linear:
            steps.append(delta_steps(delta, lm.device))  # the selected entries' moves only: ~k per task
        per_task[task] = {
            **{k: v for k, v in info.items() if k != "history"},
            # token counts: the preparation's once a pass has scored (else the grammatical sentences encoded once)
            "lm_loss_before": _lm_loss_other(eval1, prepared.good_tokens, task),
            "lm_loss_after": _lm_loss_other(eval2, prepared.good_tokens, task) if exact else None,
        }
        if progress:
            progress("eval2" if exact else "deltas", i + 1, len(tasks))
    mats, changes = {}, None
    if exact:
        transfer_acc = transfer_matrix(acc1, np.array(acc2))
        transfer_margin = transfer_matrix(margin1, np.array(margin2))
        transfer = transfer_acc if cfg.metric == "accuracy" else transfer_margin
        mats = {"transfer": transfer, "transfer_norm": normalise_transfer(transfer), "transfer_margin": transfer_margin}
        changes = pair_changes(eval1, eval2s, tasks, cfg.metric)  # every cell's own pairs: its p, q and interval
        mats |= cell_space([changes], permutations=cfg.cell_permutations)
    if linear:
        lin_progress = (lambda j, n: progress("linear", j, n)) if progress else None
        mats["transfer_linear"] = linear_transfer(lm, prepared.pairs, steps, ftgd_cfg.batch_size, lin_progress)
    mats |= {"gradient": cosine_matrix(np.stack(grad_vecs)), "sharing": jaccard_matrix(masks, lm.n_params)}
    TaskSpaces(tasks, mats).save(layout.matrices)
    summary = {
        **lm.meta(),
        "tasks": tasks,
        "config": h,
        "ftgd": asdict(ftgd_cfg),
        "probing": asdict(cfg),
        "eval1": {t: {"accuracy": float(a), "mean_margin": float(m)} for t, a, m in zip(tasks, acc1, margin1)},
        "per_task": per_task,
    }
    write_json(summary, layout.summary)
    return {"tasks": tasks, **mats, "summary": summary, "pair_changes": changes}


def _eval2_task(
    lm: LM, prepared: PreparedEval, layout: Layout, task: str, h: str, ftgd_h: str, cfg: ProbeConfig, keep: bool
) -> tuple[dict, Delta, pa.Table]:
    """One tuned task's eval2 on every task: read when finished, else its delta applied, scored, removed."""
    info = _verified(layout, task, ftgd_h)
    delta = Delta.load(layout.delta(task))
    path, stamp2 = layout.eval2(task), _eval2_stamp(layout, task, h, info)
    if eval2_finished(layout, task, h, ftgd_h, keep):
        eval2 = pq.read_table(path)
        same_compute(layout, f"{path} (eval2)", recorded_compute(eval2.schema.metadata))
        return info, delta, eval2
    same_compute(layout, f"eval2 of {task} here", lm.compute)
    same_compute(layout, f"{layout.ftgd_info(task)} (its FTGD)", recorded_compute(info), lm.compute)
    delta.apply(lm.model)
    try:
        eval2 = score_pairs(lm, prepared, cfg.eval_batch_size)
    finally:
        delta.remove(lm.model)
    table = eval2.replace_schema_metadata({"config": stamp2, **lm.compute})
    if keep:
        resume.write_kept(path, functools.partial(write_parquet, table))
    else:
        write_parquet(table, path)
    return info, delta, eval2


def run_eval2_tasks(
    lm: LM,
    evalset: pa.Table | PreparedEval,
    layout: Layout,
    cfg: ProbeConfig,
    stamp: str,
    ftgd_stamp: str,
    only: Sequence[str],
    keep: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> None:
    """eval2 of some tuned tasks, written per task (an executor's shard; run_eval2 then reads them)."""
    prepared = _prepared(lm, evalset, cfg)
    for i, task in enumerate(only):
        _eval2_task(lm, prepared, layout, task, stamp, ftgd_stamp, cfg, keep)
        if progress:
            progress("eval2", i + 1, len(only))


def probe(
    lm: LM,
    train: pa.Table,
    evalset: pa.Table,
    out: Path | Layout,
    ftgd_cfg: FTGDConfig,
    cfg: ProbeConfig | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """eval1 → FTGD per task → eval2 per task → spaces, all under one folder (or a Layout); resumable."""
    cfg = cfg or ProbeConfig()
    layout = out if isinstance(out, Layout) else Layout.single(out)
    prepared = PreparedEval(lm, evalset, cfg.eval_batch_size)  # one preparation for eval1 and every eval2 pass
    eval1 = run_eval1(lm, prepared, layout, cfg)
    if progress:
        progress("eval1", 1, 1)
    run_ftgd(lm, train, layout, ftgd_cfg, cfg, progress=progress)
    return run_eval2(lm, prepared, eval1, layout, ftgd_cfg, cfg, progress=progress)


def load_matrices(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """(tasks, matrices) of a matrices.npz (see spaces.TaskSpaces)."""
    spaces = TaskSpaces.load(path)
    return spaces.tasks, spaces.matrices
