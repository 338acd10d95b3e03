import json

import numpy as np
import pytest
import torch

from taskspace.blimp import data
from taskspace.method.ftgd import FTGDConfig
from taskspace.method.probing import (
    EXACT_GRADIENT_MAX,
    MERSENNE,
    ProbeConfig,
    _hash_coefficients,
    cosine_matrix,
    count_sketch,
    gradient_vector,
    jaccard_matrix,
    load_matrices,
    normalise_transfer,
    probe,
    transfer_matrix,
)

TASKS = ["regular_plural_subject_verb_agreement_1", "anaphor_gender_agreement", "adjunct_island"]


def test_transfer_and_normalisation_by_hand():
    before = np.array([0.5, 0.6, 0.7])
    after = np.array([[0.9, 0.7, 0.7], [0.5, 0.8, 0.6], [0.5, 0.6, 0.7]])
    t = transfer_matrix(before, after)
    np.testing.assert_allclose(t, [[0.4, 0.1, 0.0], [0.0, 0.2, -0.1], [0.0, 0.0, 0.0]], atol=1e-12)
    n = normalise_transfer(t)
    np.testing.assert_allclose(n[:2], [[1.0, 0.25, 0.0], [0.0, 1.0, -0.5]], atol=1e-12)
    assert np.isnan(n[2]).all()  # no direct effect → no normalised row


def test_cosine_and_jaccard_against_numpy():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(4, 50))
    want = np.array([[a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in v] for a in v])
    np.testing.assert_allclose(cosine_matrix(v), want, atol=1e-12)
    masks = [np.array([0, 1, 2, 3]), np.array([2, 3, 4]), np.array([7, 8])]
    j = jaccard_matrix(masks)
    np.testing.assert_array_equal(jaccard_matrix(masks, size=100), j)
    assert j[0, 1] == pytest.approx(2 / 5) and j[0, 2] == 0 and j[1, 0] == j[0, 1] and j[2, 2] == 1
    bool_masks = np.zeros((3, 10), bool)
    for row, m in zip(bool_masks, masks):
        row[m] = True
    want_j = (bool_masks[:, None] & bool_masks[None]).sum(-1) / (bool_masks[:, None] | bool_masks[None]).sum(-1)
    np.testing.assert_allclose(j, want_j)


def test_count_sketch_preserves_cosine_roughly():
    gen = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(200, 100, generator=gen), "b": torch.randn(500, generator=gen)}
    b = {k: 0.6 * v + 0.8 * torch.randn(v.shape, generator=gen) for k, v in a.items()}  # cos ≈ 0.6
    exact = cosine_matrix(np.stack([np.concatenate([v.reshape(-1).numpy() for v in g.values()]) for g in (a, b)]))
    proj = cosine_matrix(np.stack([count_sketch(g, 4096, seed=1) for g in (a, b)]))
    assert abs(proj[0, 1] - exact[0, 1]) < 0.05
    np.testing.assert_array_equal(count_sketch(a, 64, seed=3), count_sketch(a, 64, seed=3))


def test_count_sketch_by_hand():
    g = {"w": torch.tensor([[1.0, -2.0], [0.5, 4.0]])}
    a1, b1, a2, b2 = _hash_coefficients("w", 7)
    want = np.zeros(8)
    for x, v in enumerate([1.0, -2.0, 0.5, 4.0]):  # Python integers: no overflow to worry about
        want[(a1 * x + b1) % MERSENNE % 8] += v * (1 - 2 * ((a2 * x + b2) % MERSENNE % 2))
    np.testing.assert_array_equal(count_sketch(g, 8, seed=7), want)


def test_count_sketch_inner_products_are_unbiased():
    gen = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(300, generator=gen)}
    b = {"w": 0.5 * a["w"] + torch.randn(300, generator=gen)}
    exact = float((a["w"] * b["w"]).sum())
    est = [float(count_sketch(a, 16, s) @ count_sketch(b, 16, s)) for s in range(400)]
    # each estimate is noisy at k = 16; their mean over 400 seeds is within a few standard errors of exact
    assert abs(np.mean(est) - exact) < 4 * np.std(est) / np.sqrt(len(est))


def test_gradient_vector_is_exact_when_small_and_bounded_when_large():
    g = {"w": torch.arange(6.0)}
    np.testing.assert_array_equal(gradient_vector(g, 8), np.arange(6.0))  # k ≥ P: the exact gradient
    assert gradient_vector(g, 4).shape == (4,)
    big = {"w": torch.zeros(EXACT_GRADIENT_MAX + 1)}
    with pytest.raises(ValueError, match="grad_projection: 0 .exact. would store a full"):
        gradient_vector(big, 0)
    assert gradient_vector(big, 1024).shape == (1024,)


@pytest.fixture(scope="module")
def probed(tiny_lm, blimp, tmp_path_factory):
    train, ev = data.split_pairs(data.load_blimp(blimp, TASKS), 100, 100, seed=0)
    out = tmp_path_factory.mktemp("probe")
    cfg = FTGDConfig(sparsity=0.01, lr=1e-3, steps=30)
    return out, probe(tiny_lm, train, ev, out, cfg, ProbeConfig(metric="margin")), (train, ev, cfg)


def test_three_task_probe_gives_positive_diagonal(probed):
    out, res, _ = probed
    t = res["transfer"]
    assert t.shape == (3, 3) and (np.diag(t) > 0).all()
    np.testing.assert_allclose(np.diag(res["transfer_norm"]), 1.0)
    assert np.allclose(res["gradient"], res["gradient"].T) and np.allclose(np.diag(res["gradient"]), 1)
    assert ((res["sharing"] >= 0) & (res["sharing"] <= 1)).all()
    tasks, mats = load_matrices(out / "matrices.npz")
    assert tasks == TASKS and set(mats) == {"transfer", "transfer_norm", "transfer_margin", "gradient", "sharing",
                                            "transfer_p", "transfer_q", "transfer_low", "transfer_high"}
    summary = json.loads((out / "probe.json").read_text())
    for task in TASKS:
        info = summary["per_task"][task]
        assert info["lm_loss_before"] > 0 and info["n_selected"] > 0
        assert (out / "tasks" / task / "eval2.parquet").exists()


def test_probe_resumes_without_redoing_finished_tasks(probed, tiny_lm):
    out, res, (train, ev, cfg) = probed
    stamp = {t: (out / "tasks" / t / "delta.safetensors").stat().st_mtime_ns for t in TASKS}
    (out / "tasks" / TASKS[1] / "ftgd.json").unlink()  # as if killed while tuning task 2
    again = probe(tiny_lm, train, ev, out, cfg, ProbeConfig(metric="margin"))
    assert (out / "tasks" / TASKS[0] / "delta.safetensors").stat().st_mtime_ns == stamp[TASKS[0]]
    assert (out / "tasks" / TASKS[1] / "delta.safetensors").stat().st_mtime_ns != stamp[TASKS[1]]
    np.testing.assert_allclose(again["transfer"], res["transfer"], atol=1e-6)  # seeded: same result
