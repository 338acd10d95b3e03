"""All 67 BLiMP tasks through the real pipeline (dvc repro) on the tiny model: full 67×67 spaces, analysis,
index, and the TUI opens the heatmap."""

import numpy as np
import pytest
from conftest import derived, full, init_repo, sh

from taskspace import data
from taskspace.config import AnalysisConfig, DataConfig, FTGDConfig, ProbeConfig
from taskspace.index import Index
from taskspace.probing import KINDS, load_matrices

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo67(tmp_path_factory, blimp):
    repo = tmp_path_factory.mktemp("all-tasks")
    p = {
        "data": full(DataConfig(source="auto", n_train=4, n_eval=4)),
        "tiny_models": {"tiny": {"steps": 30, "save_every": 30, "seed": 0}},
        "models": {"tiny": {"spec": "data/tiny/tiny", "scale": "0.4M", "revisions": ["step30"]}},
        "ftgd": full(FTGDConfig(sparsity=0.01, lr=0.001, steps=2, batch_size=4)),
        "probing": full(ProbeConfig(metric="margin", eval_batch_size=256)),
        "analysis": full(AnalysisConfig(permutations=100)),
    }
    init_repo(repo, derived(p))
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
