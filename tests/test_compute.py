"""One compute setting for every model pass of a run: eval1 runs where eval2 will run (the executor's workers), and
outputs record the device kind and dtype they were computed with."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest
from conftest import pipeline_params

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
