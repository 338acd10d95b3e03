from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from taskspace.errors import ConfigError
from taskspace.pipeline import dvcfile
from taskspace.pipeline import settings as P
from taskspace.pipeline.settings import Settings
from taskspace.runs import Run, expand_runs, model_revisions

ROOT = Path(__file__).resolve().parents[1]


def committed(path: str) -> str:
    """A file as committed (the main job applies its experiment to the workspace's copy)."""
    import subprocess

    res = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True)
    return res.stdout if res.returncode == 0 else (ROOT / path).read_text()


def in_project(composed: Path) -> Settings:
    """Settings of a params file composed elsewhere as if it were the project's (`data_files`, derived by Hydra,
    is relative to the project folder)."""
    return Settings.from_dict(P.load_params(composed), ROOT / "params.yaml")


def profile_settings(tmp_path: Path, profile: str) -> Settings:
    """A committed profile composed as `dvc exp run -S profile=…` composes it, as the run's settings."""
    return in_project(P.compose_params([f"profile={profile}"], tmp_path / f"{profile}.yaml", str(ROOT / "conf")))


def test_committed_params_yaml_is_the_composed_pythia_profile(tmp_path):
    out = P.compose_params([], tmp_path / "params.yaml", conf=str(ROOT / "conf"))
    assert yaml.safe_load(out.read_text()) == yaml.safe_load(committed("params.yaml"))
    (tmp_path / "committed.yaml").write_text(committed("params.yaml"))
    p = P.load_params(tmp_path / "committed.yaml")
    assert set(p["models"]) == {"pythia-70m", "pythia-160m", "pythia-410m"}
    assert p["ftgd"]["sparsity"] == 0.01 and p["data"]["n_train"] == 500
    # the measured best (docs/concepts/statistics.md), not the paper's 100 steps at lr 1e-4 in accuracy
    assert (p["ftgd"]["lr"], p["ftgd"]["steps"], p["probing"]["metric"]) == (3e-5, 10, "margin")


def test_offline_profile_and_per_model_overrides(tmp_path):
    out = P.compose_params(["profile=offline", "ftgd.sparsity=0.05"], tmp_path / "p.yaml", str(ROOT / "conf"))
    s = in_project(out)
    assert set(s.models) == {"tiny", "smollm2"} and s.data.source == "auto"
    assert s.ftgd("tiny").lr == 0.001  # the model's own override
    assert s.ftgd("smollm2").lr == 3e-5  # the profile's (measured, docs/concepts/statistics.md)
    assert s.ftgd("smollm2").sparsity == 0.05 and s.ftgd("tiny").sparsity == 0.05  # the -S override, under both
    assert s.ftgd().batch_size == 8 == s.ftgd("tiny").batch_size  # the profile's shared value under the override
    assert model_revisions(s.raw["models"]["smollm2"]) == ["main"]
    assert s.tiny("tiny").steps == 300 and s.tiny("tiny").lr == 3e-3  # the file's value, and the default
    assert s.settings_hash(Run("tiny", "step300")) != s.settings_hash(Run("smollm2", "main"))
    # checkpoints of one model share their settings hash; a variant does not
    assert s.settings_hash(Run("tiny", "step100")) == s.settings_hash(Run("tiny", "step300"))


