from pathlib import Path

import pytest
import yaml

from taskspace import pipeline

ROOT = Path(__file__).resolve().parents[1]


def test_committed_params_yaml_is_the_composed_pythia_profile(tmp_path):
    out = pipeline.compose_params([], tmp_path / "params.yaml", conf=str(ROOT / "conf"))
    assert yaml.safe_load(out.read_text()) == yaml.safe_load((ROOT / "params.yaml").read_text())
    p = pipeline.load_params(ROOT / "params.yaml")
    assert set(p["models"]) == {"pythia-70m", "pythia-160m", "pythia-410m"}
    assert p["ftgd"]["sparsity"] == 0.01 and p["ftgd"]["lr"] == 0.0001 and p["data"]["n_train"] == 500


def test_offline_profile_and_per_model_overrides(tmp_path):
    out = pipeline.compose_params(["profile=offline", "ftgd.sparsity=0.05"], tmp_path / "p.yaml", str(ROOT / "conf"))
    p = pipeline.load_params(out)
    assert set(p["models"]) == {"tiny", "smollm2"} and p["data"]["source"] == "auto"
    assert pipeline.ftgd_config(p, "tiny").lr == 0.001  # the model's own override
    assert pipeline.ftgd_config(p, "smollm2").lr == 0.0001  # the shared default
    assert pipeline.ftgd_config(p, "smollm2").sparsity == 0.05  # the -S override
    assert pipeline.revisions(p["models"]["smollm2"]) == ["main"]
    assert pipeline.params_hash(p, "tiny") != pipeline.params_hash(p, "smollm2")


def test_runs_are_derived_from_models_by_hydra(tmp_path):
    """`runs` (one stage entry per model × revision) follows `models`, including a `-S` override of revisions."""
    over = ["profile=offline", "models.tiny.revisions=[step200,step300]"]
    p = pipeline.load_params(pipeline.compose_params(over, tmp_path / "p.yaml", str(ROOT / "conf")))
    assert list(p["runs"]) == ["tiny-step200", "tiny-step300", "smollm2-main"]
    assert p["runs"]["tiny-step200"] == {
        "spec": "data/prepare/models/tiny",
        "scale": "0.4M",
        "ftgd": {"lr": 0.001},
        "model": "tiny",
        "revision": "step200",
    }
    pipeline.check_runs(p)
    assert pipeline.run_key("pythia-1.4b", "step1000") == "pythia-1_4b-step1000"  # no dots in param paths
    p["models"]["tiny"]["revisions"] = ["step300"]
    with pytest.raises(pipeline.ParamsError, match=r"`runs` does not match `models` \(extra tiny-step200\)"):
        pipeline.check_runs(p)


def test_bad_params_are_named(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text(
        yaml.safe_dump({"data": {}, "models": {"m": {}}, "ftgd": {"sparsty": 0.1}, "probing": {}, "analysis": {}})
    )
    p = pipeline.load_params(f)
    with pytest.raises(pipeline.ParamsError, match="unknown key 'ftgd.sparsty'"):
        pipeline.ftgd_config(p)
    with pytest.raises(pipeline.ParamsError, match="models.m needs a 'spec'"):
        pipeline.model_entry(p, "m")
    with pytest.raises(pipeline.ParamsError, match="no model 'x'"):
        pipeline.model_entry(p, "x")
    with pytest.raises(pipeline.ParamsError, match="not found"):
        pipeline.load_params(tmp_path / "missing.yaml")


def test_pythia_local_profile_points_at_revision_folders(tmp_path):
    p = pipeline.load_params(pipeline.compose_params(["profile=pythia-local"], tmp_path / "p.yaml", str(ROOT / "conf")))
    hub = pipeline.load_params(ROOT / "params.yaml")
    assert p["runs"].keys() == hub["runs"].keys()  # the same runs as the hub profile, from local folders
    assert {m["spec"] for m in p["models"].values()} == {f"models/{m}" for m in hub["models"]}
    assert p["data"]["source"] == "auto" and p["data"]["n_train"] == hub["data"]["n_train"]
