"""FTGD — fine-tuning via gradient differentials (method.md, "FTGD").

The loss on a batch of pairs is `−mean(logp(good) − logp(bad))`, so what both sentences share cancels and only
the targeted phenomenon pushes the weights. Only the top `sparsity` fraction of parameters by accumulated
|gradient differential| is updated; that mask is the task's parameter footprint. The tuned model is kept as a
compact delta (selected entries, their base and tuned values) that can be applied to and removed from a loaded
base model bit for bit, so one base model serves every task's evaluation.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from taskspace.config import FTGDConfig
from taskspace.errors import ConfigError, TaskspaceError
from taskspace.lm.models import LM
from taskspace.lm.scoring import encode, logprobs_tensor

Progress = Callable[[int], None]
PARAM_GROUPS = {
    "embeddings": r"(embed|wte|wpe|lm_head|embed_out)",
    "attention": r"(attn|attention)",
    "mlp": r"mlp",
}


class FTGDError(TaskspaceError, RuntimeError):
    """Tuning that cannot go on (e.g. a non-finite loss); nothing is written."""


def param_group(model: torch.nn.Module, group: str = "all") -> dict[str, torch.nn.Parameter]:
    """Named parameters of a group: all, embeddings, attention, mlp, or layer:N."""
    named = dict(model.named_parameters())
    if group == "all":
        return named
    if group.startswith("layer:"):
        pattern = rf"\.(layers|h)\.{int(group.split(':', 1)[1])}\."
    elif group in PARAM_GROUPS:
        pattern = PARAM_GROUPS[group]
    else:
        raise ConfigError(f"unknown parameter group {group!r}: use all, embeddings, attention, mlp or layer:N")
    out = {n: p for n, p in named.items() if re.search(pattern, n)}
    if not out:
        raise ConfigError(f"parameter group {group!r} matches no parameter of this model")
    return out


@dataclass
class EncodedPairs:
    """Token ids of a task's pairs, encoded once."""

    good: list[list[int]]
    bad: list[list[int]]

    @classmethod
    def of(cls, lm: LM, good: Sequence[str], bad: Sequence[str]) -> EncodedPairs:
        return cls(encode(lm.tokenizer, good), encode(lm.tokenizer, bad))

    def __len__(self) -> int:
        return len(self.good)


