"""Real-size code paths without the hub: a model with Pythia-70m's exact dimensions (random weights) in bf16,
through eval1, FTGD and eval2, with its disk use checked against the plan's estimate."""

import math

import numpy as np
import pytest

from taskspace.blimp import data
from taskspace.lm import tiny
from taskspace.lm.models import load_model
from taskspace.method.ftgd import FTGDConfig
from taskspace.method.probing import ProbeConfig, probe
from taskspace.pipeline import plan

TASKS = ["anaphor_gender_agreement", "adjunct_island"]
N_TRAIN, N_EVAL = 4, 6


@pytest.fixture(scope="module")
def pythia70(tmp_path_factory, blimp):
    out = tmp_path_factory.mktemp("models") / "pythia-70m"
    pairs = data.load_blimp(blimp, TASKS)
    tiny.build_tiny(out, pairs["good"].to_pylist() + pairs["bad"].to_pylist(), [], steps=0, shape="pythia-70m")
    return out


def test_pythia_shaped_model_has_the_real_size(pythia70):
    lm = load_model(str(pythia70), revision="step0", dtype="bfloat16")
    assert lm.n_params == 70_426_624  # EleutherAI/pythia-70m's parameter count
    assert lm.model.config.vocab_size == 50_304 and lm.dtype.is_floating_point
    shape = plan.shape_of_config(*plan.model_config("EleutherAI/pythia-70m"))  # offline: published dimensions
    assert shape.n_params == lm.n_params
    assert plan.shape_of_config(*plan.model_config("EleutherAI/pythia-410m")).n_params == 405_334_016


def test_bf16_probe_at_70m_scale_stays_within_the_planned_disk(pythia70, blimp, tmp_path):
    train, ev = data.split_pairs(data.load_blimp(blimp, TASKS), N_TRAIN, N_EVAL, seed=0)
    lm = load_model(str(pythia70), revision="step0", dtype="bfloat16")
    ftgd, pcfg = FTGDConfig(steps=2, batch_size=4), ProbeConfig()
    res = probe(lm, train, ev, tmp_path, ftgd, pcfg)
    assert res["sharing"].shape == (2, 2) and np.isfinite(res["gradient"]).all()
    k = math.ceil(0.01 * lm.n_params)
    for task in TASKS:
        d = tmp_path / "tasks" / task
        # a sketch of 2^18 floats, not the 70M-entry gradient (282 MB) stored before
        assert (d / "grad.npy").stat().st_size <= pcfg.grad_projection * 4 + 128
        assert (d / "delta.safetensors").stat().st_size <= k * (4 + 2 + 2) + 100_000  # int32 index, bf16 values
    shape = plan.shape_of_config(lm.model.config, "test")
    w = plan.workload(len(TASKS), N_TRAIN, N_EVAL, ftgd, pcfg, positions=10.0)
    planned = plan.disk(w, shape, ftgd, pcfg, N_EVAL, dtype_bytes=2)
    actual = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert 0.8 * sum(planned.values()) <= actual <= 1.2 * sum(planned.values())


def test_workload_counts_by_hand():
    w = plan.workload(3, 10, 5, FTGDConfig(steps=4, batch_size=8), ProbeConfig(eval_batch_size=16), positions=7.0)
    assert (w.eval_sentences, w.eval2_sentences) == (30, 90)  # 2 × 3 × 5; once per tuned task
    assert (w.grad_sentences, w.ftgd_sentences) == (60, 3 * 4 * 16)
    # forward: eval1 + 3 × eval2 batches of 16 (2 each), and per task 2 differential batches + 4 steps + the
    # collapse check (20 others' sentences before and after, one batch of 32 each, and its own pairs once)
    assert (w.forward_passes, w.backward_passes) == (4 * 2 + 3 * 6 + 3 * 3, 3 * 6)


def test_workload_counts_replicates_and_control():
    """2 replicates with a control: eval1 once per replicate (its own split); 3 tasks × 2 × 2 = 12 tunings, each
    with its FTGD steps and an eval2 pass."""
    w = plan.workload(3, 10, 5, FTGDConfig(steps=4, batch_size=8), ProbeConfig(eval_batch_size=16), 7.0, 2, True)
    assert w.tunings == 12
    assert (w.eval_sentences, w.eval2_sentences) == (60, 12 * 30)
    assert (w.grad_sentences, w.ftgd_sentences) == (12 * 20, 12 * 4 * 16)
    assert (w.forward_passes, w.backward_passes) == (14 * 2 + 12 * 6 + 12 * 3, 12 * 6)