def test_runs_are_derived_from_models_by_hydra(tmp_path):
    """`runs` (one stage entry per model × revision) follows `models`, including a `-S` override of revisions."""
    over = ["profile=offline", "models.tiny.revisions=[step200,step300]"]
    p = P.load_params(P.compose_params(over, tmp_path / "p.yaml", str(ROOT / "conf")))
    assert list(p["runs"]) == ["tiny-step200", "tiny-step300", "smollm2-main"]
    assert p["runs"]["tiny-step200"] == {
        "prefix": None,  # always written: eval's params name it (a null one is hashed as absent)
        "spec": "data/tiny/tiny",
        "scale": "0.4M",
        "ftgd": {"lr": 0.001},
        "model": "tiny",
        "revision": "step200",
        "weights": "data/tiny/tiny/step200",  # dvc.yaml's dep: this checkpoint's folder, built by tiny@tiny
    }
    assert p["runs"]["smollm2-main"]["weights"] == "taskspace/lm/models.py"  # bundled: the loading code
    assert [r.label for r in Settings.from_dict(p).runs] == ["tiny@step200", "tiny@step300", "smollm2@main"]
    assert Run("pythia-1.4b", "step1000").stage_key == "pythia-1_4b-step1000"  # no dots in param paths
    p["models"]["tiny"]["revisions"] = ["step300"]
    with pytest.raises(P.ParamsError, match=r"`runs` does not match `models` \(extra tiny-step200\)"):
        Settings.from_dict(p)


def _settings(tmp_path, **sections) -> Settings:
    p = {"data": {}, "models": {"m": {"spec": "m"}}, "ftgd": {}, "probing": {}, "analysis": {}, **sections}
    specs = all("spec" in m for m in p["models"].values())  # runs as Hydra derives them (none without a spec)
    p = {**p, "runs": expand_runs(p["models"]) if specs else {}, "data_files": "taskspace/blimp/data.py"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    return Settings.load(tmp_path / "params.yaml")


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"ftgd": {"sparsty": 0.1}}, "unknown key 'ftgd.sparsty' — did you mean 'ftgd.sparsity'"),
        ({"models": {"m": {}}}, "models.m needs a 'spec'"),
        ({"models": {"m": {"spec": "m", "revison": ["step1"]}}}, "unknown key 'models.m.revison' — did you mean"),
        ({"models": {"m": {"spec": "m", "ftgd": {"lr": 0}}}}, r"ftgd.lr = 0 is invalid"),
        ({"models": {"m": {"spec": "m", "compile": "yes"}}}, "models.m.compile = 'yes' is invalid"),
        ({"tiny_models": {"t": {"stpes": 3}}}, "unknown key 'tiny_models.t.stpes' — did you mean 'tiny_models.t.st"),
        ({"tiny_models": {"t": {"steps": 0}}}, "tiny_models.t.steps = 0 is invalid"),
        ({"executor": {"kind": "gpu"}}, "executor.kind = 'gpu' is invalid"),
        ({"models": {}}, "`models` needs at least one model"),
    ],
)
def test_bad_params_are_named_when_settings_load(tmp_path, sections, message):
    with pytest.raises(ConfigError, match=message):
        _settings(tmp_path, **sections)


def test_lookups_name_what_is_missing(tmp_path):
    s = _settings(tmp_path)
    with pytest.raises(P.ParamsError, match="no model 'x'"):
        s.model("x")
    with pytest.raises(P.ParamsError, match="models.m has no revision 'step9'"):
        s.run("m", "step9")
    with pytest.raises(P.ParamsError, match="no tiny model 't'"):
        s.tiny("t")
    with pytest.raises(P.ParamsError, match="not found"):
        Settings.load(tmp_path / "missing.yaml")
    with pytest.raises(P.ParamsError, match="missing section 'analysis'"):
        Settings.from_dict({k: v for k, v in s.raw.items() if k != "analysis"})
    typo = {("analysys" if k == "analysis" else k): v for k, v in s.raw.items()}  # named as itself, not "missing"
    with pytest.raises(P.ParamsError, match="unknown section 'analysys' — did you mean 'analysis'"):
        Settings.from_dict(typo)


def test_settings_travel_to_workers_intact(tmp_path):
    """Shard workers receive Settings (pickled by the local and SLURM executors), not the dict."""
    import pickle

    s = _settings(tmp_path, tiny_models={"t": {"steps": 3}})
    back = pickle.loads(pickle.dumps(s))
    assert back == s and back.stamp("ftgd", Run("m")) == s.stamp("ftgd", Run("m"))
    assert back.tiny("t").build_args()["steps"] == 3