def pair_logprobs(lm: LM, pairs: EncodedPairs, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable (logp(good), logp(bad)) for the pairs at idx, in one forward pass."""
    lp = logprobs_tensor(lm, [pairs.good[i] for i in idx] + [pairs.bad[i] for i in idx])
    return lp[: len(idx)], lp[len(idx) :]


def ftgd_loss(good: torch.Tensor, bad: torch.Tensor, objective: str = "differential", margin: float = 1.0):
    """differential: −mean(d); margin: mean(max(0, m − d)); lm: plain LM loss on the good sentences."""
    d = good - bad
    if objective == "differential":
        return -d.mean()
    if objective == "margin":
        return torch.relu(margin - d).mean()
    return -good.mean()


def gradient_differential(
    lm: LM,
    pairs: EncodedPairs,
    params: dict[str, torch.nn.Parameter],
    batch_size: int = 16,
    objective: str = "differential",
    progress: Progress | None = None,
) -> dict[str, torch.Tensor]:
    """Mean gradient of the FTGD loss over all pairs, i.e. mean(∇logp(bad) − ∇logp(good)) for `differential`.

    Each batch's gradient is added into fp32 accumulators, whatever the model's dtype: summing many small
    per-batch gradients in bf16 would round most of them away.
    """
    acc = {name: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for name, p in params.items()}
    wanted = {id(p) for p in params.values()}
    frozen = [p for p in lm.model.parameters() if p.requires_grad and id(p) not in wanted]
    for p in frozen:
        p.requires_grad_(False)  # no backward work for tensors whose gradient is not asked for
    lm.model.eval()  # no dropout: the differential must be deterministic
    n = len(pairs)
    try:
        for start in range(0, n, batch_size):
            idx = range(start, min(start + batch_size, n))
            good, bad = pair_logprobs(lm, pairs, idx)
            loss = ftgd_loss(good, bad, "lm" if objective == "lm" else "differential") * (len(idx) / n)
            loss.backward()
            for name, p in params.items():
                if p.grad is not None:
                    acc[name].add_(p.grad)  # (shape of p) fp32 += model dtype
                    p.grad = None
            if progress:
                progress(len(idx))
    finally:
        for p in frozen:
            p.requires_grad_(True)
        for p in lm.model.parameters():
            p.grad = None
    return acc


_CHUNK, _SAMPLE, _CAP = 1 << 21, 1 << 16, 1 << 20  # entries per pass step; sampled entries; keys sorted at the end


def _keys(x: torch.Tensor, wide: bool) -> torch.Tensor:
    """|x| as integer keys ordered as |x| is, NaN above +inf as topk orders them: the float's own bit pattern."""
    a = x.abs()
    return a.double().view(torch.int64) if wide else a.float().view(torch.int32)


def _chunks(grads: dict[str, torch.Tensor], wide: bool) -> Iterator[tuple[str, int, torch.Tensor]]:
    """(name, offset, keys) for each slice of at most _CHUNK entries: no pass ever holds a full-size copy."""
    for name, g in grads.items():
        flat = g.detach().reshape(-1)
        for a in range(0, flat.numel(), _CHUNK):
            yield name, a, _keys(flat[a : a + _CHUNK], wide)


def _bracket(grads: dict[str, torch.Tensor], k: int, total: int, wide: bool) -> set[int]:
    """Keys just below and above the k-th largest in a seeded random sample (±6σ of its rank): the first cuts."""
    pos = torch.randint(total, (_SAMPLE,), generator=torch.Generator().manual_seed(0)).sort().values
    offsets = [0, *itertools.accumulate(g.numel() for g in grads.values())]
    cuts = torch.searchsorted(pos, torch.tensor(offsets)).tolist()
    flats = [g.detach().reshape(-1) for g in grads.values()]
    keys = [_keys(f[(pos[lo:hi] - off).to(f.device)], wide) for f, lo, hi, off in zip(flats, cuts, cuts[1:], offsets)]
    sample = torch.cat(keys).sort(descending=True).values.tolist()
    r, d = k / total * _SAMPLE, 6 * math.sqrt(k / total * (1 - k / total) * _SAMPLE) + 1
    return {sample[min(_SAMPLE - 1, math.ceil(r + d))], sample[max(0, math.floor(r - d))] + 1}


def _threshold(grads: dict[str, torch.Tensor], k: int, total: int, wide: bool) -> tuple[int, int]:
    """The k-th largest key T and how many keys exceed it. Each pass counts the keys between cuts (from the sample
    first, then a 256-way grid) and keeps the bucket holding T; once few keys are left there they are sorted."""
    dev, top = next(iter(grads.values())).device, 2**63 - 1 if wide else 2**31 - 1
    lo, hi, inner, cap = 0, top, _bracket(grads, k, total, wide), max(_CAP, total >> 6)
    while True:  # T is in [lo, hi]
        edges = sorted({lo, *(e for e in inner if lo < e <= hi), *([hi + 1] if hi < top else [])})
        e = torch.tensor(edges, dtype=torch.int64 if wide else torch.int32, device=dev)  # all ≤ top: they fit
        n = torch.zeros(len(edges) + 1, dtype=torch.int64, device=dev)
        for _, _, key in _chunks(grads, wide):
            n += torch.bincount(torch.bucketize(key, e, right=True), minlength=len(edges) + 1)
        n, bounds, above = n.tolist()[1:], [*edges, top + 1], 0  # n[j]: keys in [bounds[j], bounds[j + 1])
        j = len(n) - 1
        while above + n[j] < k:
            above, j = above + n[j], j - 1
        lo, hi = bounds[j], bounds[j + 1] - 1
        if lo == hi:
            return lo, above
        if n[j] <= cap:
            vals = torch.cat([key[(key >= lo) & (key <= hi)] for _, _, key in _chunks(grads, wide)])
            t = int(vals.sort(descending=True).values[k - above - 1])
            return t, above + int((vals > t).sum())
        inner = {lo + (hi + 1 - lo) * i // 256 for i in range(1, 256)}


def topk_mask(grads: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """Flat indices (ascending, int64, on the gradients' device; tensors with none left out) of the ⌈sparsity·P⌉
    entries with the largest |gradient| over all given tensors; among entries equal to the k-th largest, the
    lowest (tensor order, then flat index) win, so the mask is the same on every device.

    Memory stays bounded (a few passes over slices of `_CHUNK` entries, a 64k sample, O(k) output) where a global
    torch.topk would hold a concatenated |gradient| copy and, on the CPU, 16 more bytes per parameter."""
    total = sum(g.numel() for g in grads.values())
    k = math.ceil(sparsity * total)
    if k >= total:
        return {n: torch.arange(g.numel(), device=g.device) for n, g in grads.items()}
    wide = any(g.dtype == torch.float64 for g in grads.values())
    t, above = _threshold(grads, k, total, wide)
    need, out = k - above, {}  # `need` entries equal to t still to take, lowest index first
    for name, a, key in _chunks(grads, wide):
        take = key > t
        if need:
            tie = (key == t).nonzero().view(-1)[:need]
            take[tie], need = True, need - tie.numel()
        out.setdefault(name, []).append(take.nonzero().view(-1) + a)
    return {n: i for n, parts in out.items() if (i := torch.cat(parts)).numel()}


@dataclass
class Delta:
    """A tuned model as changes to its base: per tensor, flat indices, base values and tuned values."""

    idx: dict[str, torch.Tensor]
    base: dict[str, torch.Tensor]
    value: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)

    @property
    def n_selected(self) -> int:
        return sum(i.numel() for i in self.idx.values())

    @property
    def n_changed(self) -> int:
        return sum(int((self.value[n] != self.base[n]).sum()) for n in self.idx)

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        from taskspace.io import atomic_write

        tensors = {}
        for n in self.idx:
            tensors[f"{n}::idx"] = self.idx[n].contiguous()
            tensors[f"{n}::base"] = self.base[n].contiguous()
            tensors[f"{n}::value"] = self.value[n].contiguous()
        # one JSON string with sorted keys: safetensors stores metadata in a hash map, whose order would vary
        # from save to save, and identical deltas must be identical files (DVC then skips what follows)
        meta = {"taskspace": json.dumps({k: str(v) for k, v in self.meta.items()}, sort_keys=True)}
        return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))

    @classmethod
    def load(cls, path: str | Path) -> Delta:
        from safetensors import safe_open

        from taskspace.io import reading

        parts: dict[str, dict[str, torch.Tensor]] = {"idx": {}, "base": {}, "value": {}}
        fix = "rerun the ftgd stage (or `taskspace ftgd --out`) that wrote it"
        with reading(path, fix), safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            meta = json.loads(meta["taskspace"]) if "taskspace" in meta else meta
            for key in f.keys():
                name, kind = key.rsplit("::", 1)
                parts[kind][name] = f.get_tensor(key)
        return cls(parts["idx"], parts["base"], parts["value"], meta)

    def _write(self, model: torch.nn.Module, which: str, expect: str) -> None:
        named = dict(model.named_parameters())
        src, check = getattr(self, which), getattr(self, expect)
        with torch.no_grad():
            for n, idx in self.idx.items():
                if n not in named:
                    raise FTGDError(f"delta names parameter {n!r}, which this model lacks: wrong base model")
                flat = named[n].data.view(-1)
                i = idx.to(flat.device)
                if not torch.equal(flat[i].cpu().to(check[n].dtype), check[n]):
                    raise FTGDError(
                        f"parameter {n!r} does not hold the delta's {expect} values: wrong base model "
                        "or the delta is already applied/removed"
                    )
                flat[i] = src[n].to(flat.device, flat.dtype)

    def apply(self, model: torch.nn.Module) -> None:
        """Write the tuned values into a base model (checks it is the base the delta was made on)."""
        self._write(model, "value", "base")

    def remove(self, model: torch.nn.Module) -> None:
        """Restore the base values exactly (no floating-point subtraction)."""
        self._write(model, "base", "value")


