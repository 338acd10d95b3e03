"""Bounded mask selection (`topk_mask`) against the global torch.topk it replaced: the same indices, in the same
format, on random gradients of every shape and sparsity, on ties, on a real tiny model's gradients, and on "cuda"."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from fake_cuda import fake_cuda

from taskspace.method import ftgd
from taskspace.method.ftgd import topk_mask


def topk_reference(grads: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """The selection before bounded memory, verbatim: one torch.topk over the concatenated |gradient|. On ties at
    the k-th value its choice is whatever the CPU's nth_element/partial_sort (or CUDA's radix select) leaves."""
    total = sum(g.numel() for g in grads.values())
    k = math.ceil(sparsity * total)
    if k >= total:
        return {n: torch.arange(g.numel(), device=g.device) for n, g in grads.items()}
    flat = torch.cat([g.reshape(-1).abs() for g in grads.values()])
    top = torch.topk(flat, k, sorted=False).indices.sort().values
    offsets = [0, *itertools.accumulate(g.numel() for g in grads.values())]
    cuts = torch.searchsorted(top, torch.tensor(offsets, device=top.device)).tolist()
    out = {name: top[lo:hi] - off for name, lo, hi, off in zip(grads, cuts, cuts[1:], offsets)}
    return {n: i for n, i in out.items() if i.numel()}


def stable_reference(grads: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """The same top-k with the tie-break spelled out: a stable descending sort, so equal values go lowest index
    first (tensor order, then flat index). Identical to topk_reference wherever the k-th value is not tied."""
    total = sum(g.numel() for g in grads.values())
    k = math.ceil(sparsity * total)
    if k >= total:
        return topk_reference(grads, sparsity)
    flat = torch.cat([g.reshape(-1).abs().double() for g in grads.values()])
    flat[flat.isnan()] = math.inf  # NaN first, as torch.topk orders it; NaNs among themselves by index
    flat[flat.isinf() & ~torch.cat([g.reshape(-1).isnan() for g in grads.values()])] = torch.finfo(torch.float64).max
    top = torch.sort(flat, descending=True, stable=True).indices[:k].sort().values
    offsets = [0, *itertools.accumulate(g.numel() for g in grads.values())]
    out = {n: top[(top >= lo) & (top < hi)] - lo for n, lo, hi in zip(grads, offsets, offsets[1:])}
    return {n: i for n, i in out.items() if i.numel()}


def same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want)
    for n in want:
        assert got[n].dtype == want[n].dtype == torch.int64 and got[n].device == want[n].device
        assert torch.equal(got[n], want[n]), n


def kth_tied(grads: dict[str, torch.Tensor], sparsity: float) -> bool:
    """Whether the k-th largest |gradient| also occurs outside the top k (only then may a tie-break matter)."""
    flat = torch.cat([g.reshape(-1).abs().double() for g in grads.values()])
    k = math.ceil(sparsity * flat.numel())
    if k >= flat.numel():
        return False
    v = flat.sort(descending=True).values
    return bool(v[k - 1] == v[k])


SPARSITIES = (1e-4, 0.003, 0.01, 0.1, 0.5, 0.97, 1.0)


def random_grads(gen: torch.Generator, n_tensors: int, max_side: int) -> dict[str, torch.Tensor]:
    """Tensors of random shapes (0 to 3 dims of up to max_side) holding distinct |values| at a random scale."""
    shapes = [torch.randint(0, max_side, (int(torch.randint(0, 4, (1,), generator=gen)),), generator=gen).tolist()
              for _ in range(n_tensors)]  # fmt: skip
    sizes = [math.prod(s) for s in shapes]
    scale = 10.0 ** float(torch.randn(1, generator=gen)) / max(1, sum(sizes))
    values = (torch.randperm(sum(sizes), generator=gen) + 1) * scale * torch.randn(sum(sizes), generator=gen).sign()
    return {f"t{i}": v.view(s) for i, (v, s) in enumerate(zip(values.split(sizes), shapes))}


@pytest.mark.parametrize("seed", range(12))
def test_tie_free_random_gradients_match_the_global_topk(seed):
    gen = torch.Generator().manual_seed(seed)
    grads = random_grads(gen, n_tensors=1 + seed % 6, max_side=40 if seed % 3 else 90)
    grads["empty"] = torch.zeros(0, 5)  # an empty tensor is counted, never selected
    for sparsity in SPARSITIES:
        assert not kth_tied(grads, sparsity)
        same(topk_mask(grads, sparsity), topk_reference(grads, sparsity))


def test_a_single_tensor_and_tiny_k():
    g = {"w": torch.randn(3000, generator=torch.Generator().manual_seed(3))}
    for sparsity in (1e-9, 1 / 3000, 2 / 3000, 0.5):
        same(topk_mask(g, sparsity), topk_reference(g, sparsity))
    assert topk_mask(g, 1e-9)["w"].tolist() == [int(g["w"].abs().argmax())]
    assert topk_mask({"w": torch.tensor([-2.0])}, 0.5)["w"].tolist() == [0]


@pytest.mark.parametrize("kind", ["small-integers", "zeros", "bf16-rounded", "constant"])
def test_ties_go_lowest_index_first_and_agree_with_topk_on_all_untied_entries(kind):
    gen = torch.Generator().manual_seed(7)
    shapes = [(37, 11), (5,), (0,), (3000,), (3, 4, 5)]
    grads = {f"t{i}": torch.randn(s, generator=gen) for i, s in enumerate(shapes)}
    if kind == "small-integers":
        grads = {n: (g * 2).round() for n, g in grads.items()}
    elif kind == "zeros":  # most entries 0: any k past the nonzeros cuts inside the zeros
        grads = {n: g * (torch.rand(g.shape, generator=gen) < 0.1) for n, g in grads.items()}
    elif kind == "bf16-rounded":
        grads = {n: (g * 1e-3).bfloat16().float() for n, g in grads.items()}
    else:
        grads = {n: torch.full_like(g, -0.5) for n, g in grads.items()}
    tied = 0
    for sparsity in SPARSITIES:
        got, old = topk_mask(grads, sparsity), topk_reference(grads, sparsity)
        same(got, stable_reference(grads, sparsity))
        tied += kth_tied(grads, sparsity)
        # the same values are selected (both are a top k); only which of the entries equal to the k-th differ
        vals = [torch.cat([grads[n].reshape(-1)[m[n]].abs() for n in m]).sort().values for m in (got, old)]
        assert torch.equal(*vals)
    assert tied >= 2  # the case is really about ties


def test_nan_and_inf_rank_first_as_in_topk():
    g = {"a": torch.tensor([1.0, float("nan"), -float("inf"), 3.0]), "b": torch.tensor([float("inf"), 0.5, 2.0])}
    for sparsity in (0.1, 0.3, 0.5, 0.7):
        same(topk_mask(g, sparsity), topk_reference(g, sparsity))
    assert topk_mask(g, 0.1) == {"a": torch.tensor([1])} or topk_mask(g, 0.1)["a"].tolist() == [1]


def test_other_dtypes_are_ordered_as_their_values():
    gen = torch.Generator().manual_seed(11)
    base = {"a": torch.randn(50, 3, generator=gen), "b": torch.randn(70, generator=gen)}
    # fp64 values that round to one fp32 value must still be told apart; fp32 mixed with fp64 is compared in fp64
    close = {"a": (1 + torch.arange(150).double() * 1e-12).view(50, 3), "b": torch.randn(70, generator=gen).float()}
    for grads in (base, {n: g.double() for n, g in base.items()}, close):
        for sparsity in (0.01, 0.2, 0.6):
            same(topk_mask(grads, sparsity), topk_reference(grads, sparsity))
    half = {n: g.half() for n, g in base.items()}
    same(topk_mask(half, 0.2), stable_reference(half, 0.2))


@pytest.mark.parametrize("seed", range(4))
def test_every_refinement_path_gives_the_same_mask(monkeypatch, seed):
    """Tiny chunks, a tiny sample (a bracket that misses) and no sorting budget (grid passes down to one key)."""
    gen = torch.Generator().manual_seed(seed)
    grads = random_grads(gen, n_tensors=4, max_side=60)
    tied = {n: (g * 4).round() for n, g in grads.items()}
    want = {s: (topk_reference(grads, s), stable_reference(tied, s)) for s in SPARSITIES}
    monkeypatch.setattr(ftgd, "_CHUNK", 7)
    monkeypatch.setattr(ftgd, "_SAMPLE", 3)
    monkeypatch.setattr(ftgd, "_CAP", 0)
    for sparsity, (plain, ties) in want.items():
        same(topk_mask(grads, sparsity), plain)
        same(topk_mask(tied, sparsity), ties)


def test_selection_stays_on_the_fake_cuda_device():
    gen = torch.Generator().manual_seed(5)
    for grads in (random_grads(gen, 5, 60), {"w": (torch.randn(4000, generator=gen) * 8).round()}):
        for sparsity in (0.001, 0.05, 0.5, 1.0):
            want = stable_reference(grads, sparsity)
            with fake_cuda():
                got = topk_mask({n: g.to("cuda") for n, g in grads.items()}, sparsity)
                assert all(i.device.type == "cuda" for i in got.values())
                got = {n: i.cpu() for n, i in got.items()}
            same(got, want)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_real_tiny_models_gradient_differential(tiny_dir, blimp, dtype):
    """The pipeline's own case: FTGD's fp32 accumulators of a trained tiny model's gradients, the model in fp32
    and in bf16 (whose rounded per-batch gradients make equal sums common)."""
    import numpy as np

    from taskspace.blimp import data
    from taskspace.lm.models import load_model
    from taskspace.method.ftgd import EncodedPairs, gradient_differential, param_group

    lm = load_model(str(tiny_dir), revision="step300", dtype=dtype)
    table = data.split_pairs(data.load_blimp(blimp, ["anaphor_gender_agreement"]), 100, 100, seed=0)[0]
    pairs = EncodedPairs.of(lm, table["good"].to_pylist(), table["bad"].to_pylist())
    tied: list[str] = []
    for n_pairs, batch in ((100, 16), (16, 16), (4, 4)):
        sub = EncodedPairs(pairs.good[:n_pairs], pairs.bad[:n_pairs])
        grads = gradient_differential(lm, sub, param_group(lm.model, "all"), batch_size=batch)
        for sparsity in (0.001, 0.01, 0.05, 0.2, 1.0):
            got = topk_mask(grads, sparsity)
            same(got, stable_reference(grads, sparsity))
            old = topk_reference(grads, sparsity)
            if not kth_tied(grads, sparsity):
                same(got, old)
            else:  # bf16: the old pick among entries equal to the k-th was nth_element's; the values are the same
                tied.append(dtype)
                vals = [torch.cat([grads[n].reshape(-1)[m[n]] for n in m]).abs().sort().values for m in (got, old)]
                assert torch.equal(*vals)
    assert tied == [] if dtype == "float32" else len(tied) >= 3  # ties at the k-th come with bf16 only
    assert np.isfinite(float(sum(g.sum() for g in grads.values())))
