"""Seeds as runs of one model family (#26): `models.<m>.seeds` expands into seed variants, the analysis reports each
fit's mean ± SD over seeds, the checkpoint-to-next Spearman beside the seed-to-seed one, and compares the seeds'
last checkpoints as `seed`, not `scale`. Hand-computed spreads, then two tiny-model seeds through `dvc repro`."""

import json
import math

import numpy as np
import pytest
from conftest import derived, init_repo, pipeline_params, sh

from taskspace.errors import ConfigError
from taskspace.pipeline.settings import Settings
from taskspace.runs import expand_runs, expand_seeds
from taskspace.stats.seeds import mean_sd, scale_spread, seed_spread
from taskspace.stats.spaces import Fit, TaskSpaces

T4 = ["a", "b", "c", "d"]
M = np.array([[0, 1, 2, 3], [1, 0, 4, 5], [2, 4, 0, 6], [3, 5, 6, 0]], dtype=float)  # off-diagonal ranks 1..6


def space(m: np.ndarray, key: str) -> TaskSpaces:
    return TaskSpaces(T4, {"transfer": m}, key)


def fit(r: float, contrast: float) -> dict:
    return {"transfer": Fit(r, 0.5, None, None, contrast, 0.5)}


def test_mean_sd_is_the_sample_sd_over_known_values():
    assert mean_sd([0.2, 0.4]) == (pytest.approx(0.3), pytest.approx(math.sqrt(0.02)))  # (0.1² + 0.1²) / (2 − 1)
    assert mean_sd([0.5, None, float("nan")]) == (0.5, None)  # one known value: no SD
    assert mean_sd([None]) == (None, None)


def test_seed_spread_against_hand_computed_values():
    """Seed 0 keeps its ranking from step1 to step2 (r = +1); seed 1 reverses it (r = −1). At step1 the seeds
    agree exactly (+1); at step2 they are reversed (−1). Fits: r 0.2 / 0.4 and 0.6 / 0.0 over the seeds."""
    s0 = [("step1", space(M, "s0@1")), ("step2", space(M * 2, "s0@2"))]
    s1 = [("step1", space(M + 10 * ~np.eye(4, dtype=bool), "s1@1")), ("step2", space(-M, "s1@2"))]
    fits = {"s0@1": fit(0.2, 0.1), "s1@1": fit(0.4, 0.3), "s0@2": fit(0.6, 0.0), "s1@2": fit(0.0, 0.2)}
    sp = seed_spread([(0, "m", s0), (1, "m-seed1", s1)], fits, "transfer")
    assert sp.seeds == [0, 1] and sp.models == ["m", "m-seed1"] and sp.revisions == ["step1", "step2"]
    assert sp.r_mean == pytest.approx([0.3, 0.3]) and sp.r_sd == pytest.approx([math.sqrt(0.02), math.sqrt(0.18)])
    assert sp.contrast_mean == pytest.approx([0.2, 0.1]) and sp.contrast_sd[1] == pytest.approx(math.sqrt(0.02))
    assert sp.with_next_mean[0] == pytest.approx(0.0) and sp.with_next_sd[0] == pytest.approx(math.sqrt(2))
    assert sp.with_next_mean[1] is None  # the last revision has no next
    assert sp.seed_r_mean == pytest.approx([1.0, -1.0]) and sp.seed_r_sd == [None, None]  # one pair of seeds


def test_scale_comparisons_between_families_of_seeds_give_r_mean_and_sd():
    from types import SimpleNamespace as C

    fam = {"s0": "small", "s1": "small", "b0": "big", "b1": "big", "x": "other"}
    comps = [C(relation="scale", a=a, b=b, kind="transfer", r=r) for a, b, r in
             (("s0", "b0", 0.5), ("s0", "b1", 0.3), ("s1", "b0", 0.4), ("s1", "b1", 0.2), ("s0", "x", 0.9))]
    comps.append(C(relation="seed", a="s0", b="s1", kind="transfer", r=0.8))  # not a scale comparison
    (out,) = scale_spread(comps, fam)  # small–other has one comparison: no spread to give
    assert (out["a"], out["b"], out["kind"], out["pairs"]) == ("small", "big", "transfer", 4)
    assert out["r_mean"] == pytest.approx(0.35) and out["r_sd"] == pytest.approx(np.std([0.5, 0.3, 0.4, 0.2], ddof=1))


def test_seed_spread_uses_the_revisions_every_seed_has():
    s0 = [("step1", space(M, "x1")), ("step2", space(M, "x2")), ("step3", space(M, "x3"))]
    s1 = [("step1", space(M, "y1")), ("step3", space(M, "y3"))]
    sp = seed_spread([(0, "m", s0), (2, "m-seed2", s1)], {}, "transfer")
    assert sp.revisions == ["step1", "step3"] and sp.with_next_mean == [1.0, None] and sp.r_mean == [None, None]


