"""How statistics, units and numbers are shown (taskspace.report.labels), against values worked out by hand."""

import dataclasses
from types import SimpleNamespace

import pytest

from taskspace.report import labels as L
from taskspace.stats.spaces import KINDS, Fit


@pytest.mark.parametrize(
    "value, key, shown",
    [
        (None, "mantel_r", "—"),
        (0.5, "mantel_r", "+0.500"),
        (-0.12345, "contrast", "-0.123"),
        (0.0123, "noise_floor", "+0.012"),  # a floor of values, not of p: signed like them
        (0.0456, "mantel_p", "0.046"),
        (1 / 280, "p_floor", "0.004"),  # exact over the 280 partitions of 3 × 3 tasks
        (1 / 1001, "p_floor", "0.0010"),  # 1,000 random relabellings: p at its floor, 4 decimals below 0.001
        (1 / 1001, "transfer_mantel_p", "0.0010"),
        (0.02, "p", "0.020"),
    ],
)
def test_format_stat_signs_statistics_and_gives_small_p_values_a_fourth_decimal(value, key, shown):
    assert L.format_stat(value, key) == shown


def test_stat_cell_writes_p_values_to_three_significant_digits():
    assert L.stat_cell(1 / 1001, "p_floor") == "0.000999"
    assert L.stat_cell(0.04, "contrast_p") == "0.04"
    assert L.stat_cell(0.5, "partial_r") == "+0.500"
    assert L.stat_cell(None, "mantel_p") == "—"


def test_metrics_formats():
    assert L.format_metric(0.25, "transfer_above_noise") == "25%"
    assert L.format_metric(None, "transfer_above_noise") == "—"
    assert L.format_metric(0.0004, "transfer_mantel_p") == "0.0004"
    assert L.format_metric(0.25, "self_transfer") == "+0.250"
    assert L.compact(0.5234, "transfer_mantel_r") == "+0.52"
    assert L.compact(0.8512, "transfer_reliability") == "0.85"
    assert L.compact(0.0123, "lm_loss_rise") == "+0.012"
    assert L.compact(None, "self_transfer") == ""


def test_p_method_names_the_relabellings_and_the_floor():
    assert L.p_method(True, 15, 1 / 15) == "exact over 15 relabellings, p ≥ 0.067"
    assert L.p_method(False, 1000, 1 / 1001) == "1,000 random relabellings, p ≥ 0.0010"
    assert L.p_method(None, None, None) == "—"
    assert L.p_source(True, 280) == "exact (280)" and L.p_source(False, 1000) == "random (1,000)"
    assert L.p_source(None, None) == "—"


@pytest.mark.parametrize(
    "kind, metric, shown",
    [
        ("transfer", "accuracy", "accuracy (fraction of pairs)"),
        ("transfer", "margin", "mean margin (nats)"),
        ("transfer_control", "margin", "mean margin (nats)"),
        ("transfer_minus_control", "accuracy", "accuracy (fraction of pairs)"),
        ("transfer_margin", "accuracy", "mean margin (nats)"),  # in nats whatever the probing metric
        ("transfer_norm", "margin", "fraction of the tuned task's own gain"),
        ("gradient", "margin", "cosine"),
        ("sharing", "accuracy", "Jaccard"),
    ],
)
def test_unit_per_kind_and_metric(kind, metric, shown):
    assert L.unit(kind, metric) == shown


def test_unit_name_drops_the_gloss():
    assert L.unit_name("transfer", "margin") == "mean margin"
    assert L.unit_name("transfer") == "accuracy"
    assert L.unit_name("gradient") == "cosine"


def test_every_kind_is_described_and_every_named_statistic_is_a_fit_field():
    assert set(L.DESCRIPTIONS) == set(KINDS)
    fields = {f.name for f in dataclasses.fields(Fit)}
    assert set(L.NAMES) <= fields and set(L.REPORT_COLUMNS) <= fields


def test_short_headings_and_captions():
    assert L.short("transfer_contrast") == L.short("contrast") == "w−b"
    assert L.short("transfer_reliability") == "rel." and L.short("lm_loss_rise") == "Δloss"
    assert L.caption({"transfer_mantel_r": "r", "lm_loss_rise": "Δloss"}) == (
        "the transfer space — r: Spearman with the hypothesis, Δloss: mean LM-loss rise on other tasks (nats/token)"
    )
    assert L.GLOSSARY["w−b"].startswith("mean value within a phenomenon")


def test_one_line_summaries():
    fit = SimpleNamespace(mantel_r=0.512, mantel_p=1 / 1001, contrast=0.0341)
    assert L.fit_summary(fit) == "Mantel r=+0.512 p=0.0010, within − between=+0.034"
    c = SimpleNamespace(kind="transfer", a="tiny@step30", b="tiny@step60", r=0.4123, p=0.02)
    assert L.comparison_summary(c) == "transfer: tiny@step30 vs tiny@step60: r=+0.412 p=0.020"


def test_trust_lines_say_what_is_measured_or_which_setting_measures_it():
    s = {"reliability_sb": 0.8512, "reliability": 0.7411}
    transfer = {**s, "noise_floor": 0.01234, "cells_above_noise": 5, "cells": 12, "self_transfer": 0.25,
                "lm_loss_rise": 0.0123}  # fmt: skip
    assert L.trust_lines("transfer", s, transfer) == [
        "reliability: 0.85 (split-half 0.74)",
        "noise floor: 0.0123; 5 of 12 cells above",
        "own-task gain +0.250, LM-loss rise +0.012",
    ]
    assert L.trust_lines("gradient", s, transfer) == ["reliability: 0.85 (split-half 0.74)"]
    assert L.trust_lines("transfer", {}, {}, brief=True) == ["reliability: n/a", "noise floor: n/a"]
    assert L.trust_lines("transfer", {}, {}) == [
        "reliability: n/a (one replicate; set probing.ftgd_seeds)",
        "noise floor: n/a (no control; set probing.control)",
    ]
