"""Low impact, measured (method.md): tuning on one task should raise that task's accuracy and margin while the
LM loss on other tasks' held-out grammatical sentences barely moves. `compare_tuning` tunes the same pairs three
ways — FTGD (sparse differential), dense differential, plain LM fine-tuning — and reports both sides."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import torch

from taskspace.config import FTGDConfig
from taskspace.lm.models import LM
from taskspace.lm.scoring import score_pairs, task_accuracy
from taskspace.method.ftgd import Delta, EncodedPairs, FTGDError, finetune, lm_loss
from taskspace.stats.spaces import LOSS_UNIT


@dataclass
class Outcome:
    """One way of tuning: own-task accuracy/margin and LM loss on the others (nats/token), before and after."""

    label: str
    config: FTGDConfig
    steps: int
    seconds_per_step: float
    n_changed: int
    before: dict  # task_accuracy row of the own task's eval pairs
    after: dict
    lm_loss_before: float
    lm_loss_after: float
    delta: Delta
    history: list[dict]

    @property
    def lm_loss_rise(self) -> float:
        return self.lm_loss_after - self.lm_loss_before


def variants(cfg: FTGDConfig, compare: bool) -> list[tuple[str, FTGDConfig]]:
    """FTGD as configured; with `compare`, also dense differential and plain LM tuning of the same pairs."""
    out = [("ftgd", cfg)]
    if compare:
        out += [
            ("dense", dataclasses.replace(cfg, sparsity=1.0)),
            ("lm", dataclasses.replace(cfg, sparsity=1.0, objective="lm")),
        ]
    return out


def compare_tuning(
    lm: LM,
    pairs: EncodedPairs,
    own_eval: pa.Table,
    other_sentences: Sequence[str],
    configs: list[tuple[str, FTGDConfig]],
    progress: Callable[[str, int], None] | None = None,
) -> list[Outcome]:
    """Tune with each config in turn on the one loaded model (each delta applied, measured, removed)."""
    before = task_accuracy(score_pairs(lm, own_eval))[0]
    loss_before = lm_loss(lm, other_sentences)
    out = []
    for label, cfg in configs:
        res = finetune(lm, pairs, cfg, progress=(lambda k, label=label: progress(label, k)) if progress else None)
        # the pipeline's check (probing.run_ftgd), here too: a collapsed tuning is refused, not reported as a result
        why = non_finite(res.delta) if label != "ftgd" else collapse(lm, res.delta, pairs, other_sentences,
                                                                     loss_before, cfg)  # fmt: skip
        if why:
            raise FTGDError(
                f"{label} tuning collapsed the model after {len(res.history)} steps at lr {cfg.lr}: {why}; lower "
                "--lr or --steps. Nothing was written"
            )
        res.delta.apply(lm.model)
        try:
            after = task_accuracy(score_pairs(lm, own_eval))[0]
            loss_after = lm_loss(lm, other_sentences)
        finally:
            res.delta.remove(lm.model)
        steps = len(res.history)
        out.append(
            Outcome(
                label=label,
                config=cfg,
                steps=steps,
                seconds_per_step=sum(h["seconds"] for h in res.history) / max(steps, 1),
                n_changed=res.delta.n_changed,
                before=before,
                after=after,
                lm_loss_before=loss_before,
                lm_loss_after=loss_after,
                delta=res.delta,
                history=res.history,
            )
        )
    return out


def report(task: str, model_meta: dict, outcomes: list[Outcome]) -> dict:
    """JSON-ready: the task, the model, and each way of tuning."""
    first = outcomes[0]
    return {
        "task": task,
        "model": model_meta,
        "before": {**first.before, "lm_loss_other": first.lm_loss_before},
        "variants": {
            o.label: {
                "config": dataclasses.asdict(o.config),
                "after": {**o.after, "lm_loss_other": o.lm_loss_after},
                "n_changed": o.n_changed,
                "history": o.history,
            }
            for o in outcomes
        },
    }


def non_finite(delta: Delta) -> str | None:
    """Why a delta's tuned weights are unusable, or None: inf or NaN in them (the last step diverged after the loss
    was last checked). Caught here, it is named as what it is, not as a delta that fails to match its base model."""
    bad = [n for n, v in delta.value.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if not bad:
        return None
    return f"it produced non-finite (inf/NaN) weights in {len(bad)} of {len(delta.value)} tuned tensors, e.g. {bad[0]}"


def collapse(
    lm: LM, delta: Delta, own: EncodedPairs, others: Sequence[str], loss_before: float, cfg: FTGDConfig
) -> str | None:
    """Why a tuned model has collapsed, or None: non-finite tuned weights, the LM loss on other tasks' sentences
    rose by more than `cfg.max_lm_loss_rise` nats/token, or most of its own pairs became exact ties (a flattened
    model)."""
    from taskspace.method.ftgd import pair_logprobs

    why = non_finite(delta)
    if why:
        return why
    delta.apply(lm.model)
    try:
        loss_after = lm_loss(lm, others)
        with torch.inference_mode():
            good, bad = pair_logprobs(lm, own, range(min(len(own), 64)))
        ties = float((good == bad).float().mean())
    finally:
        delta.remove(lm.model)
    if not math.isfinite(loss_after) or loss_after - loss_before > cfg.max_lm_loss_rise:
        return (
            f"LM loss on other tasks' sentences {loss_before:.2f} → {loss_after:.2f} {LOSS_UNIT} "
            f"(more than ftgd.max_lm_loss_rise = {cfg.max_lm_loss_rise})"
        )
    if ties >= 0.5:
        return f"{ties:.0%} of its own pairs score as exact ties (the model no longer tells them apart)"
    return None