class SparseAdamW:
    """AdamW over selected entries only, with fp32 master values: state is O(k), entries outside the footprint
    never move, and updates far below a bf16 weight's resolution still accumulate.

    The model holds the master values cast to its own dtype (written after every step), so in fp32 this is
    plain AdamW on the selected entries; in bf16 the forward sees the rounded masters while the small updates
    add up in fp32 instead of vanishing at each write-back.
    """

    def __init__(self, params: dict[str, torch.nn.Parameter], mask: dict[str, torch.Tensor], cfg: FTGDConfig):
        self.params = params
        self.idx = {n: i.to(params[n].device) for n, i in mask.items()}  # flat indices per tensor, (k_n,)
        self.master = {n: params[n].detach().view(-1)[i].float().clone() for n, i in self.idx.items()}  # (k_n,)
        self.m = {n: torch.zeros_like(w) for n, w in self.master.items()}
        self.v = {n: torch.zeros_like(w) for n, w in self.master.items()}
        self.lr, (self.b1, self.b2), self.eps, self.wd = cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay
        self.t = 0

    @torch.no_grad()
    def step(self) -> None:
        """One update from the parameters' .grad at the selected entries; writes the masters into the model."""
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for n, i in self.idx.items():
            p = self.params[n]
            g = p.grad.view(-1)[i].float()  # (k_n,)
            m, v, w = self.m[n], self.v[n], self.master[n]
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            w.sub_(self.lr * ((m / c1) / ((v / c2).sqrt() + self.eps) + self.wd * w))
            p.data.view(-1)[i] = w.to(p.dtype)
            p.grad = None

    def values(self) -> dict[str, torch.Tensor]:
        """The tuned values as the model holds them (masters cast to its dtype), on the CPU."""
        return {n: w.to(self.params[n].dtype).cpu() for n, w in self.master.items()}


