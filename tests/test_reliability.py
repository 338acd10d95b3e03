"""Noise floor, replicates and reliability: the maths by hand, the control on a real (tiny) model."""

import numpy as np
import pytest
from scipy import stats

from taskspace.blimp import data
from taskspace.config import FTGDConfig, ProbeConfig
from taskspace.lm.scoring import score_pairs, task_accuracy
from taskspace.method.ftgd import Delta
from taskspace.method.probing import run_ftgd
from taskspace.runs import Layout
from taskspace.stats.analysis import spearman_offdiag
from taskspace.stats.reliability import aggregate, interval, noise_floor, spearman_brown, split_half, swap_labels
from taskspace.stats.spaces import TaskSpaces


def test_spearman_brown_by_hand():
    assert spearman_brown(0.5) == pytest.approx(2 * 0.5 / (1 + 0.5))  # 0.667
    assert spearman_brown(0.6, k=3) == pytest.approx(3 * 0.6 / (1 + 2 * 0.6))
    assert spearman_brown(None) is None and spearman_brown(1.0) == 1.0


def test_interval_by_hand():
    reps = np.array([[[1.0, 2.0], [0.0, 4.0]], [[3.0, 2.0], [2.0, 0.0]]])  # cell (0,0): 1 and 3
    half = interval(reps)
    t = stats.t.ppf(0.975, 1)  # 12.706 with one degree of freedom
    assert half[0, 0] == pytest.approx(t * np.sqrt(2) / np.sqrt(2))  # sd of (1, 3) is √2
    assert half[0, 1] == 0 and np.isnan(interval(reps[:1])).all()


def test_split_half_by_hand():
    rng = np.random.default_rng(0)
    reps = rng.normal(size=(4, 5, 5))
    assert split_half(reps[:2]) == pytest.approx(spearman_offdiag(reps[0], reps[1]))
    halves = [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]  # the three balanced halvings of 4
    want = np.mean([spearman_offdiag(reps[list(a)].mean(0), reps[list(b)].mean(0)) for a, b in halves])
    assert split_half(reps) == pytest.approx(want)
    assert split_half(reps[:1]) is None


def test_noise_floor_by_hand():
    transfer = np.array([[9.0, 0.5, -2.0], [0.1, 9.0, 0.3], [1.5, -0.2, 9.0]])
    controls = np.array([[[0, 0.2, -0.4], [0.1, 0, 0.3], [1.0, -0.6, 0]]])
    floor = np.quantile([0.2, 0.4, 0.1, 0.3, 1.0, 0.6], 0.95)  # the 95th percentile of |control| off the diagonal
    assert noise_floor(transfer, controls) == {"noise_floor": pytest.approx(floor), "cells_above_noise": 2, "cells": 6}


def test_swap_labels_swaps_exactly_half():
    s = swap_labels(33, 7)
    assert s.sum() == 16 and np.array_equal(s, swap_labels(33, 7)) and not np.array_equal(s, swap_labels(33, 8))


def test_aggregate_means_intervals_and_control():
    tasks = ["a", "b", "c", "d"]
    rng = np.random.default_rng(1)
    reps = [TaskSpaces(tasks, {k: rng.normal(size=(4, 4)) for k in ("transfer", "gradient", "sharing")}) for _ in "xyz"]
    ctrl = [TaskSpaces(tasks, {"transfer": rng.normal(size=(4, 4))}) for _ in "xyz"]
    spaces, summary = aggregate(reps, ctrl)
    mean = np.mean([r.matrices["transfer"] for r in reps], axis=0)
    np.testing.assert_allclose(spaces.matrices["transfer"], mean)
    stacked = np.stack([r.matrices["transfer"] for r in reps])
    np.testing.assert_allclose(spaces.matrices["transfer_ci"], interval(stacked))
    control = np.mean([c.matrices["transfer"] for c in ctrl], axis=0)
    np.testing.assert_allclose(spaces.matrices["transfer_minus_control"], mean - control)
    assert summary["replicates"] == 3 and set(summary["reliability"]) == {"transfer", "gradient", "sharing"}
    assert summary["noise"]["cells"] == 12


def test_label_swapped_control_moves_its_task_by_about_nothing(tiny_lm, blimp, tmp_path):
    task = "anaphor_gender_agreement"
    train, ev = data.split_pairs(data.load_blimp(blimp, [task]), 32, 50, 0)
    before = task_accuracy(score_pairs(tiny_lm, ev))[0]["mean_margin"]
    gains = {}
    for control in (False, True):
        gains[control] = []
        for seed in range(4):
            layout = Layout.single(tmp_path / f"{control}-{seed}")
            cfg = FTGDConfig(lr=1e-3, steps=30, batch_size=8, seed=seed)
            run_ftgd(tiny_lm, train, layout, cfg, ProbeConfig(), control=control)
            delta = Delta.load(layout.delta(task))
            delta.apply(tiny_lm.model)
            gains[control].append(task_accuracy(score_pairs(tiny_lm, ev))[0]["mean_margin"] - before)
            delta.remove(tiny_lm.model)
    real, noise = np.mean(gains[False]), np.mean(gains[True])
    assert real > 1.0 and abs(noise) < 0.2 * real  # measured: +5.2 against −0.09
