"""First-order transfer (method/linear.py), its agreement with exact transfer (stats/agreement.py) and the
task-sample sensitivity of fits (stats/subsets.py): against finite differences and hand-computed values."""

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from taskspace.blimp import data
from taskspace.lm.scoring import score_pairs
from taskspace.method.ftgd import Delta, FTGDConfig
from taskspace.method.linear import delta_steps, linear_transfer
from taskspace.method.probing import ProbeConfig, probe
from taskspace.stats.agreement import agreement, calibrate_columns, screen_recall
from taskspace.stats.subsets import draw_subsets, sample_sensitivity

TASKS = ["regular_plural_subject_verb_agreement_1", "anaphor_gender_agreement", "adjunct_island"]


def _random_delta(lm, seed: int, scale: float) -> Delta:
    """A sparse move of ~1% of the entries of a few tensors, of size `scale`."""
    gen = torch.Generator().manual_seed(seed)
    named = dict(lm.model.named_parameters())
    idx, base, value = {}, {}, {}
    for n in sorted(named)[seed % 3 :: 3]:
        flat = named[n].detach().view(-1)
        k = max(1, flat.numel() // 100)
        i = torch.randperm(flat.numel(), generator=gen)[:k].sort().values.to(torch.int32)
        idx[n], base[n] = i, flat[i.long()].clone()
        value[n] = base[n] + scale * torch.randn(k, generator=gen)
    return Delta(idx, base, value)


def _mean_margins(lm, ev: pa.Table, tasks: list[str]) -> np.ndarray:
    s = score_pairs(lm, ev)
    names, m = np.asarray(s.column("task").to_pylist()), s.column("margin").to_numpy()
    return np.array([m[names == t].mean() for t in tasks])


def _scaled(d: Delta, eps: float) -> Delta:
    return Delta(d.idx, d.base, {n: d.base[n] + eps * (d.value[n] - d.base[n]) for n in d.idx})


def test_linear_transfer_is_the_directional_derivative(tiny_lm, blimp):
    """g_j · Δθ_i equals the central finite difference of task j's mean margin along Δθ_i."""
    _, ev = data.split_pairs(data.load_blimp(blimp, TASKS), 10, 12, seed=0)
    deltas = [_random_delta(tiny_lm, s, 0.02) for s in range(2)]
    lin = linear_transfer(tiny_lm, ev, [delta_steps(d, "cpu") for d in deltas] + [{}], batch_size=5)
    assert lin.shape == (3, 3) and (lin[2] == 0).all()  # an empty delta moves nothing
    eps = 0.05
    for i, d in enumerate(deltas):
        plus, minus = _scaled(d, eps), _scaled(d, -eps)
        plus.apply(tiny_lm.model)
        up = _mean_margins(tiny_lm, ev, TASKS)
        plus.remove(tiny_lm.model)
        minus.apply(tiny_lm.model)
        down = _mean_margins(tiny_lm, ev, TASKS)
        minus.remove(tiny_lm.model)
        fd = (up - down) / (2 * eps)
        assert np.abs(fd).max() > 1e-3  # the check has something to check
        np.testing.assert_allclose(lin[i], fd, rtol=0.03, atol=2e-3)


def test_agreement_by_hand():
    exact = np.array([[5.0, 1.0, 2.0], [3.0, 6.0, 1.0], [2.0, 4.0, 7.0]])
    a = agreement(exact, 2 * exact)
    assert a["pearson"] == pytest.approx(1) and a["spearman"] == pytest.approx(1)
    assert a["diagonal_ratio"] == pytest.approx(2) and a["magnitude_ratio"] == pytest.approx(2)
    assert a["row_pearson_min"] is None or a["row_pearson_min"] == pytest.approx(1)  # rows of 2 cells: no r
    assert a["cells"] == 6
    approx = exact.copy()
    approx[~np.eye(3, dtype=bool)] = [1, 2, 3, 1, 4, 2]  # off-diagonal exact: 1 2 3 1 2 4
    b = agreement(exact, approx)
    x, y = np.array([1, 2, 3, 1, 2, 4.0]), np.array([1, 2, 3, 1, 4, 2.0])
    assert b["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert b["diagonal_ratio"] == pytest.approx(1)


def test_calibration_recovers_a_per_column_scale_from_a_few_exact_rows():
    rng = np.random.default_rng(0)
    approx = rng.normal(size=(8, 8))
    exact = approx * np.array([0.5, 1, 2, 0.25, 1, 3, 0.7, 1.5])[None, :]  # first order overstates some columns
    rows = np.array([0, 3, 5])
    cal = calibrate_columns(approx, exact[rows], rows)
    np.testing.assert_allclose(cal, exact, atol=1e-12)
    assert agreement(exact, cal)["magnitude_ratio"] == pytest.approx(1)


def test_screen_recall_by_hand():
    exact = np.array([[0, 5, 1], [0.1, 0, 4], [3, 0.2, 0]])  # off-diagonal |exact| ranks: 5, 4, 3, 1, 0.2, 0.1
    approx = np.array([[0, 9, 8], [0, 0, 1], [7, 0, 0]])  # picks 9 (exact 5), 8 (exact 1), 7 (exact 3)
    assert screen_recall(exact, approx, 0.5) == pytest.approx(2 / 3)  # top 3 exact: 5, 4, 3; found 5 and 3
    assert screen_recall(exact, exact, 0.5) == 1


def test_subsets_draw_per_group_and_are_seeded():
    groups = ["a"] * 5 + ["b"] * 3 + ["c"] * 1
    subs = draw_subsets(groups, 2, 20, seed=1)
    g = np.array(groups)
    for s in subs:
        assert list(g[s]).count("a") == 2 and list(g[s]).count("b") == 2 and list(g[s]).count("c") == 1
    assert all((a == b).all() for a, b in zip(subs, draw_subsets(groups, 2, 20, seed=1)))
    assert len({tuple(s) for s in subs}) > 1


def test_sample_sensitivity_on_a_structured_and_a_null_space():
    groups = [f"g{k % 4}" for k in range(16)]
    h = (np.array(groups)[:, None] == np.array(groups)[None, :]).astype(float)
    rng = np.random.default_rng(0)
    structured = h + 0.1 * rng.normal(size=h.shape)
    s = sample_sensitivity(structured, groups, None, per_group=2, draws=30, permutations=99)
    assert s["tasks"] == 8 and s["draws"] == 30
    assert s["mantel_r"]["p05"] > 0.5 and s["mantel_r"]["positive"] == 1.0
    assert s["contrast"]["median"] == pytest.approx(1, abs=0.2)
    assert s["mantel_r"]["significant"] >= 0.9  # 8 tasks in 4 pairs: 105 relabellings, p floor ~0.01
    null = sample_sensitivity(rng.normal(size=h.shape), groups, None, per_group=2, draws=30, permutations=99)
    assert null["mantel_r"]["p05"] < 0 < null["mantel_r"]["p95"]
    assert sample_sensitivity(structured, groups, None, per_group=4) is None  # a subset would be every task


@pytest.fixture(scope="module")
def probed_both(tiny_lm, blimp, tmp_path_factory):
    train, ev = data.split_pairs(data.load_blimp(blimp, TASKS), 40, 40, seed=0)
    cfg = FTGDConfig(sparsity=0.01, lr=1e-3, steps=20)
    out = tmp_path_factory.mktemp("both")
    res = probe(tiny_lm, train, ev, out, cfg, ProbeConfig(metric="accuracy", transfer="both"))
    return out, res, (train, ev, cfg)


def test_both_stores_first_order_beside_exact_in_margin_units(probed_both):
    _, res, _ = probed_both
    lin, exact = res["transfer_linear"], res["transfer_margin"]
    assert lin.shape == (3, 3) and "transfer" in res
    assert (np.diag(lin) > 0).all()  # tuning on a task raises its own margin, to first order too
    assert np.corrcoef(lin.ravel(), exact.ravel())[0, 1] > 0.5  # margin units, not the accuracy metric's


def test_linear_alone_writes_no_eval2_and_reuses_the_tuning(probed_both, tiny_lm, tmp_path):
    out, res, (train, ev, cfg) = probed_both
    import shutil

    lin_dir = tmp_path / "linear"
    shutil.copytree(out, lin_dir)
    for task in TASKS:
        (lin_dir / "tasks" / task / "eval2.parquet").unlink()
    again = probe(tiny_lm, train, ev, lin_dir, cfg, ProbeConfig(metric="accuracy", transfer="linear"))
    assert "transfer" not in again and not list(lin_dir.rglob("eval2.parquet"))
    np.testing.assert_allclose(again["transfer_linear"], res["transfer_linear"], rtol=1e-6)
    summary = json.loads((lin_dir / "probe.json").read_text())
    assert summary["per_task"][TASKS[0]]["lm_loss_after"] is None


def _steps_and_exact(lm, ev):
    """Two random sparse deltas (and an empty one) as `delta_steps` on the CPU, and their fp32 first-order transfer."""
    deltas = [_random_delta(lm, s, 0.02) for s in range(2)]
    steps = [delta_steps(d, "cpu") for d in deltas] + [{}]
    return deltas, steps, linear_transfer(lm, ev, steps, batch_size=5)


def test_linear_transfer_in_bf16_agrees_with_fp32(tiny_lm, tiny_dir, blimp):
    """The model in bf16 (the GPU default): its gradients are accumulated in fp32, and g_j · Δθ_i stays close to
    the fp32 model's for the same steps. Measured: see the tolerance below."""
    from taskspace.lm.models import load_model
    from taskspace.method.ftgd import EncodedPairs, param_group
    from taskspace.method.linear import margin_gradient

    _, ev = data.split_pairs(data.load_blimp(blimp, TASKS), 10, 12, seed=0)
    _, steps, want = _steps_and_exact(tiny_lm, ev)
    lm16 = load_model(str(tiny_dir), revision="step300", dtype="bfloat16")
    assert next(lm16.model.parameters()).dtype == torch.bfloat16
    got = linear_transfer(lm16, ev, steps, batch_size=5)
    assert np.isfinite(got).all() and (got[2] == 0).all()
    # measured: max |bf16 − fp32| = 3.7e-4 against max |fp32| = 0.031 (1.2% of the matrix's scale); 5% allowed
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
    pairs = EncodedPairs.of(lm16, ev.column("good").to_pylist()[:5], ev.column("bad").to_pylist()[:5])
    grads = margin_gradient(lm16, pairs, param_group(lm16.model, "all"), batch_size=2)
    assert all(g.dtype == torch.float32 for g in grads.values())  # fp32 accumulators, not the model's bf16


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_delta_steps_and_linear_transfer_stay_on_the_models_device(tiny_dir, blimp, dtype):
    """On the fake CUDA device of tests/fake_cuda.py (a CPU operand meeting a CUDA one raises DeviceMixError):
    `delta_steps` puts indices and moves on the model's device, `linear_transfer` creates nothing on the CPU
    that meets them, and the values are the CPU run's bit for bit."""
    from fake_cuda import CudaLike, fake_cuda

    from taskspace.lm.models import load_model

    _, ev = data.split_pairs(data.load_blimp(blimp, TASKS), 10, 12, seed=0)
    cpu = load_model(str(tiny_dir), revision="step300", dtype=dtype)
    deltas, steps, want = _steps_and_exact(cpu, ev)
    lm = load_model(str(tiny_dir), revision="step300", dtype=dtype)  # its own copy: moved to "cuda" below
    with fake_cuda():
        lm = dataclasses.replace(lm, model=lm.model.to("cuda"), device=torch.device("cuda"))
        assert all(isinstance(p, CudaLike) for p in lm.model.parameters())
        on_device = [delta_steps(d, lm.device) for d in deltas] + [{}]
        for d, step in zip(deltas, on_device):
            assert step.keys() == d.idx.keys()
            for idx, diff in step.values():
                assert isinstance(idx, CudaLike) and idx.device.type == "cuda" and idx.dtype == torch.long
                assert isinstance(diff, CudaLike) and diff.device.type == "cuda" and diff.dtype == torch.float32
        got = linear_transfer(lm, ev, on_device, batch_size=5)
    np.testing.assert_array_equal(got, want)
