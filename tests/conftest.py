"""Shared fixtures: the real BLiMP folder and a tiny GPT-NeoX with a checkpoint series, built once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from taskspace.blimp import data  # noqa: E402

# Resolve `auto` the same way in every process (pytest's, the CLI's in a test project, DVC's stages), whatever
# copy of the code a process imports.
os.environ.setdefault("TASKSPACE_BLIMP", data.default_source())

TINY_TASKS = [
    "regular_plural_subject_verb_agreement_1",
    "distractor_agreement_relational_noun",
    "determiner_noun_agreement_1",
    "anaphor_gender_agreement",
    "adjunct_island",
    "wh_vs_that_no_gap",
]


ROOT = Path(__file__).resolve().parents[1]
PIPELINE_TASKS = ["regular_plural_subject_verb_agreement_1", "anaphor_gender_agreement", "anaphor_number_agreement"]
PIPELINE_N_EVAL = 20


@pytest.fixture(scope="session")
def blimp() -> Path:
    path = Path(data.default_source())
    assert path.is_dir(), f"tests need the shared BLiMP folder at {path} (or set TASKSPACE_BLIMP)"
    return path


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, blimp) -> Path:
    """Tiny model trained 300 steps on TINY_TASKS' grammatical train sentences; revisions step0…step300."""
    from taskspace.lm import tiny

    out = tmp_path_factory.mktemp("models") / "tiny"
    vocab = data.load_blimp(blimp, data.select_tasks(blimp))
    train, _ = data.split_pairs(data.load_blimp(blimp, TINY_TASKS), 500, 200, 0)
    v, s = tiny.sentences_for_tiny(vocab, train)
    tiny.build_tiny(out, v, s, steps=300, save_every=100, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_lm(tiny_dir):
    from taskspace.lm.models import load_model

    return load_model(str(tiny_dir), revision="step300")


def full(cfg) -> dict:
    """A config dataclass as a complete params.yaml section (DVC wants every key a stage depends on)."""
    import dataclasses

    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def pipeline_params(blimp) -> dict:
    from taskspace.config import AnalysisConfig, ComputeConfig, DataConfig, FTGDConfig, ProbeConfig

    p = {
        # source auto: resolved like the offline profile, so settings hashes stay path-free
        "data": full(DataConfig(source="auto", tasks=tuple(PIPELINE_TASKS), n_train=16, n_eval=PIPELINE_N_EVAL)),
        "tiny_models": {"tiny": {"steps": 60, "save_every": 30, "seed": 0}},
        "models": {"tiny": {"spec": "data/tiny/tiny", "scale": "0.4M", "revisions": ["step30", "step60"]}},
        "ftgd": full(FTGDConfig(sparsity=0.01, lr=0.001, steps=4, batch_size=8)),
        "probing": full(ProbeConfig(metric="margin", grad_projection=0, eval_batch_size=64, transfer="both")),
        "analysis": full(AnalysisConfig(permutations=200)),
        "compute": full(ComputeConfig()),
    }
    return derived(p)


def derived(p: dict) -> dict:
    """A params dict with what Hydra derives at `dvc exp run`: `runs` and `data_files`."""
    from taskspace.blimp.data import source_files
    from taskspace.runs import expand_runs

    return {**p, "runs": expand_runs(p["models"]), "data_files": source_files(p["data"]["source"])}


def init_repo(repo: Path, params: dict) -> None:
    """A git + DVC project with the committed dvc.yaml, the code it depends on, and these params (with
    `data_files` derived in the project, as `dvc exp run` would: relative to it)."""
    from taskspace.blimp.data import source_files
    from taskspace.config import ComputeConfig

    cwd = os.getcwd()
    os.chdir(repo)
    try:
        params = {**params, "data_files": source_files(params["data"]["source"])}
        params.setdefault("compute", full(ComputeConfig()))  # dvc.yaml lists it: every stage needs the section
    finally:
        os.chdir(cwd)
    shutil.copy(ROOT / "dvc.yaml", repo)
    shutil.copytree(ROOT / "taskspace", repo / "taskspace", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "ts", repo / "scripts" / "ts")
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / ".gitignore").write_text("/data/index/\n__pycache__/\n/.taskspace/\n/.venv/\n")
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "config", "user.email", "t@example.com")
    sh(repo, "git", "config", "user.name", "t")
    sh(repo, "dvc", "init", "-q")
    shutil.copytree(ROOT / ".dvc" / "plots", repo / ".dvc" / "plots")


def sh(repo: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture(scope="session")
def pipeline_repo(tmp_path_factory, blimp) -> Path:
    """A real DVC project (temp git repo) run end to end with `dvc repro` on the tiny model; its baseline index
    is also copied to `<repo>/../baseline.duckdb`, which later tests that change the repo never touch."""
    repo = tmp_path_factory.mktemp("pipeline")
    init_repo(repo, pipeline_params(blimp))
    sh(repo, "dvc", "remote", "add", "-d", "local", str(tmp_path_factory.mktemp("remote")))
    res = sh(repo, "dvc", "repro")
    assert "Running stage 'index'" in res.stdout
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline")
    shutil.copy(repo / "data" / "index" / "taskspace.duckdb", repo.parent / "baseline.duckdb")
    return repo


# The tasks of the synthetic indexes (tests/synthetic.py) that the TUI and weight-identity tests build.
SYNTHETIC_TASKS = [
    "regular_plural_subject_verb_agreement_1",
    "distractor_agreement_relational_noun",
    "anaphor_gender_agreement",
    "anaphor_number_agreement",
    "determiner_noun_agreement_1",
    "determiner_noun_agreement_2",
]


def refused_tuning(lm, blimp: Path, out: Path, lr: float, steps: int, match: str):
    """FTGD of two tasks at an lr that breaks the model: it must stop at the first task with an FTGDError matching
    `match` and leave neither that task's record nor its delta. Returns (train pairs, layout) for a rerun."""
    from taskspace.config import FTGDConfig, ProbeConfig
    from taskspace.method.ftgd import FTGDError
    from taskspace.method.probing import run_ftgd
    from taskspace.runs import Layout

    train, _ = data.split_pairs(data.load_blimp(blimp, ["anaphor_gender_agreement", "adjunct_island"]), 16, 4, 0)
    layout = Layout.single(out)
    with pytest.raises(FTGDError, match=match):
        run_ftgd(lm, train, layout, FTGDConfig(lr=lr, steps=steps, batch_size=8), ProbeConfig())
    assert not layout.ftgd_info("anaphor_gender_agreement").exists()
    assert not layout.delta("anaphor_gender_agreement").exists()
    return train, layout


# The TUI tests' (tests/test_tui*.py) synthetic index and stand-in dvc.
@pytest.fixture(scope="module")
def index_db(tmp_path_factory):
    from synthetic import build_synthetic_index
    from tui_support import RUNS

    return build_synthetic_index(tmp_path_factory.mktemp("synthetic"), RUNS, SYNTHETIC_TASKS)


@pytest.fixture
def fake_dvc(tmp_path):
    from tui_support import FAKE_DVC

    script = tmp_path / "fake_dvc.py"
    script.write_text(FAKE_DVC)
    return [sys.executable, str(script)]
