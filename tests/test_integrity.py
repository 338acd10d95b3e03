"""Nothing silently wrong, nothing lost: corrupt files are redone or named, identical results are identical
bytes, NaN is never read as a value, data files are their tasks, the index has one writer."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from taskspace.blimp import data
from taskspace.config import AnalysisConfig, FTGDConfig, ProbeConfig
from taskspace.errors import OutputError
from taskspace.index import IndexUnavailable, build_index
from taskspace.method.probing import run_eval1, run_eval2, run_ftgd
from taskspace.runs import Layout
from taskspace.stats.spaces import TaskSpaces, fit

TASKS = ["anaphor_gender_agreement", "adjunct_island", "wh_island"]
FTGD = FTGDConfig(steps=3, lr=1e-3, batch_size=8)


@pytest.fixture(scope="module")
def split(blimp):
    return data.split_pairs(data.load_blimp(blimp, TASKS), 16, 8, 0)


def test_identical_results_are_identical_bytes(tiny_lm, split, tmp_path):
    a, b = Layout.single(tmp_path / "a"), Layout.single(tmp_path / "b")
    for layout in (a, b):
        run_ftgd(tiny_lm, split[0], layout, FTGD, ProbeConfig())
    for task in TASKS:
        for f in (Layout.delta, Layout.gradient, Layout.ftgd_info):
            assert f(a, task).read_bytes() == f(b, task).read_bytes(), f(a, task).name


def test_a_corrupt_delta_is_named_and_then_redone(tiny_lm, split, tmp_path):
    layout = Layout.single(tmp_path)
    run_ftgd(tiny_lm, split[0], layout, FTGD, ProbeConfig())
    good = layout.delta(TASKS[1]).read_bytes()
    layout.delta(TASKS[1]).write_bytes(good[: len(good) // 2])  # cut short, its ftgd.json still current
    eval1 = run_eval1(tiny_lm, split[1], layout, ProbeConfig())
    with pytest.raises(OutputError, match=rf"{TASKS[1]}: the delta or gradient file .* differs"):
        run_eval2(tiny_lm, split[1], eval1, layout, FTGD, ProbeConfig())
    kept = layout.delta(TASKS[0]).stat().st_mtime_ns
    run_ftgd(tiny_lm, split[0], layout, FTGD, ProbeConfig())  # the rerun redoes exactly the corrupt task
    assert layout.delta(TASKS[1]).read_bytes() == good and layout.delta(TASKS[0]).stat().st_mtime_ns == kept
    run_eval2(tiny_lm, split[1], eval1, layout, FTGD, ProbeConfig())


def test_outputs_get_the_users_permissions(tiny_lm, split, tmp_path):
    layout = Layout.single(tmp_path)
    run_eval1(tiny_lm, split[1], layout, ProbeConfig())
    mask = os.umask(0)
    os.umask(mask)
    assert layout.eval1.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600


def test_nan_is_left_out_of_every_statistic_and_named():
    rng = np.random.default_rng(0)
    tasks = ["a1", "a2", "b1", "b2", "c1", "c2", "d1"]
    groups = ["a", "a", "b", "b", "c", "c", "d"]
    m = rng.normal(size=(7, 7))
    with_nan = m.copy()
    with_nan[6, :] = np.nan  # e.g. transfer normalised by a zero diagonal
    cfg = AnalysisConfig(permutations=200)
    meta_groups = dict(zip(tasks, groups))
    full = fit(TaskSpaces(tasks, {k: with_nan for k in ("transfer", "transfer_norm", "gradient", "sharing")}),
               [meta_groups[t] for t in tasks], {}, 0.01, cfg)  # fmt: skip
    six = fit(TaskSpaces(tasks[:6], {k: m[:6, :6] for k in ("transfer", "transfer_norm", "gradient", "sharing")}),
              groups[:6], {}, 0.01, cfg)  # fmt: skip
    assert full["transfer"].excluded == ("d1",)
    assert full["transfer"].mantel_r == pytest.approx(six["transfer"].mantel_r)  # the NaN task is not a 0
    assert full["transfer"].contrast == pytest.approx(six["transfer"].contrast)


def test_a_task_is_its_file(blimp, tmp_path):
    shutil.copy(blimp / "adjunct_island.jsonl", tmp_path / "my_island.jsonl")  # a copied paradigm
    with pytest.raises(data.DataError, match=r"my_island.jsonl:1: UID 'adjunct_island' differs from the file's"):
        data.load_blimp(tmp_path, ["my_island"])


def test_one_index_writer_at_a_time_and_a_killed_ones_leftovers_go(tmp_path):
    db = tmp_path / "taskspace.duckdb"
    code = (
        "import fcntl, os, sys, time; fh = open(sys.argv[1], 'a+'); fcntl.flock(fh, fcntl.LOCK_EX); "
        "fh.write(str(os.getpid())); fh.flush(); print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(db) + ".lock"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(IndexUnavailable, match=rf"being written by another `taskspace index` \(pid {holder.pid}\)"):
            build_index(db, tmp_path / "data")
    finally:
        holder.kill()
        holder.wait()
    leftovers = [tmp_path / ".taskspace.duckdb.abc.tmp", tmp_path / ".taskspace.duckdb.abc.tmp.wal"]
    for f in leftovers:
        f.write_bytes(b"half-written")
    build_index(db, tmp_path / "data")
    assert db.exists() and not any(f.exists() for f in leftovers)
