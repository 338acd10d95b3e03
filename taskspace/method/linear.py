"""First-order transfer: an approximation of the transfer space from T backward passes instead of T² evaluations.

Transfer is the change of task j's mean margin when the model moves by task i's FTGD delta Δθ_i. To first order
it is g_j · Δθ_i, with g_j the gradient of task j's mean margin over its eval pairs at the base model. Exact
transfer (eval2) scores T × T × n_eval × 2 sentences; this needs one gradient per evaluated task, held one at a
time against every (sparse) delta, so memory is one model-sized fp32 gradient plus the deltas' selected entries.
It is a screen, not a replacement: measured agreement with exact transfer is in docs/concepts/statistics.md and
docs/concepts/findings.md, and the space is stored as its own kind, `transfer_linear`, in margin units whatever
the metric.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import torch

from taskspace.lm.models import LM
from taskspace.method.ftgd import Delta, EncodedPairs, gradient_differential, param_group


def delta_steps(delta: Delta, device: torch.device | str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per tensor: (flat indices, tuned − base in fp32) on `device`: what a dot product with a gradient needs."""
    return {
        n: (idx.to(device, torch.long), (delta.value[n].float() - delta.base[n].float()).to(device))
        for n, idx in delta.idx.items()
    }


def margin_gradient(
    lm: LM, pairs: EncodedPairs, params: dict[str, torch.nn.Parameter], batch_size: int
) -> dict[str, torch.Tensor]:
    """∇ mean margin (logp good − logp bad) over the pairs at the current weights, fp32 whatever the model's dtype."""
    grads = gradient_differential(lm, pairs, params, batch_size)  # ∇(−mean margin): the FTGD differential
    return {n: g.neg_() for n, g in grads.items()}


def dot(grad: dict[str, torch.Tensor], step: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> float:
    """g · Δθ over the delta's selected entries (the others did not move)."""
    total = 0.0
    for n, (idx, diff) in step.items():
        total += float((grad[n].reshape(-1)[idx] * diff).sum())
    return total


def linear_transfer(
    lm: LM,
    evalset: pa.Table,
    steps: Sequence[dict[str, tuple[torch.Tensor, torch.Tensor]]],
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """transfer_linear[i, j] = g_j · Δθ_i (T × T, margin units): row i the task tuned (`delta_steps` of each delta,
    in task order), column j the task evaluated (evalset's tasks in order of first appearance). One gradient at a
    time."""
    tasks = list(dict.fromkeys(evalset.column("task").to_pylist()))
    if len(steps) != len(tasks):
        raise ValueError(f"{len(steps)} deltas for {len(tasks)} evaluated tasks")
    touched = sorted({n for s in steps for n in s})
    every = param_group(lm.model, "all")
    params = {n: every[n] for n in touched}
    names = np.asarray(evalset.column("task").to_pylist())
    out = np.zeros((len(tasks), len(tasks)))
    for j, task in enumerate(tasks):
        rows = evalset.filter(pa.array(names == task))
        pairs = EncodedPairs.of(lm, rows.column("good").to_pylist(), rows.column("bad").to_pylist())
        g = margin_gradient(lm, pairs, params, batch_size)  # one model-sized fp32 gradient at a time
        out[:, j] = [dot(g, s) for s in steps]
        del g
        if progress:
            progress(j + 1, len(tasks))
    return out