def test_pythia_local_profile_points_at_revision_folders(tmp_path):
    p = P.load_params(P.compose_params(["profile=pythia-local"], tmp_path / "p.yaml", str(ROOT / "conf")))
    (tmp_path / "committed.yaml").write_text(committed("params.yaml"))
    hub = P.load_params(tmp_path / "committed.yaml")
    assert p["runs"].keys() == hub["runs"].keys()  # the same runs as the hub profile, from local folders
    assert {m["spec"] for m in p["models"].values()} == {f"models/{m}" for m in hub["models"]}
    assert p["data"]["source"] == "auto" and p["data"]["n_train"] == hub["data"]["n_train"]


def test_committed_dvc_yaml_is_generated_from_the_stage_specs():
    assert (ROOT / "dvc.yaml").read_text() == dvcfile.dvc_yaml_text()
    stages = yaml.safe_load(dvcfile.dvc_yaml_text())["stages"]
    assert stages["ftgd"]["do"]["params"] == list(dvcfile.STAGES["ftgd"].params)
    assert "taskspace/method/ftgd.py" in stages["ftgd"]["do"]["deps"]  # editing the science reruns what it computes
    assert "probing.metric" not in stages["ftgd"]["do"]["params"]  # … and a metric change does not retune


def test_stamps_hash_exactly_the_stage_params(tmp_path):
    p = P.load_params(P.compose_params(["profile=offline"], tmp_path / "p.yaml", str(ROOT / "conf")))
    key = "tiny-step300"
    stamp = dvcfile.stamp
    base = {stage: stamp(stage, p, key) for stage in ("eval", "ftgd", "probe")}
    assert base == {stage: Settings.from_dict(p).stamp(stage, Run("tiny", "step300")) for stage in base}
    metric = {**p, "probing": {**p["probing"], "metric": "accuracy"}}
    assert stamp("ftgd", metric, key) == base["ftgd"] and stamp("probe", metric, key) != base["probe"]
    lr = {**p, "ftgd": {**p["ftgd"], "lr": 0.5}}
    assert stamp("eval", lr, key) == base["eval"] and stamp("ftgd", lr, key) != base["ftgd"]
    batch = {**p, "probing": {**p["probing"], "eval_batch_size": 7}}  # speed only: nothing is stale
    assert all(stamp(s, batch, key) == base[s] for s in base)
    bf16 = {**p, "compute": {**p["compute"], "dtype": "bf16"}}  # another precision: every model pass is stale
    assert all(stamp(s, bf16, key) != base[s] for s in base) and stamp("analyze", bf16) == stamp("analyze", p)


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("ftgd", "lr", -1, "ftgd.lr = -1 is invalid"),
        ("ftgd", "steps", 0, "ftgd.steps = 0 is invalid: use an integer ≥ 1"),
        ("ftgd", "batch_size", 0, "ftgd.batch_size = 0 is invalid"),
        ("ftgd", "sparsity", 1.5, "ftgd.sparsity = 1.5 is invalid"),
        ("probing", "metric", "acc", "probing.metric = 'acc' is invalid: use one of accuracy, margin"),
        ("data", "n_train", 0, "data.n_train = 0 is invalid: tuning needs"),
        ("analysis", "permutations", 0, "analysis.permutations = 0 is invalid"),
        ("compute", "dtype", "bf32", "compute.dtype = 'bf32' is invalid: use one of auto, fp32, bf16, fp16"),
        ("compute", "device", "tpu", "compute.device = 'tpu' is invalid: use one of auto, cuda, cpu"),
    ],
)
def test_params_are_validated_up_front(tmp_path, section, key, value, message):
    p = P.load_params(P.compose_params(["profile=offline"], tmp_path / "p.yaml", str(ROOT / "conf")))
    p[section][key] = value
    with pytest.raises(ConfigError, match=message):
        Settings.from_dict(p)