def test_seeds_expand_into_models_of_one_family_without_touching_the_base_runs():
    before = {"p": {"spec": "EleutherAI/pythia-160m", "scale": "160M", "revisions": ["step1000", "step2000"]}}
    after = {"p": {**before["p"], "seeds": {1: "EleutherAI/pythia-160m-seed1", 2: "EleutherAI/pythia-160m-seed2"}}}
    models = expand_seeds(after)
    assert list(models) == ["p", "p-seed1", "p-seed2"] and models["p"] == {**after["p"], "family": "p", "seed": 0}
    assert models["p-seed2"] == {**before["p"], "spec": "EleutherAI/pythia-160m-seed2", "family": "p", "seed": 2}
    runs_before, runs_after = expand_runs(before), expand_runs(after)
    assert set(runs_after) == set(runs_before) | {f"p-seed{k}-step{s}" for k in (1, 2) for s in (1000, 2000)}
    assert all(runs_after[k] == v for k, v in runs_before.items())  # listing seeds recomputes no existing run


def test_bad_seed_settings_are_one_line_naming_the_key(blimp):
    p = pipeline_params(blimp)
    for seeds, where in (({"one": "data/tiny/x"}, "models.tiny.seeds"), ({0: "data/tiny/x"}, "models.tiny.seed")):
        bad = derived({**p, "models": {"tiny": {**p["models"]["tiny"], "seeds": seeds}}})
        with pytest.raises(ConfigError) as e:
            Settings.from_dict(bad)
        assert str(e.value).startswith(where) and "\n" not in str(e.value)


@pytest.mark.slow
def test_two_tiny_seeds_aggregate_to_mean_and_sd_through_dvc_repro(blimp, tmp_path):
    """Two tiny models trained with seeds 0 and 1, listed as seeds of one model: every output knows the family."""
    p = pipeline_params(blimp)
    p["tiny_models"] = {"tiny": {"steps": 60, "save_every": 30, "seed": 0}, "tiny1": {"steps": 60, "save_every": 30,
                                                                                    "seed": 1}}  # fmt: skip
    p["models"] = {"tiny": {**p["models"]["tiny"], "seeds": {1: "data/tiny/tiny1"}}}
    p["data"]["n_eval"], p["ftgd"]["steps"] = 10, 2
    repo = tmp_path / "repo"
    repo.mkdir()
    init_repo(repo, derived(p))
    res = sh(repo, "dvc", "repro")
    out = " ".join((res.stdout + res.stderr).split())
    analysis = json.loads((repo / "data" / "analyze" / "analysis.json").read_text())
    sp = analysis["seeds"]["tiny"]["transfer"]
    assert sp["seeds"] == [0, 1] and sp["models"] == ["tiny", "tiny-seed1"] and sp["revisions"] == ["step30", "step60"]
    fits = {key.split("#")[0]: kinds["transfer"] for key, kinds in analysis["runs"].items()}
    for i, rev in enumerate(sp["revisions"]):  # the spread is over the runs' own fits
        rs = [fits[f"{m}@{rev}"]["mantel_r"] for m in sp["models"]]
        assert sp["r_mean"][i] == pytest.approx(np.mean(rs)) and sp["r_sd"][i] == pytest.approx(np.std(rs, ddof=1))
    from taskspace.stats.analysis import spearman_offdiag

    m = {mod: np.load(repo / "data" / "probe" / mod / "step60" / "matrices.npz")["transfer"] for mod in sp["models"]}
    assert sp["seed_r_mean"][1] == pytest.approx(spearman_offdiag(m["tiny"], m["tiny-seed1"]))
    assert f"tiny (seeds 0, 1) transfer at step60: fit r {sp['r_mean'][1]:+.3f} ± {sp['r_sd'][1]:.3f}" in out
    relations = {(c["a"].split("#")[0], c["b"].split("#")[0]): c["relation"] for c in analysis["comparisons"]}
    assert relations[("tiny@step60", "tiny-seed1@step60")] == "seed"
    info = json.loads((repo / "data" / "probe" / "tiny-seed1" / "step60" / "run.json").read_text())
    assert (info["family"], info["seed"], info["spec"]) == ("tiny", 1, "data/tiny/tiny1")
    from taskspace.index import Index
    from taskspace_tui.screens.compare import seed_lines

    idx = Index(repo / "data" / "index" / "taskspace.duckdb")
    try:
        runs = {r["label"]: r for r in idx.runs()}
        assert (runs["tiny-seed1@step30"]["family"], runs["tiny-seed1@step30"]["seed"]) == ("tiny", 1)
        rows = idx.seed_spread(runs["tiny-seed1@step60"]["run_id"], "transfer")  # any seed finds its family's
    finally:
        idx.close()
    assert [r["revision"] for r in rows] == ["step30", "step60"]
    assert [r["r_mean"] for r in rows] == pytest.approx(sp["r_mean"])
    text = seed_lines(rows)
    assert text.splitlines()[0] == "seeds of tiny (Spearman r; mean ± SD over seeds)"
    assert f"{sp['r_mean'][0]:+.3f} ± {sp['r_sd'][0]:.3f}" in text.splitlines()[2]


def test_seed_lines_show_checkpoint_change_beside_seed_to_seed():
    from taskspace_tui.screens.compare import seed_lines

    row = {"family": "p", "revision": "step1", "r_mean": 0.25, "r_sd": 0.05, "with_next_mean": 0.5,
           "with_next_sd": None, "seed_r_mean": None, "seed_r_sd": None}  # fmt: skip
    lines = seed_lines([row]).splitlines()
    assert lines[2].split() == ["step1", "+0.250", "±", "0.050", "+0.500", "n/a"]
    assert seed_lines([]) == ""

