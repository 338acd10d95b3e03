import math

import numpy as np
import pytest
import torch

from taskspace.blimp import data
from taskspace.lm.scoring import score_pairs, sentence_logprobs, task_accuracy
from taskspace.method.ftgd import (
    Delta,
    EncodedPairs,
    FTGDConfig,
    FTGDError,
    finetune,
    ftgd_loss,
    gradient_differential,
    param_group,
    topk_mask,
)

TASK = "anaphor_gender_agreement"


@pytest.fixture(scope="module")
def split(blimp):
    return data.split_pairs(data.load_blimp(blimp, [TASK, "adjunct_island"]), 100, 100, seed=0)


def task_pairs(lm, table, task=TASK):
    rows = table.filter(np.asarray(table["task"].to_pylist()) == task)
    return EncodedPairs.of(lm, rows["good"].to_pylist(), rows["bad"].to_pylist())


def weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_loss_gradient_is_the_gradient_differential(tiny_lm, split):
    pairs = task_pairs(tiny_lm, split[0])
    params = dict(tiny_lm.model.named_parameters())
    g = gradient_differential(tiny_lm, EncodedPairs(pairs.good[:4], pairs.bad[:4]), params, batch_size=3)
    # by hand: mean over the 4 pairs of ∇logp(bad) − ∇logp(good), via autograd on each sentence alone
    name = "gpt_neox.layers.0.mlp.dense_h_to_4h.weight"
    want = torch.zeros_like(params[name])
    for good, bad in zip(pairs.good[:4], pairs.bad[:4]):
        for seq, sign in ((good, -1.0), (bad, 1.0)):
            tiny_lm.model.zero_grad()
            ids = torch.tensor([[tiny_lm.prefix_id] + seq])
            logits = tiny_lm.model(input_ids=ids).logits[0, :-1].log_softmax(-1)
            logits.gather(-1, ids[0, 1:, None]).sum().backward()
            want += sign * params[name].grad / 4
    tiny_lm.model.zero_grad()
    torch.testing.assert_close(g[name], want, atol=1e-5, rtol=1e-4)


def test_objectives_by_hand():
    good, bad = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -4.5])  # d = 1, -0.5
    assert ftgd_loss(good, bad, "differential").item() == pytest.approx(-0.25)
    assert ftgd_loss(good, bad, "margin", margin=1.0).item() == pytest.approx((0 + 1.5) / 2)
    assert ftgd_loss(good, bad, "lm").item() == pytest.approx(4.0)


def test_topk_mask_selects_exactly_ceil_s_p_largest():
    grads = {"a": torch.tensor([[0.1, -5.0], [0.3, 0.0]]), "b": torch.tensor([2.0, -0.2, 4.0])}
    m = topk_mask(grads, 0.3)  # P = 7 → ⌈2.1⌉ = 3 entries: -5.0, 4.0, 2.0
    assert {n: i.tolist() for n, i in m.items()} == {"a": [1], "b": [0, 2]}
    assert sum(i.numel() for i in topk_mask(grads, 1.0).values()) == 7


def test_sparse_ftgd_changes_only_its_footprint_and_improves_its_task(tiny_lm, split):
    train, ev = split
    pairs = task_pairs(tiny_lm, train)
    base = weights(tiny_lm.model)
    cfg = FTGDConfig(sparsity=0.01, lr=1e-3, steps=30)
    res = finetune(tiny_lm, pairs, cfg)
    P = sum(p.numel() for p in tiny_lm.model.parameters())
    assert res.delta.n_selected == math.ceil(0.01 * P)
    assert 0.9 * res.delta.n_selected <= res.delta.n_changed <= res.delta.n_selected
    # the base model is left untouched by tuning
    assert all(torch.equal(base[n], p) for n, p in tiny_lm.model.named_parameters())
    own = ev.filter(np.asarray(ev["task"].to_pylist()) == TASK)
    before = task_accuracy(score_pairs(tiny_lm, own))[0]
    res.delta.apply(tiny_lm.model)
    changed = sum(int((base[n] != p).sum()) for n, p in tiny_lm.model.named_parameters())
    after = task_accuracy(score_pairs(tiny_lm, own))[0]
    res.delta.remove(tiny_lm.model)
    assert changed == res.delta.n_changed  # nothing outside the footprint moved
    assert after["mean_margin"] > before["mean_margin"] + 0.5
    assert all(torch.equal(base[n], p) for n, p in tiny_lm.model.named_parameters())  # bit for bit


def test_delta_roundtrip_file_and_wrong_base(tiny_lm, tiny_dir, split, tmp_path):
    from taskspace.lm.models import load_model

    res = finetune(tiny_lm, task_pairs(tiny_lm, split[0]), FTGDConfig(sparsity=0.05, lr=1e-3, steps=5))
    path = res.delta.save(tmp_path / "d.safetensors")
    back = Delta.load(path)
    assert back.meta["ftgd.sparsity"] == "0.05" and back.n_selected == res.delta.n_selected
    base = weights(tiny_lm.model)
    back.apply(tiny_lm.model)
    with pytest.raises(FTGDError, match="already applied"):
        back.apply(tiny_lm.model)
    back.remove(tiny_lm.model)
    assert all(torch.equal(base[n], p) for n, p in tiny_lm.model.named_parameters())
    other = load_model(str(tiny_dir), revision="step0")
    with pytest.raises(FTGDError, match="wrong base model"):
        back.apply(other.model)


