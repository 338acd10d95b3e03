"""All 67 BLiMP tasks through the real pipeline (dvc repro) on the tiny model: full 67×67 spaces, analysis,
index, and the TUI opens the heatmap."""

import numpy as np
import pytest
from conftest import derived, full, init_repo, sh

from taskspace.blimp import data
from taskspace.config import AnalysisConfig, DataConfig, FTGDConfig, ProbeConfig
from taskspace.index import Index
from taskspace.method.probing import KINDS, load_matrices
from taskspace.stats.spaces import CELL_KINDS

pytestmark = pytest.mark.slow


async def open_first_heatmap(app, pilot):
    """The runs list's first run, opened as a heatmap once every worker has loaded."""
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.press("enter")
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()
    return app.screen


@pytest.fixture(scope="module")
def repo67(tmp_path_factory, blimp):
    repo = tmp_path_factory.mktemp("all-tasks")
    p = {
        "data": full(DataConfig(source="auto", n_train=4, n_eval=4)),
        "tiny_models": {"tiny": {"steps": 30, "save_every": 30, "seed": 0}},
        "models": {"tiny": {"spec": "data/tiny/tiny", "scale": "0.4M", "revisions": ["step30"]}},
        "ftgd": full(FTGDConfig(sparsity=0.01, lr=0.001, steps=2, batch_size=4)),
        "probing": full(ProbeConfig(metric="margin", eval_batch_size=256, transfer="both")),
        "analysis": full(AnalysisConfig(permutations=100)),
    }
    init_repo(repo, derived(p))
    sh(repo, "dvc", "repro")
    return repo


def test_full_spaces_analysis_and_index(repo67, blimp):
    tasks, mats = load_matrices(repo67 / "data" / "probe" / "tiny" / "step30" / "matrices.npz")
    assert len(tasks) == 67 and sorted(tasks) == data.select_tasks(blimp)
    # every kind but the control's (this run has none), and each transfer cell's paired test
    assert set(mats) == set(KINDS) - {"transfer_control", "transfer_minus_control"} | set(CELL_KINDS)
    assert all(m.shape == (67, 67) for m in mats.values())
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
    from taskspace_tui.app import TaskspaceApp
    from taskspace_tui.screens.heatmap import HeatmapScreen

    app = TaskspaceApp(db=repo67 / "data" / "index" / "taskspace.duckdb")
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_first_heatmap(app, pilot)
        assert isinstance(screen, HeatmapScreen) and len(screen.tasks) == 67


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    """Two replicates (FTGD seeds 0, 1 on splits 0, 1) and a label-swapped control, through dvc repro."""
    repo = tmp_path_factory.mktemp("replicates")
    p = {
        "data": full(DataConfig(source="auto", tasks=("anaphor_gender_agreement", "anaphor_number_agreement",
                                                     "adjunct_island", "wh_island"), n_train=8, n_eval=8)),
        "tiny_models": {"tiny": {"steps": 30, "save_every": 30, "seed": 0}},
        "models": {"tiny": {"spec": "data/tiny/tiny", "scale": "0.4M", "revisions": ["step30"]}},
        "ftgd": full(FTGDConfig(sparsity=0.05, lr=0.001, steps=3, batch_size=4)),
        "probing": full(ProbeConfig(metric="margin", control=True, ftgd_seeds=(0, 1), split_seeds=(0, 1))),
        "analysis": full(AnalysisConfig(permutations=100)),
    }  # fmt: skip
    init_repo(repo, derived(p))
    sh(repo, "dvc", "repro")
    return repo


def test_replicates_and_control_give_intervals_reliability_and_a_noise_floor(replicated):
    import json

    probe = replicated / "data" / "probe" / "tiny" / "step30"
    _, mats = load_matrices(probe / "matrices.npz")
    assert {"transfer_ci", "transfer_control", "transfer_minus_control"} <= set(mats)
    with np.load(probe / "replicates.npz") as z:
        assert z["transfer"].shape == (2, 4, 4)
        np.testing.assert_allclose(z["transfer"].mean(0), mats["transfer"])
    for r in (0, 1):
        assert (probe / "replicates" / f"r{r}" / "control" / "matrices.npz").exists()
    metrics = json.loads((replicated / "data" / "analyze" / "metrics.json").read_text())["tiny@step30"]
    assert metrics["transfer_reliability"] is not None and metrics["lm_loss_rise"] is not None
    idx = Index(replicated / "data" / "index" / "taskspace.duckdb")
    try:
        (run,) = idx.runs()
        stats = idx.analysis(run["run_id"])
        assert run["reliability"] == pytest.approx(metrics["transfer_reliability"])
        assert stats["transfer"]["cells"] == 12 and "transfer_minus_control" in stats
        assert metrics["transfer_noise_floor"] == pytest.approx(stats["transfer"]["noise_floor"])
        assert metrics["transfer_above_noise"] == pytest.approx(stats["transfer"]["cells_above_noise"] / 12)
        shown = sh(replicated, "taskspace", "metrics", "--format", "table").stdout
        assert ">noise" in shown and f"{metrics['transfer_above_noise']:.0%}" in shown
        sh(replicated, "taskspace", "export", "tiny@step30", "--out", "report.md")
        report = (replicated / "report.md").read_text()
        above = int(stats["transfer"]["cells_above_noise"])
        assert f"{stats['transfer']['noise_floor']:.4g}; {above} of 12 off-diagonal cells above it" in report
        assert f"| transfer | {stats['transfer']['mantel_r']:+.3f} |" in report
    finally:
        idx.close()


async def test_tui_heatmap_reads_with_reliability_and_noise_floor(replicated):
    """The heatmap's side panels say how far the space can be trusted: value ± interval, above or within the
    noise floor, the space's reliability and how many cells exceed the control."""
    from taskspace_tui.app import TaskspaceApp
    from taskspace_tui.screens.heatmap import HeatmapScreen

    app = TaskspaceApp(db=replicated / "data" / "index" / "taskspace.duckdb")
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_first_heatmap(app, pilot)
        assert isinstance(screen, HeatmapScreen) and screen.kind == "transfer"
        stats = str(screen.query_one("#stats").render())
        t = screen.stats["transfer"]
        assert f"reliability: {t['reliability_sb']:.2f}" in stats
        assert f"noise floor: {t['noise_floor']:.4f}; {int(t['cells_above_noise'])} of 12 cells above" in stats
        await pilot.press("right")  # off the diagonal
        await pilot.pause()
        cell = str(screen.query_one("#cell").render())
        a, b, v = screen.cell(0, 1)
        assert "±" in cell and ("above" if abs(v) > t["noise_floor"] else "within") + " the noise floor" in cell