def test_study_profile_covers_every_phenomenon_twice_with_replicates_and_control(tmp_path):
    from taskspace.blimp.meta import PARADIGMS

    s = profile_settings(tmp_path, "study")
    phenomena = [PARADIGMS[t][0] for t in s.data.tasks]
    assert len(s.data.tasks) == 26 and all(phenomena.count(ph) == 2 for ph in set(phenomena))
    assert len(set(phenomena)) == 13 and [r.label for r in s.runs] == ["smollm2@main"]
    assert s.probe.control and len(s.replicate_seeds("smollm2")) == 2


@pytest.mark.parametrize("profile", sorted(p.stem for p in (ROOT / "conf" / "profile").glob("*.yaml")))
def test_every_profile_composes_into_valid_settings(tmp_path, profile):
    """A typo in a profile the docs tell users to run fails here, not after an hour of FTGD."""
    assert profile_settings(tmp_path, profile).runs


def test_the_67_task_profiles_share_settings_but_gemmas_lr(tmp_path):
    """study67 and gemma67 are the two scales of one comparison: the same tasks, splits and FTGD but the lr that
    keeps Gemma from collapsing (measured in conf/profile/gemma67.yaml)."""
    smol, gemma = (profile_settings(tmp_path, p) for p in ("study67", "gemma67"))
    assert smol.data == gemma.data and not smol.data.tasks  # all 67
    assert smol.ftgd("smollm2").lr == 3e-5 and gemma.ftgd("gemma3").lr == 5e-6
    assert replace(smol.ftgd("smollm2"), lr=1.0) == replace(gemma.ftgd("gemma3"), lr=1.0)
    assert (smol.probe.transfer, gemma.probe.transfer) == ("both", "linear")


def test_gemma26_is_gemma67_on_the_studys_tasks_with_exact_transfer(tmp_path):
    """gemma26's exact cells are read against SmolLM2's on the same tasks: its task list must stay the study's and
    everything else gemma67's (the composition inherits it; the list is written out twice)."""
    study, g67, g26 = (profile_settings(tmp_path, p) for p in ("study", "gemma67", "gemma26"))
    assert len(g26.data.tasks) == 26 and g26.data.tasks == study.data.tasks
    assert replace(g26.data, tasks=()) == replace(g67.data, tasks=())
    assert g26.ftgd("gemma3") == g67.ftgd("gemma3") and g26.runs == g67.runs
    assert g26.probe == replace(g67.probe, transfer="exact")


def test_compute_setting_reaches_the_model_and_refuses_a_missing_gpu(tmp_path):
    """`compute` decides the device kind and dtype a run's model is loaded with; asking for cuda where torch sees
    no GPU fails in one line naming the setting (a job on a node without a GPU must not run on its CPU in fp32)."""
    import torch

    from taskspace.lm.models import ModelError
    from taskspace.lm.tiny import build_tiny
    from taskspace.pipeline.replicates import load_run_model

    build_tiny(tmp_path / "m", ["the cat sleeps", "the dogs sleep"], [], steps=0)
    models = {"m": {"spec": str(tmp_path / "m"), "revisions": ["step0"]}}
    p = {"data": {}, "models": models, "ftgd": {}, "probing": {}, "analysis": {}}
    p = {**p, "runs": expand_runs(models), "data_files": "taskspace/blimp/data.py"}
    run = Run("m", "step0")
    bf16 = Settings.from_dict({**p, "compute": {"device": "cpu", "dtype": "bf16"}})
    lm = load_run_model(bf16, run, say=lambda _: None)
    assert lm.dtype == torch.bfloat16 and lm.device.type == "cpu"
    assert load_run_model(Settings.from_dict(p), run, say=lambda _: None).dtype == torch.float32  # auto on a CPU
    if not torch.cuda.is_available():
        cuda = Settings.from_dict({**p, "compute": {"device": "cuda"}})
        with pytest.raises(ModelError, match=r"^compute.device cuda: no CUDA device here .*use compute.device cpu"):
            load_run_model(cuda, run, say=lambda _: None)