def test_nan_loss_is_a_clear_error_and_leaves_base_intact(tiny_lm, split):
    base = weights(tiny_lm.model)
    # an absurd learning rate throws the weights to ±1e38 at step 1; step 2's loss is not finite
    with pytest.raises(FTGDError, match="non-finite FTGD loss at step 2"):
        finetune(tiny_lm, task_pairs(tiny_lm, split[0]), FTGDConfig(lr=1e38, steps=3))
    assert all(torch.equal(base[n], p) for n, p in tiny_lm.model.named_parameters())


def test_param_groups_and_config_validation(tiny_lm):
    assert all("mlp" in n for n in param_group(tiny_lm.model, "mlp"))
    assert all(".layers.1." in n for n in param_group(tiny_lm.model, "layer:1"))
    with pytest.raises(ValueError, match="unknown parameter group"):
        param_group(tiny_lm.model, "heads")
    with pytest.raises(ValueError, match=r"ftgd.sparsity = 0 is invalid: use a number in \(0, 1\]"):
        FTGDConfig(sparsity=0)
    with pytest.raises(ValueError, match="ftgd.objective = 'contrastive' is invalid: use one of"):
        FTGDConfig(objective="contrastive")
    with pytest.raises(ValueError, match="ftgd.lr = nan is invalid: use a finite number"):
        FTGDConfig(lr=float("nan"))


def test_lm_loss_matches_logprobs(tiny_lm):
    from taskspace.method.ftgd import lm_loss

    s = ["The dogs bark.", "A cat."]
    n_tok = 4 + 3
    assert lm_loss(tiny_lm, s) == pytest.approx(-sentence_logprobs(tiny_lm, s).sum() / n_tok)


def _tune_both_dtypes(spec, revision, pairs_table, cfg):
    """FTGD with the model in fp32 and in bf16 (the GPU default): deltas, own-task margin gains, and the share
    of fp32 changes that a bf16 model can hold at all (an update below half a bf16 ulp of its weight cannot)."""
    from taskspace.lm.models import load_model

    out = {}
    for dtype in ("float32", "bfloat16"):
        lm = load_model(spec, revision=revision, dtype=dtype)
        train, ev = pairs_table
        own = ev.filter(np.asarray(ev["task"].to_pylist()) == TASK)
        before = task_accuracy(score_pairs(lm, own))[0]["mean_margin"]
        res = finetune(lm, task_pairs(lm, train), cfg)
        res.delta.apply(lm.model)
        after = task_accuracy(score_pairs(lm, own))[0]["mean_margin"]
        res.delta.remove(lm.model)
        out[dtype] = (res.delta, after - before)
    d32 = out["float32"][0]
    base, value = (torch.cat([getattr(d32, k)[n] for n in d32.idx]) for k in ("base", "value"))
    representable = int((base.bfloat16() != value.bfloat16()).sum())
    return out, representable


def test_bf16_ftgd_keeps_its_updates_on_the_tiny_model(tiny_dir, split):
    # lr 1e-4 moves a weight by ~1e-4 a step, below half a bf16 ulp of |w| ≳ 0.03: rounding the weight back
    # after each step (the old behaviour) lost ~60% of the updates here; fp32 masters keep them all.
    out, _ = _tune_both_dtypes(str(tiny_dir), "step300", split, FTGDConfig(lr=1e-4, steps=30))
    d16, gain16 = out["bfloat16"]
    assert d16.n_changed >= 0.95 * d16.n_selected
    assert next(iter(d16.value.values())).dtype == torch.bfloat16  # stored as the model holds it
    gain32 = out["float32"][1]
    assert gain32 > 0 and abs(gain16 - gain32) <= 0.25 * gain32


@pytest.mark.smollm2
def test_bf16_ftgd_on_smollm2_matches_fp32(split):
    # The issue's settings: 10 steps at lr 1e-4, 1% sparsity. SmolLM2's selected weights are large (mean |w|
    # 0.11), so only ~75% of the fp32 run's changes exceed half a bf16 ulp: that is the most any bf16 model
    # can hold, and the bf16 run must hold (nearly) all of it; before fp32 masters it held 22.5%.
    cfg = FTGDConfig(lr=1e-4, steps=10, batch_size=8)
    small = tuple(t.slice(0, 32) if i == 0 else t for i, t in enumerate(split))
    out, representable = _tune_both_dtypes("smollm2", None, small, cfg)
    d16, gain16 = out["bfloat16"]
    assert d16.n_changed >= 0.95 * representable
    gain32 = out["float32"][1]
    assert gain32 > 0 and abs(gain16 - gain32) <= 0.25 * gain32
