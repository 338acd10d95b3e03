"""All 67 BLiMP tasks through the real pipeline (dvc repro) on the tiny model: full 67×67 spaces, analysis,
index, and the TUI opens the heatmap."""

import shutil

import numpy as np
import pytest
import yaml
from conftest import ROOT, sh

from taskspace import data
from taskspace.index import Index
from taskspace.pipeline import expand_runs
from taskspace.probing import KINDS, load_matrices

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo67(tmp_path_factory, blimp):
    repo = tmp_path_factory.mktemp("all-tasks")
    shutil.copy(ROOT / "dvc.yaml", repo)
    p = {
        "data": {"source": "auto", "tasks": [], "phenomena": [], "fields": [], "n_train": 4, "n_eval": 4, "seed": 0},
        "tiny_models": {"tiny": {"steps": 30, "save_every": 30, "seed": 0}},
        "models": {"tiny": {"spec": "data/prepare/models/tiny", "scale": "0.4M", "revisions": ["step30"]}},
        "ftgd": {"sparsity": 0.01, "lr": 0.001, "steps": 2, "batch_size": 4},
        "probing": {"metric": "margin", "eval_batch_size": 256},
        "analysis": {"permutations": 100},
    }
    (repo / "params.yaml").write_text(yaml.safe_dump({**p, "runs": expand_runs(p["models"])}))
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    shutil.copytree(ROOT / ".dvc" / "plots", repo / ".dvc" / "plots")
    sh(repo, "dvc", "repro")
    return repo


def test_full_spaces_analysis_and_index(repo67, blimp):
    tasks, mats = load_matrices(repo67 / "data" / "probe" / "tiny" / "step30" / "matrices.npz")
    assert len(tasks) == 67 and sorted(tasks) == data.select_tasks(blimp)
    assert set(mats) == set(KINDS) and all(m.shape == (67, 67) for m in mats.values())
    assert np.isfinite(mats["transfer"]).all() and np.isfinite(mats["gradient"]).all()
    idx = Index(repo67 / "data" / "index" / "taskspace.duckdb")
    try:
        (run,) = idx.runs()
        assert run["mantel_r"] is not None  # analysed against the 13-phenomenon hypothesis
        names, m = idx.matrix(run["run_id"], "transfer")
        assert len(names) == 67 and np.allclose(m[np.ix_(*[[names.index(t) for t in tasks]] * 2)], mats["transfer"])
    finally:
        idx.close()


async def test_tui_opens_the_67_task_heatmap(repo67):
    from tui.app import TaskspaceApp
    from tui.screens.heatmap import HeatmapScreen

    app = TaskspaceApp(db=repo67 / "data" / "index" / "taskspace.duckdb")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.press("enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, HeatmapScreen) and len(app.screen.tasks) == 67
