"""Weight identity per revision: a checkpoint that repeats another's weights is hashed the same, and flagged by
`taskspace check`, the analysis (stability, comparisons, metrics), the index and the TUI."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import duckdb
import pytest
from conftest import SYNTHETIC_TASKS as TASKS
from conftest import derived, full
from synthetic import build_synthetic_index, weights_hash

from taskspace.lm import weights as W


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKSPACE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def series(tiny_dir, tmp_path) -> Path:
    """The tiny model's step100 and step300, and step250: a copy of step100 made on purpose."""
    out = tmp_path / "tiny"
    for rev in ("step100", "step300"):
        shutil.copytree(tiny_dir / rev, out / rev)
    shutil.copytree(tiny_dir / "step100", out / "step250")
    return out


def test_file_hash_is_sha256_of_the_bytes_in_any_block_size(tmp_path):
    f = tmp_path / "model.safetensors"
    body = bytes(range(256)) * 41 + b"tail"
    f.write_bytes(body)
    want = hashlib.sha256(body).hexdigest()
    assert W.sha256_file(f) == want
    assert W.sha256_file(f, block=7) == want  # several blocks, the last one short
    listing = f"{want}  model.safetensors\n".encode()  # `sha256sum *.safetensors | sha256sum`
    assert W.files_sha256([f]) == hashlib.sha256(listing).hexdigest()


def test_second_hash_reads_the_cache_and_a_changed_file_is_hashed_again(tmp_path, monkeypatch):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"abc" * 1000)
    first = W.files_sha256([f])
    assert (tmp_path / "cache" / W.CACHE_NAME).exists()

    def refuse(*_a, **_k):
        raise AssertionError("rehashed a file whose size and mtime did not change")

    monkeypatch.setattr(W, "sha256_file", refuse)
    assert W.files_sha256([f]) == first
    monkeypatch.undo()
    monkeypatch.setenv("TASKSPACE_CACHE", str(tmp_path / "cache"))
    f.write_bytes(b"abd" * 1000)
    os.utime(f, ns=(1, 1))
    assert W.files_sha256([f]) != first


def test_a_copied_checkpoint_hashes_like_its_original_and_unlike_another(series):
    h = {rev: W.location_sha256(str(series), rev) for rev in ("step100", "step250", "step300")}
    assert all(h.values())
    assert h["step250"] == h["step100"] != h["step300"]
    assert W.weight_files(series / "step100") == [series / "step100" / "model.safetensors"]


def test_loaded_models_hash_from_files_else_from_tensors(series):
    import dataclasses

    from taskspace.lm.models import load_model

    a, b = (load_model(str(series), revision=r) for r in ("step100", "step250"))
    assert W.weights_sha256(a) == W.location_sha256(str(series), "step100")
    built = dataclasses.replace(a, name="no/such/folder/anywhere", revision=None)  # a model made in memory
    assert W.weights_sha256(built) == W.state_dict_sha256(a.model) == W.state_dict_sha256(b.model)
    c = load_model(str(series), revision="step300")
    assert W.state_dict_sha256(c.model) != W.state_dict_sha256(a.model)


def test_check_flags_identical_revisions(series, blimp, tmp_path, monkeypatch):
    from taskspace.config import AnalysisConfig, DataConfig, FTGDConfig, ProbeConfig
    from taskspace.pipeline.settings import Settings
    from taskspace.pipeline.stages import identical_weights, stage_check

    monkeypatch.chdir(tmp_path)
    p = derived(
        {
            "data": full(DataConfig(source="auto", tasks=tuple(TASKS[:3]), n_train=8, n_eval=8)),
            "models": {"tiny": {"spec": str(series), "revisions": ["step100", "step250", "step300"]}},
            "ftgd": full(FTGDConfig()),
            "probing": full(ProbeConfig()),
            "analysis": full(AnalysisConfig()),
        }
    )
    s = Settings.from_dict(p)
    assert identical_weights(s) == {"tiny@step250": "tiny@step100"}
    line = stage_check(s)
    assert line.endswith("runs: ok; identical weights: tiny@step250 = tiny@step100") and "\n" not in line


