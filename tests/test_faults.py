"""Inputs that used to give a wrong answer or a traceback: each now works as documented or stops with one line."""

import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import derived, full, refused_tuning

from taskspace.blimp import data
from taskspace.cli import main
from taskspace.config import FTGDConfig, ProbeConfig
from taskspace.errors import OutputError
from taskspace.lm.models import ModelError, load_model, pick_device, pick_dtype, resolve
from taskspace.method.probing import run_ftgd
from taskspace.stats.spaces import TaskSpaces


def cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return res.exit_code, res.output


def test_a_model_without_revisions_refuses_one():
    with pytest.raises(ModelError, match="has no revisions; drop --revision step5"):
        resolve("smollm2", "step5")
    code, text = cli("score", "--model", "smollm2", "--revision", "step5")
    assert code == 1 and "has no revisions" in text


def test_devices_and_dtypes_are_checked(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelError, match="no CUDA device here .*use --device cpu"):
        pick_device("cuda")
    with pytest.raises(ModelError, match="is not a device"):
        pick_device("gpu0")
    with pytest.raises(ModelError, match="--dtype 'bfloat6': use one of float32, bfloat16, float16"):
        pick_dtype(torch.device("cpu"), "bfloat6")


def test_local_looking_paths_never_go_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelError, match="model folder models/pythia-70m does not exist"):
        resolve("models/pythia-70m")


def test_an_unreachable_hub_fails_at_once(monkeypatch):
    import taskspace.lm.models as M

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(M, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(ModelError, match="from the hub"):
        load_model("EleutherAI/pythia-14m-not-cached")
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # no minutes of retries: the cache only


def test_jsonl_with_a_byte_order_mark_is_read(blimp, tmp_path):
    text = (blimp / "adjunct_island.jsonl").read_text()
    (tmp_path / "adjunct_island.jsonl").write_text("\ufeff" + text, encoding="utf-8")
    assert data.read_jsonl(tmp_path / "adjunct_island.jsonl").num_rows == 1000


def test_a_truncated_matrices_file_is_named(tmp_path):
    path = tmp_path / "matrices.npz"
    TaskSpaces(["a", "b"], {"transfer": np.eye(2)}).save(path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(OutputError, match=r"matrices.npz is unreadable .*rerun the probe"):
        TaskSpaces.load(path)


def test_an_unwritable_output_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    code, text = cli("score", "--tasks", "adjunct_island", "--out", str(blocker / "s.parquet"))
    assert code == 1 and "is a file, not a folder" in text and "loading" not in text
    code, text = cli("probe", "--tasks", "adjunct_island", "--out", str(blocker / "run"))
    assert code == 1 and "is a file, not a folder" in text


def test_a_collapsing_lr_stops_that_task_and_writes_nothing(tiny_lm, blimp, tmp_path):
    train, layout = refused_tuning(tiny_lm, blimp, tmp_path, 1000.0, 5, r"task anaphor_gender_agreement: .*lr 1000.0")
    # a sane lr tunes the same task without complaint
    run_ftgd(tiny_lm, train, layout, FTGDConfig(lr=1e-3, steps=5, batch_size=8), ProbeConfig())
    assert json.loads(layout.ftgd_info("adjunct_island").read_text())["steps_run"] == 5


def test_a_full_disk_ends_in_one_line(monkeypatch, tmp_path):
    import errno

    import pyarrow.parquet as pq

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)
    code, text = cli("score", "--model", "smollm2", "--tasks", "adjunct_island", "--n", "2", "--out",
                     str(tmp_path / "s.parquet"))  # fmt: skip
    assert code == 1 and "No space left on device" in text and "Traceback" not in text
    assert not list(tmp_path.iterdir())  # no half-written file left behind


def test_an_older_index_is_rebuilt_with_a_notice(tmp_path):
    import duckdb

    from taskspace.index import Index, build_index

    db = tmp_path / "taskspace.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE runs (run_id INTEGER, run_key VARCHAR)")  # what an older taskspace wrote
    con.close()
    said = []
    build_index(db, tmp_path / "data", say=said.append)
    assert "rebuilding it from the stage outputs" in said[0]
    Index(db).close()  # readable by this version


def test_the_tiny_model_survives_a_bad_unrelated_file(blimp, tmp_path, monkeypatch):
    from taskspace.config import DataConfig
    from taskspace.pipeline import stages as pipeline
    from taskspace.pipeline.settings import Settings

    src = tmp_path / "blimp"
    src.mkdir()
    for t in ("anaphor_gender_agreement", "adjunct_island"):
        shutil.copy(blimp / f"{t}.jsonl", src)
    (src / "wh_island.jsonl").write_text("{not json\n")  # broken, and not selected
    monkeypatch.chdir(tmp_path)
    d = DataConfig(source=str(src), tasks=("anaphor_gender_agreement", "adjunct_island"), n_train=8, n_eval=4)
    p = {"data": {**vars(d), "tasks": list(d.tasks), "phenomena": [], "fields": []},
         "probing": full(ProbeConfig()), "tiny_models": {"tiny": {"steps": 2, "save_every": 2}},
         "models": {"tiny": {"spec": "data/tiny/tiny", "revisions": ["step2"]}},
         "ftgd": {}, "analysis": {}}  # fmt: skip
    s = Settings.from_dict(derived(p))
    pipeline.stage_prepare(s, say=lambda _: None)
    pipeline.stage_tiny(s, "tiny", say=lambda _: None)
    assert (tmp_path / "data" / "tiny" / "tiny" / "step2" / "config.json").exists()
