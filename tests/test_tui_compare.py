"""The TUI's compare screen, driven by Textual's Pilot over a synthetic index: correlation, stability, the
stored or computed comparison, the settings that differ, the three maps' cursor and readout."""

import duckdb
import numpy as np
import pytest
from conftest import SYNTHETIC_TASKS as TASKS
from synthetic import build_synthetic_index
from tui_support import (
    _copy_with_a_nan_task,
    label_lines,
    screen_text,
    settle,
)

from taskspace.index import Index
from taskspace_tui.app import TaskspaceApp
from taskspace_tui.screens.compare import CompareScreen
from taskspace_tui.widgets.heatmap import Heatmap


async def test_compare_shows_correlation_of_the_two_runs(index_db):
    from taskspace.stats import analysis

    app = TaskspaceApp(db=index_db)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        await pilot.press("space", "down", "space", "c")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        idx = Index(index_db)
        _, ma = idx.matrix(screen.a["run_id"], "transfer")
        _, mb = idx.matrix(screen.b["run_id"], "transfer")
        idx.close()
        want = analysis.compare_spaces(ma, mb, [str(i) for i in range(len(ma))], permutations=1000, seed=0)
        assert screen.result.r == pytest.approx(want.r)
        assert f"{want.r:+.3f}" in str(screen.query_one("#compare-stats").render())
        # two checkpoints of one model: the stability curve is drawn
        shown = str(screen.query_one("#stability").render())
        assert "transfer: r with last (Spearman)" in shown and "transfer: within−between, accuracy" in shown


async def test_compare_stability_pairs_each_kind_with_its_own_contrast(index_db):
    app = TaskspaceApp(db=index_db)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        await pilot.press("space", "down", "space", "c", "k")  # two checkpoints, then the gradient space
        await settle(app, pilot)
        screen = app.screen
        assert screen.kind == "gradient"
        idx = Index(index_db)
        runs = [r for r in idx.runs() if r["model"] == "tiny"]
        want = [idx.analysis(r["run_id"])["gradient"]["contrast"] for r in runs]
        transfer = [idx.analysis(r["run_id"])["transfer"]["contrast"] for r in runs]
        idx.close()
        assert [r["revision"] for r in screen.data.stability] == ["step30", "step60", "step100"]
        assert [r["contrast"] for r in screen.data.stability] == pytest.approx(want)
        assert want != pytest.approx(transfer)  # the old plot showed transfer's contrast for every kind
        assert "gradient: within−between, cosine" in str(screen.query_one("#stability").render())


async def test_compare_shows_the_stored_comparison_over_the_defined_tasks(index_db, tmp_path):
    """A pair the analyze stage compared: its stored r and p are shown and said to be so (not a test run here),
    over the tasks the stage used (a task with NaN cells is left out, not counted as zeros)."""
    db = _copy_with_a_nan_task(index_db, tmp_path, "tiny@step30", TASKS[2])
    con = duckdb.connect(str(db))
    con.execute(  # recognisable stored values: the screen must show these, not numbers of its own
        """UPDATE comparisons SET r = 0.4321, p = 0.0123, p_exact = false, p_floor = 0.001 WHERE kind = 'transfer'
           AND 2 = (SELECT count(*) FROM runs WHERE run_id IN (run_a, run_b) AND model = 'tiny'
                    AND revision IN ('step30', 'step60'))"""
    )
    assert con.execute("SELECT count(*) FROM comparisons WHERE r = 0.4321").fetchone()[0] == 1
    con.close()
    app = TaskspaceApp(db=db)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        await pilot.press("space", "down", "space", "c")  # tiny@step30 and tiny@step60
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen) and screen.data.stored
        assert (screen.result.r, screen.result.p) == (0.4321, 0.0123)
        text = str(screen.query_one("#compare-stats").render())
        assert "+0.432" in text and "0.012" in text and "(from the analysis)" in text
        assert "999 random relabellings" in text  # the stored test's, not this screen's (720 exact ones)
        assert TASKS[2] not in screen.result.tasks and len(screen.result.tasks) == len(TASKS) - 1
        assert screen.data.a.shape == (len(TASKS) - 1,) * 2 and not np.isnan(screen.data.a).any()