def test_missing_revisions_fail_in_one_line_naming_those_that_exist(series, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from taskspace.lm.models import ModelError, load_model

    with pytest.raises(ModelError) as e:
        load_model(str(series), revision="step999")
    msg = str(e.value)
    assert "\n" not in msg and "step999" in msg and "step100, step250, step300" in msg
    # a hub model offline: the revisions the local hub cache holds
    repo = tmp_path / "hub" / "models--EleutherAI--pythia-70m"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "step1000").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as e:
        load_model("EleutherAI/pythia-70m", revision="step1")
    msg = str(e.value)
    assert "\n" not in msg and "revision step1 " in msg and "revisions in the local hub cache: step1000" in msg


@pytest.fixture(scope="module")
def dup_index(tmp_path_factory):
    """Synthetic runs where tiny@step60 repeats tiny@step30's weights on purpose."""
    root = tmp_path_factory.mktemp("dup")
    db = build_synthetic_index(
        root, {"tiny": ["step30", "step60", "step100"], "zeta": ["main"]}, TASKS, same={("tiny", "step60"): "step30"}
    )
    return root, db


def test_analysis_marks_identical_checkpoints_and_comparisons(dup_index):
    root, _ = dup_index
    analysis = json.loads((root / "data" / "analyze" / "analysis.json").read_text())
    for kind, st in analysis["stability"]["tiny"].items():
        assert st["revisions"] == ["step30", "step60", "step100"]
        assert st["identical_to"] == [None, "step30", None], kind
    by_pair = {(c["a"].split("#")[0], c["b"].split("#")[0]): c["identical_weights"] for c in analysis["comparisons"]}
    assert by_pair[("tiny@step30", "tiny@step60")] is True
    assert by_pair[("tiny@step60", "tiny@step100")] is False
    metrics = json.loads((root / "data" / "analyze" / "metrics.json").read_text())
    assert metrics["tiny@step60"]["identical_weights_to"] == "tiny@step30"
    assert metrics["tiny@step100"]["identical_weights_to"] is None


def test_index_records_weights_and_names_the_identical_revision(dup_index):
    from taskspace.index import SCHEMA_VERSION, Index

    _, db = dup_index
    con = duckdb.connect(str(db), read_only=True)
    cols = [r[0] for r in con.execute("DESCRIBE runs").fetchall()]
    hashes = dict(con.execute("SELECT label, weights_sha256 FROM runs").fetchall())
    con.close()
    assert "weights_sha256" in cols and SCHEMA_VERSION >= 4
    assert hashes["tiny@step60"] == hashes["tiny@step30"] == weights_hash("tiny", "step30")
    idx = Index(db)
    try:
        same = {r["label"]: r["identical_to"] for r in idx.runs()}
        tiny = next(r for r in idx.runs() if r["label"] == "tiny@step30")
        curve = idx.stability(tiny["run_id"], "transfer")
    finally:
        idx.close()
    assert same == {"tiny@step30": None, "tiny@step60": "step30", "tiny@step100": None, "zeta@main": None}
    assert [r["identical_to"] for r in curve] == [None, "step30", None]


async def test_tui_marks_identical_runs_and_says_so_when_comparing(dup_index):
    from textual.widgets import DataTable

    from taskspace_tui.app import TaskspaceApp
    from taskspace_tui.screens.compare import CompareScreen

    _, db = dup_index
    app = TaskspaceApp(db=db)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        revisions = [str(table.get_cell(str(r["run_id"]), "revision")) for r in app.screen.rows]
        assert revisions == ["step30", "step60 =step30", "step100", "main"]
        await pilot.press("space", "down", "space", "c")  # step30 against step60: the same weights
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen)
        stats = str(app.screen.query_one("#compare-stats").render())
        curve = str(app.screen.query_one("#stability").render())
        assert "A and B have identical weights" in stats
        assert "identical checkpoints (same weights): step60 = step30" in curve
