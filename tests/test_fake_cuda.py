"""The device-sensitive library code on "cuda": on the fake device of test_fake_cuda_harness (every machine; results
compared with a CPU run bit for bit) and on a real GPU where there is one (compared closely)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pytest
import torch
from fake_cuda import CUDA, CudaLike, DeviceMixError, fake_cuda, keep_tf32_flags, pretend_gpu_runtime


def test_harness_refuses_what_cuda_refuses_and_allows_what_it_allows():
    with fake_cuda():
        x = torch.arange(6.0).to("cuda")
        assert isinstance(x, CudaLike) and x.device == CUDA and x.is_cuda
        with pytest.raises(DeviceMixError, match="searchsorted"):
            torch.searchsorted(x, torch.tensor([1.0, 2.0]))
        with pytest.raises(DeviceMixError):
            x + torch.ones(6)
        assert (x * torch.tensor(2.0)).device == CUDA  # a 0-dim CPU tensor is a scalar to CUDA
        assert x[torch.tensor([0, 2])].tolist() == [0.0, 2.0]  # CPU index tensors are moved by CUDA indexing
        with pytest.raises(TypeError, match="numpy"):
            x.numpy()
        back = x.cpu()
        assert type(back) is torch.Tensor and back.device.type == "cpu" and back.numpy().sum() == 15
        y = torch.zeros(3, device="cuda", requires_grad=True)
        (y * torch.arange(3.0, device="cuda")).sum().backward()
        assert y.grad.device == CUDA and y.grad.tolist() == [0.0, 1.0, 2.0]
        layer = torch.nn.Linear(2, 2).to("cuda")
        assert all(isinstance(p, torch.nn.Parameter) and p.device == CUDA for p in layer.parameters())
        x[1:3] = torch.tensor([7.0, 8.0])  # a slice assignment is a copy_, which crosses devices
        with pytest.raises(DeviceMixError):
            x[torch.tensor([0, 1], device="cuda")] = torch.tensor([7.0, 8.0])  # an index_put_ does not
        assert x.tolist() == [0.0, 7.0, 8.0, 3.0, 4.0, 5.0]
    assert not issubclass(DeviceMixError, RuntimeError)
    assert not torch.__future__.get_overwrite_module_params_on_conversion()  # the harness leaves no trace


GOOD = "the cat sleeps .|the cats sleep .|a dog barks loud .|dogs bark .|she saw herself .|he saw himself .".split("|")
BAD = "the cat sleep .|the cats sleeps .|a dog bark loud .|dogs barks .|she saw himself .|he saw herself .".split("|")
TASKS = ["agreement"] * 4 + ["anaphor"] * 2


@dataclass
class Gpu:
    """Where the "cuda" tensors live: the harness (CPU data, compared bit for bit) or a real GPU (compared closely)."""

    real: bool

    def on(self):
        return contextlib.nullcontext() if self.real else fake_cuda()

    def same(self, got, want, tol: float = 1e-3) -> None:
        got, want = (np.asarray(v.float().cpu() if isinstance(v, torch.Tensor) else v) for v in (got, want))
        if self.real:
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        else:
            np.testing.assert_array_equal(got, want)


NO_GPU = "no CUDA device (torch.cuda.is_available() is False): the real-GPU variant runs only on a GPU machine"


@pytest.fixture(
    params=[
        "fake-cuda",
        pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)),
    ]
)
def gpu(request) -> Gpu:
    return Gpu(real=request.param == "cuda")


@pytest.fixture(scope="module")
def tok():
    from taskspace.lm.tiny import train_tokenizer

    return train_tokenizer(GOOD + BAD)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return pa.table({"task": TASKS, "pair_id": pa.array(range(len(GOOD)), pa.int32()), "good": GOOD, "bad": BAD})


def tiny_lm(tok, device: str, dtype: torch.dtype = torch.float32):
    """A GPT-NeoX from a real config with seeded random weights (tiny: each test stays well under a second)."""
    from transformers import GPTNeoXForCausalLM

    from taskspace.lm.models import LM
    from taskspace.lm.tiny import tiny_config

    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(tiny_config(len(tok), hidden=16, layers=1, heads=2)).to(dtype).to(device).eval()
    prefix = "<|endoftext|>"
    return LM(model, tok, "tiny", None, prefix, tok.convert_tokens_to_ids(prefix), torch.device(device), dtype)


def on_cuda(tensors) -> bool:
    return all(t.device.type == "cuda" for t in (tensors.values() if isinstance(tensors, dict) else tensors))


def test_topk_mask_keeps_indices_on_the_gradients_device(gpu):
    from taskspace.method.ftgd import topk_mask

    gen = torch.Generator().manual_seed(0)
    grads = {name: torch.randn(shape, generator=gen) for name, shape in {"a": (7, 5), "b": (11,), "c": (3, 3)}.items()}
    for sparsity in (0.05, 0.5, 1.0):
        want = topk_mask(grads, sparsity)
        with gpu.on():
            got = topk_mask({n: g.to("cuda") for n, g in grads.items()}, sparsity)
            assert on_cuda(got) and got.keys() == want.keys()
            for n in want:
                assert torch.equal(got[n].cpu(), want[n])


def test_scoring_packed_and_plain(gpu, tok, table):
    from taskspace.lm.scoring import encode, logprobs_tensor, score_pairs, sentence_logprobs, uses_packing
    from taskspace.method.ftgd import lm_loss

    want = sentence_logprobs(tiny_lm(tok, "cpu"), GOOD + BAD, batch_size=4)
    want_margin = score_pairs(tiny_lm(tok, "cpu"), table).column("margin").to_numpy()
    with gpu.on():
        lm = tiny_lm(tok, "cuda")
        assert uses_packing(lm)  # the packed path agrees with the plain one on the device (no swallowed error)
        gpu.same(sentence_logprobs(lm, GOOD + BAD, batch_size=4), want)
        gpu.same(score_pairs(lm, table).column("margin").to_numpy(), want_margin)
        lp = logprobs_tensor(lm, encode(tok, GOOD))
        assert lp.device.type == "cuda" and lp.requires_grad and lp.shape == (len(GOOD),)
        gpu.same(lp.detach(), want[: len(GOOD)])
        assert np.isfinite(lm_loss(lm, GOOD))
        lm.packing = False  # the plain (padded) path
        gpu.same(sentence_logprobs(lm, GOOD + BAD, batch_size=4), want)
        gpu.same(logprobs_tensor(lm, encode(tok, BAD)).detach(), want[len(GOOD) :])


def test_gradient_differential_and_sketch(gpu, tok):
    from taskspace.method.ftgd import EncodedPairs, gradient_differential, param_group
    from taskspace.method.similarity import gradient_vector

    def run(lm):
        grads = gradient_differential(lm, EncodedPairs.of(lm, GOOD, BAD), param_group(lm.model, "all"), batch_size=4)
        return grads, gradient_vector(grads, 64, seed=1), gradient_vector(grads, 0)

    want, want_sketch, want_exact = run(tiny_lm(tok, "cpu"))
    with gpu.on():
        lm = tiny_lm(tok, "cuda")
        grads, sketch, exact = run(lm)
        assert on_cuda(grads) and all(g.dtype == torch.float32 for g in grads.values())
        assert all(p.grad is None and p.requires_grad for p in lm.model.parameters())
    for n in want:
        gpu.same(grads[n], want[n], tol=1e-2)
    gpu.same(sketch, want_sketch, tol=1e-2)
    gpu.same(exact, want_exact, tol=1e-2)
    assert sketch.shape == (64,) and exact.shape == (sum(g.numel() for g in want.values()),)


def test_sparse_adamw_moves_only_the_footprint(gpu, tok):
    from taskspace.config import FTGDConfig
    from taskspace.method.ftgd import SparseAdamW, topk_mask

    with gpu.on():
        lm = tiny_lm(tok, "cuda")
        named = dict(lm.model.named_parameters())
        before = {n: p.detach().cpu().clone() for n, p in named.items()}
        mask = topk_mask({n: torch.randn(p.shape, device="cuda") for n, p in named.items()}, 0.05)
        opt = SparseAdamW(named, mask, FTGDConfig(lr=1e-2))
        for p in named.values():
            p.grad = torch.ones_like(p)
        opt.step()
        assert on_cuda(opt.master) and on_cuda(opt.m) and not on_cuda(opt.values())
        assert all(p.grad is None and p.device.type == "cuda" for n, p in named.items() if n in mask)
        for n, p in named.items():
            moved = (p.detach().cpu() != before[n]).reshape(-1).nonzero().reshape(-1)
            assert torch.equal(moved, mask[n].cpu() if n in mask else moved[:0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_finetune_and_delta_roundtrip(gpu, tok, tmp_path, dtype):
    from taskspace.config import FTGDConfig
    from taskspace.method.ftgd import Delta, EncodedPairs, finetune, topk_mask
    from taskspace.method.similarity import global_indices, jaccard_matrix

    cfg = FTGDConfig(steps=3, batch_size=4, sparsity=0.05, lr=1e-2)
    cpu = tiny_lm(tok, "cpu", dtype)
    want = finetune(cpu, EncodedPairs.of(cpu, GOOD, BAD), cfg).delta
    with gpu.on():
        lm = tiny_lm(tok, "cuda", dtype)
        base = {n: p.detach().cpu().clone() for n, p in lm.model.named_parameters()}
        res = finetune(lm, EncodedPairs.of(lm, GOOD, BAD), cfg)
        delta = res.delta
        assert len(res.history) == 3 and on_cuda(res.grads)
        assert not any(on_cuda([t]) for part in (delta.idx, delta.base, delta.value) for t in part.values())
        assert all(torch.equal(p.detach().cpu(), base[n]) for n, p in lm.model.named_parameters())  # left at base
        if not gpu.real:
            assert delta.idx.keys() == want.idx.keys()
            for n in want.idx:
                assert torch.equal(delta.idx[n], want.idx[n]) and torch.equal(delta.value[n], want.value[n])
        loaded = Delta.load(delta.save(tmp_path / "d.safetensors"))
        loaded.apply(lm.model)
        named = dict(lm.model.named_parameters())
        assert on_cuda(named) and loaded.n_changed > 0
        for n, i in loaded.idx.items():
            assert torch.equal(named[n].detach().view(-1)[i.long().to("cuda")].cpu(), loaded.value[n])
        loaded.remove(lm.model)
        assert all(torch.equal(p.detach().cpu(), base[n]) for n, p in lm.model.named_parameters())
        # parameter sharing: the footprint from the stored delta and from a fresh mask on the device agree
        fresh = topk_mask(res.grads, cfg.sparsity)
        assert on_cuda(fresh)
        sharing = jaccard_matrix([global_indices(lm.model, fresh), global_indices(lm.model, delta.idx)], lm.n_params)
        assert sharing[0, 1] == 1.0


def test_compare_tuning_three_ways(gpu, tok, table):
    from taskspace.config import FTGDConfig
    from taskspace.method.ftgd import EncodedPairs
    from taskspace.method.impact import compare_tuning, variants

    with gpu.on():
        lm = tiny_lm(tok, "cuda", torch.bfloat16)
        pairs = EncodedPairs.of(lm, GOOD, BAD)
        outcomes = compare_tuning(lm, pairs, table, GOOD, variants(FTGDConfig(steps=1, batch_size=4, lr=1e-2), True))
    assert [o.label for o in outcomes] == ["ftgd", "dense", "lm"]
    assert 0 < outcomes[0].n_changed < outcomes[1].n_changed and np.isfinite(outcomes[2].lm_loss_after)


def test_probe_runs_eval1_ftgd_and_eval2_per_task(gpu, tok, table, tmp_path):
    from taskspace.config import FTGDConfig, ProbeConfig
    from taskspace.method.probing import probe

    cfg, pcfg = FTGDConfig(steps=2, batch_size=2, sparsity=0.05), ProbeConfig(grad_projection=64, eval_batch_size=4)
    want = probe(tiny_lm(tok, "cpu"), table, table, tmp_path / "cpu", cfg, pcfg)
    with gpu.on():
        got = probe(tiny_lm(tok, "cuda"), table, table, tmp_path / "cuda", cfg, pcfg)
    assert got["tasks"] == ["agreement", "anaphor"] and got["summary"]["device"].startswith("cuda")
    assert len(list((tmp_path / "cuda").rglob("eval2.parquet"))) == 2
    for kind in ("transfer", "transfer_margin", "gradient", "sharing"):
        assert got[kind].shape == (2, 2)
        if not gpu.real:
            np.testing.assert_array_equal(got[kind], want[kind])


def test_load_model_picks_cuda_and_bf16(gpu, tok, tmp_path, monkeypatch):
    from taskspace.lm.models import load_model
    from taskspace.lm.scoring import sentence_logprobs

    keep_tf32_flags(monkeypatch)
    source = tiny_lm(tok, "cpu")
    source.model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    want = sentence_logprobs(load_model(str(tmp_path / "m"), device="cpu", dtype="bfloat16"), GOOD)
    if not gpu.real:
        pretend_gpu_runtime(monkeypatch)
    with gpu.on():
        lm = load_model(str(tmp_path / "m"), device="cuda")
        assert lm.device.type == "cuda" and lm.dtype == torch.bfloat16 and lm.meta()["dtype"] == "bfloat16"
        assert on_cuda(list(lm.model.parameters())) and all(p.dtype == torch.bfloat16 for p in lm.model.parameters())
        gpu.same(sentence_logprobs(lm, GOOD), want, tol=0.1)


def test_calibrate_on_cuda(gpu, tok, table, monkeypatch):
    from taskspace.config import FTGDConfig, ProbeConfig
    from taskspace.lm.tiny import tiny_config
    from taskspace.pipeline.calibrate import calibrate

    keep_tf32_flags(monkeypatch)
    if not gpu.real:
        pretend_gpu_runtime(monkeypatch)
    cfg, pcfg = FTGDConfig(steps=2, batch_size=2, sparsity=0.05), ProbeConfig(grad_projection=64, eval_batch_size=4)
    with gpu.on():  # the model is built from the config inside, then moved to "cuda" by calibrate itself
        config = tiny_config(len(tok), hidden=16, layers=1, heads=2)
        cal = calibrate(config, tok, "word", table, table, cfg, pcfg, device="cuda")
    assert cal.device.startswith("cuda") and cal.dtype == "bfloat16"
    times = [cal.s_load, cal.s_sentence, cal.s_grad_pair, cal.s_mask, cal.s_sketch, cal.s_step]
    assert all(np.isfinite(t) and t >= 0 for t in times) and cal.positions > 1
    assert isinstance(cal.peak_device, int) and cal.peak_device > 0