@dataclass
class FTGDResult:
    delta: Delta
    grads: dict[str, torch.Tensor]
    history: list[dict]
    config: dict


def finetune(
    lm: LM,
    pairs: EncodedPairs,
    cfg: FTGDConfig,
    grads: dict[str, torch.Tensor] | None = None,
    progress: Progress | None = None,
) -> FTGDResult:
    """Tune `lm` on one task's train pairs; returns the delta and leaves `lm.model` at its base weights."""
    params = param_group(lm.model, cfg.params)
    if grads is None:
        grads = gradient_differential(lm, pairs, params, cfg.batch_size, cfg.objective)
    mask = topk_mask(grads, cfg.sparsity)
    named = dict(lm.model.named_parameters())
    base = {n: named[n].detach().view(-1)[i.to(named[n].device)].cpu().clone() for n, i in mask.items()}
    opt = SparseAdamW(named, mask, cfg)
    # No backward work for tensors without selected entries; but a compiled forward guards on requires_grad, and
    # the selected tensors differ from task to task: freezing would recompile it for every task.
    compiled = getattr(lm.model, "_compiled_call_impl", None) is not None
    frozen = [] if compiled else [p for n, p in named.items() if n not in mask and p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict] = []
    solved = 0
    try:
        for step in range(1, cfg.steps + 1):
            t0 = time.perf_counter()
            idx = torch.randint(len(pairs), (min(cfg.batch_size, len(pairs)),), generator=gen).tolist()
            good, bad = pair_logprobs(lm, pairs, idx)
            loss = ftgd_loss(good, bad, cfg.objective, cfg.margin)
            if not torch.isfinite(loss):
                raise FTGDError(f"non-finite FTGD loss at step {step} (lr {cfg.lr} too high?); nothing was written")
            loss.backward()
            opt.step()
            acc = float(((good - bad) > 0).float().mean())
            history.append(
                {"step": step, "loss": float(loss.detach()), "train_acc": acc, "seconds": time.perf_counter() - t0}
            )
            if progress:
                progress(1)
            solved = solved + 1 if acc == 1.0 else 0
            if cfg.early_stop and cfg.objective != "lm" and solved >= cfg.patience:
                break
        value = opt.values()
    finally:
        for p in frozen:
            p.requires_grad_(True)
        with torch.no_grad():  # leave the base model as it was, whatever happened
            for n, i in mask.items():
                named[n].data.view(-1)[i.to(named[n].device)] = base[n].to(named[n].device)
            for p in lm.model.parameters():
                p.grad = None
    meta = {**lm.meta(), **{f"ftgd.{k}": v for k, v in asdict(cfg).items()}, "steps_run": len(history)}
    idx = compact_indices({n: i.cpu() for n, i in mask.items()})  # on the CPU, like base and value
    return FTGDResult(Delta(idx, base, value, meta), grads, history, asdict(cfg))


def compact_indices(mask: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Flat indices as int32 where they fit (every tensor below 2³¹ entries): half the delta's index bytes."""
    return {n: i.to(torch.int32) if i.numel() == 0 or int(i.max()) < 2**31 else i for n, i in mask.items()}


def lm_loss(lm: LM, sentences: Sequence[str], batch_size: int = 32) -> float:
    """Mean per-token negative log-likelihood (exp of it is perplexity) — the low-impact measure."""
    from taskspace.lm.scoring import sentence_logprobs

    n_tokens = sum(len(s) for s in encode(lm.tokenizer, sentences))
    return float(-sentence_logprobs(lm, sentences, batch_size).sum() / n_tokens)