async def test_compare_computes_a_pair_the_analysis_did_not_and_says_so(index_db, tmp_path):
    """tiny@step30 against zeta@main was not compared by the analyze stage (only consecutive checkpoints and the
    last checkpoints of two models are): computed here by the stage's own function, which leaves NaN tasks out."""
    from taskspace.config import AnalysisConfig
    from taskspace.stats import spaces

    db = _copy_with_a_nan_task(index_db, tmp_path, "tiny@step30", TASKS[0])
    app = TaskspaceApp(db=db)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        await pilot.press("space", "down", "down", "down", "space", "c")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen) and (screen.a["label"], screen.b["label"]) == (
            "tiny@step30",
            "zeta@main",
        )
        idx = Index(db)
        assert idx.comparison(screen.a["run_id"], screen.b["run_id"], "transfer") is None

        def space(run: dict) -> spaces.TaskSpaces:
            tasks, m = idx.matrix(run["run_id"], "transfer")
            return spaces.TaskSpaces(tasks, {"transfer": m}, run["label"])

        want = spaces.compare(
            space(screen.a), space(screen.b), "transfer", AnalysisConfig(**idx.analysis_settings(screen.a["run_id"]))
        )
        idx.close()
        assert not screen.data.stored and TASKS[0] not in want.tasks and screen.result.tasks == want.tasks
        assert (screen.result.r, screen.result.p) == pytest.approx((want.r, want.p))
        text = str(screen.query_one("#compare-stats").render())
        assert "computed here" in text and "from the analysis" not in text


async def test_compare_names_the_settings_that_differ_between_the_two_runs(index_db, tmp_path):
    """Two checkpoints tuned with another lr (another experiment): the compare screen says so, A's value → B's; two
    runs under the same settings: it says only the checkpoint differs."""
    probe = {"ftgd": {"lr": 1e-4, "steps": 10}, "probing": {"metric": "accuracy"}}
    recorded = {("tiny", "step30"): {"probe": probe},
                ("tiny", "step60"): {"probe": probe | {"ftgd": {"lr": 3e-4, "steps": 10}},
                                     "run": {"params_hash": "lr3lr3lr3lr3", "experiment": "lr3"}}}  # fmt: skip
    db = build_synthetic_index(tmp_path, {"tiny": ["step30", "step60"]}, TASKS, recorded=recorded)
    for index, want in (
        (db, "experiment (dvc repro) → lr3 · settings A → B (1 setting differs): ftgd.lr 0.0001 → 0.0003"),
        (index_db, "settings A → B same settings: only the checkpoint differs"),
    ):
        app = TaskspaceApp(db=index)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            await pilot.press("space", "down", "space", "c")
            await settle(app, pilot)
            assert isinstance(app.screen, CompareScreen)
            shown = str(app.screen.query_one("#params-diff").render())
            assert want in shown and "steps" not in shown, shown
            assert want in " ".join(screen_text(app).split())  # on screen at 80×24


async def test_compare_maps_label_rows_and_read_out_the_cursor_cell(index_db):
    """A names the rows; one cursor moves over A, B and A − B; the readout gives the pair and the three values."""
    app = TaskspaceApp(db=index_db)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        await pilot.press("space", "down", "space", "c")
        await settle(app, pilot)
        screen = app.screen
        maps = [screen.query_one(f"#map-{k}", Heatmap) for k in "abd"]
        maps[0].focus()
        await pilot.press("down", "right", "right", "right")
        await pilot.pause()
        row, col = maps[0].cursor
        assert (row, col) == (1, 3) and all(m.cursor == (1, 3) for m in maps)
        labelled = label_lines(maps[0])
        assert len(labelled) == len(maps[0].labels) and all(s and s[:5] == t[:5] for s, t in labelled)
        a_task, b_task = maps[0].labels[row], maps[0].labels[col]
        idx = Index(index_db)
        values = []
        for run in (screen.a, screen.b):
            tasks, m = idx.matrix(run["run_id"], "transfer")
            values.append(float(m[tasks.index(a_task), tasks.index(b_task)]))
        idx.close()
        readout = str(screen.query_one("#compare-cell").render())
        assert f"tuned on {a_task}" in readout and f"evaluated on {b_task}" in readout
        for name, v in zip(("A", "B", "A − B"), (*values, values[0] - values[1])):
            assert f"{name} {v:+.4f}" in readout
