"""One compute setting for every model pass of a run: eval1 runs where eval2 will run (the executor's workers), and
outputs record the device kind and dtype they were computed with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import pipeline_params

from taskspace.errors import OutputError
from taskspace.pipeline import stages as pipeline
from taskspace.pipeline.settings import Settings

RUN = ("tiny", "step30")


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def project(tmp_path_factory, blimp):
    """Splits and the tiny model, with eval1 of one run computed serially."""
    root = tmp_path_factory.mktemp("compute")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        s = Settings.from_dict(pipeline_params(blimp))
        pipeline.stage_prepare(s, _quiet)
        pipeline.stage_tiny(s, "tiny", _quiet)
        pipeline.stage_eval(s, s.run(*RUN), _quiet)
    return root


def test_eval1_runs_on_the_executors_workers_with_the_same_bytes(project, blimp, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(project, work)
    eval1 = work / "data" / "eval" / "tiny" / "step30" / "eval1.parquet"
    eval1.unlink()
    monkeypatch.chdir(work)
    p = {**pipeline_params(blimp), "executor": {"kind": "local", "devices": ["cpu"], "folder": str(work / "jobs")}}
    said: list[str] = []
    s = Settings.from_dict(p)
    pipeline.stage_eval(s, s.run(*RUN), said.append)
    assert eval1.read_bytes() == (project / "data" / "eval" / "tiny" / "step30" / "eval1.parquet").read_bytes()
    assert any("eval 1/1 tasks on 1 local worker(s)" in line for line in said)  # computed by the worker
    assert len(list((work / "jobs" / "eval" / "tiny-step30").glob("job-*.log"))) == 1
    meta = pq.read_schema(eval1).metadata
    assert (meta[b"device"], meta[b"dtype"]) == (b"cpu", b"float32")  # what it was computed with, recorded


def _stage(blimp, work, stage: str, **compute) -> None:
    p = {**pipeline_params(blimp), "compute": {"device": "auto", "dtype": "auto", **compute}}
    s = Settings.from_dict(p)
    getattr(pipeline, f"stage_{stage}")(s, s.run(*RUN), _quiet)


def test_eval2_in_another_dtype_than_eval1_is_refused(project, blimp, tmp_path, monkeypatch):
    """eval1 in fp32 (a CPU login node), ftgd and probe in bf16 (a GPU job with compute: auto): refused in one
    line naming both, instead of a constant offset on every evaluated task's column."""
    shutil.copytree(project, tmp_path / "w")
    monkeypatch.chdir(tmp_path / "w")
    _stage(blimp, tmp_path / "w", "ftgd", dtype="bf16")
    info = json.loads(next(Path("data/ftgd/tiny/step30/tasks").glob("*/ftgd.json")).read_text())
    assert info["compute"] == {"device": "cpu", "dtype": "bfloat16"}  # recorded with the delta
    with pytest.raises(OutputError, match=r"^eval2 of \w+ here is bfloat16 on cpu but .*eval1.parquet \(eval1\) "
                                          r"is float32 on cpu: transfer would mix them"):  # fmt: skip
        _stage(blimp, tmp_path / "w", "probe", dtype="bf16")


def test_a_delta_tuned_elsewhere_is_refused_and_eval2_records_its_compute(project, blimp, tmp_path, monkeypatch):
    shutil.copytree(project, tmp_path / "w")
    monkeypatch.chdir(tmp_path / "w")
    _stage(blimp, tmp_path / "w", "ftgd")
    records = sorted(Path("data/ftgd/tiny/step30/tasks").glob("*/ftgd.json"))
    first = json.loads(records[0].read_text())
    records[0].write_text(json.dumps({**first, "compute": {"device": "cuda", "dtype": "bfloat16"}}))
    with pytest.raises(OutputError, match=r"ftgd.json \(its FTGD\) is bfloat16 on cuda but this process is float32"):
        _stage(blimp, tmp_path / "w", "probe")
    records[0].write_text(json.dumps(first))  # the record as written: eval2 runs and says what it ran on
    _stage(blimp, tmp_path / "w", "probe")
    eval2 = next(Path("data/probe/tiny/step30/tasks").glob("*/eval2.parquet"))
    meta = pq.read_schema(eval2).metadata
    assert (meta[b"device"], meta[b"dtype"]) == (b"cpu", b"float32")
