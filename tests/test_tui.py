"""The TUI driven by Textual's Pilot: over a synthetic index (made-up outputs analysed and indexed like the
pipeline's, seconds to build) for behaviour and snapshots, and over the real pipeline for launching DVC."""

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
from conftest import SYNTHETIC_TASKS as TASKS
from synthetic import build_synthetic_index

from taskspace.index import Index
from taskspace_tui.app import TaskspaceApp
from taskspace_tui.screens.compare import CompareScreen
from taskspace_tui.screens.heatmap import HeatmapScreen
from taskspace_tui.screens.help import HelpScreen, TooSmallScreen
from taskspace_tui.screens.pipeline import PipelineScreen
from taskspace_tui.screens.runs import RunsScreen
from taskspace_tui.screens.task import TaskScreen
from taskspace_tui.widgets.heatmap import Heatmap

RUNS = {"tiny": ["step100", "step30", "step60"], "zeta": ["main"]}  # listed out of training order on purpose


@pytest.fixture(scope="module")
def index_db(tmp_path_factory):
    return build_synthetic_index(tmp_path_factory.mktemp("synthetic"), RUNS, TASKS)


async def settle(app, pilot):
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_runs_heatmap_cursor_shows_the_duckdb_value(index_db):
    app = TaskspaceApp(db=index_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert isinstance(app.screen, RunsScreen)
        assert [r["label"] for r in app.screen.rows] == ["tiny@step30", "tiny@step60", "tiny@step100", "zeta@main"]
        await pilot.press("enter")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, HeatmapScreen) and screen.kind == "transfer"
        hm = screen.query_one(Heatmap)
        header, first_row = hm.render_line(0).text, hm.render_line(hm.HEADER + hm.grid.lines.count(0) // 2).text
        assert header.startswith("↓ tuned") and "evaluated →" in header  # axis titles
        assert screen.tasks[screen.shown[0]][:8] in first_row and "▸" in first_row  # the gutter names the row
        await pilot.press("right", "right", "down")
        await pilot.pause()
        row, col = screen.query_one(Heatmap).cursor
        assert (row, col) == (1, 2)
        a, b, shown = screen.cell(row, col)
        con = duckdb.connect(str(index_db), read_only=True)
        want = con.execute(
            """SELECT s.value FROM similarities s JOIN tasks ta ON ta.task_id = s.task_a
               JOIN tasks tb ON tb.task_id = s.task_b WHERE s.run_id = ? AND s.kind = 'transfer'
               AND ta.task = ? AND tb.task = ?""",
            [screen.run_row["run_id"], a, b],
        ).fetchone()[0]
        con.close()
        assert shown == pytest.approx(want)
        assert f"{want:+.4f}" in str(screen.query_one("#cell").render())
        await pilot.press("k")  # next kind
        await settle(app, pilot)
        assert screen.kind == "transfer_norm"
        await pilot.press("o")  # cluster order
        assert screen.order_by == "cluster"
        await pilot.press("z")  # zoom to one phenomenon block
        assert screen.zoom and len(screen.shown) < len(screen.tasks)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, TaskScreen)
        assert app.screen.query_one("#examples").row_count > 0
        assert app.screen.query_one("#from").row_count == len(screen.tasks) - 1


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


def _copy_with_a_nan_task(index_db, tmp_path, run_label: str, task: str) -> Path:
    """A copy of the index where one run's transfer row of `task` has no values (as when its FTGD failed)."""
    db = tmp_path / "nan.duckdb"
    shutil.copy(index_db, db)
    con = duckdb.connect(str(db))
    con.execute(
        """UPDATE similarities SET value = 'NaN'::DOUBLE WHERE kind = 'transfer' AND task_a <> task_b
           AND run_id = (SELECT run_id FROM runs WHERE model || '@' || revision = ?)
           AND task_a = (SELECT task_id FROM tasks WHERE task = ?)""",
        [run_label, task],
    )
    con.close()
    return db


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
    for index, want in ((db, "experiment (dvc repro) → lr3 · settings A → B (1 setting differs): ftgd.lr 0.0001 → "
                              "0.0003"), (index_db, "settings A → B same settings: only the checkpoint differs")):
        app = TaskspaceApp(db=index)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            await pilot.press("space", "down", "space", "c")
            await settle(app, pilot)
            assert isinstance(app.screen, CompareScreen)
            shown = str(app.screen.query_one("#params-diff").render())
            assert want in shown and "steps" not in shown, shown
            assert want in " ".join(screen_text(app).split())  # on screen at 80×24


async def test_escape_goes_back_from_every_screen_above_the_first(index_db):
    """The back key is declared once (keys.BACK); each screen above the first has it, last in its footer."""
    from taskspace_tui.keys import BACK

    for screen in (HeatmapScreen, CompareScreen, TaskScreen, PipelineScreen):
        assert BACK not in screen.KEYS and [b.key for b in screen.BINDINGS][-1] == "escape"
        assert [b.action for b in screen._merged_bindings.key_to_bindings["escape"]] == ["app.pop_screen"]
    assert [b.action for b in RunsScreen._merged_bindings.key_to_bindings["escape"]] == ["leave_filter"]
    app = TaskspaceApp(db=index_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        for keys, shown in ((("enter",), HeatmapScreen), (("t",), TaskScreen), (("p",), PipelineScreen)):
            await pilot.press(*keys)
            await settle(app, pilot)
            assert isinstance(app.screen, shown)
            await pilot.press("escape")
            await settle(app, pilot)
            assert isinstance(app.screen, RunsScreen)


async def test_index_changed_reloads_the_data_screens(index_db, tmp_path):
    """What a finished pipeline run posts (taskspace_tui.messages): every data screen re-reads the index."""
    from taskspace_tui.messages import IndexChanged

    db = tmp_path / "changing.duckdb"
    shutil.copy(index_db, db)
    app = TaskspaceApp(db=db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert [r["experiment"] for r in screen.rows if r["model"] == "zeta"] == [""]
        con = duckdb.connect(str(db))  # as the pipeline's index stage would (the TUI holds no connection now)
        con.execute("UPDATE runs SET experiment = 'new-variant' WHERE model = 'zeta'")
        con.close()
        app.post_message(IndexChanged())
        await settle(app, pilot)
        assert [r["experiment"] for r in screen.rows if r["model"] == "zeta"] == ["new-variant"]


@pytest.mark.slow
async def test_pipeline_screen_runs_dvc_repro_to_the_end(pipeline_repo):
    app = TaskspaceApp(db=pipeline_repo.parent / "baseline.duckdb", project=pipeline_repo)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, PipelineScreen)
        assert screen.query_one("#stages").row_count >= 5
        await pilot.press("ctrl+r")
        for _ in range(600):  # the dvc subprocess streams in an async worker; the UI stays live meanwhile
            if app.pipeline.runner.returncode is not None:
                break
            await pilot.pause(0.1)
        await settle(app, pilot)
        assert app.pipeline.runner.returncode == 0
        log = "\n".join(line.text for line in screen.query_one("#log").lines)
        assert "dvc repro" in log and "[exit 0]" in log
        progress = screen.query_one("#progress")
        rows = [progress.get_row_at(i) for i in range(progress.row_count)]
        assert rows and all(r[1] == r[2] == "3/3" for r in rows), rows  # every task tuned and evaluated


async def test_empty_locked_and_small_states(tmp_path, index_db):
    app = TaskspaceApp(db=tmp_path / "missing.duckdb")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        msg = str(app.screen.query_one("#message").render())
        assert "no index at" in msg and "taskspace index" in msg
    locked = tmp_path / "locked.duckdb"
    shutil.copy(index_db, locked)
    # another process writes the file (DuckDB: one writer, and then no readers)
    code = f"import duckdb, time; c = duckdb.connect({str(locked)!r}); print('ok', flush=True); time.sleep(120)"
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ok"
        app = TaskspaceApp(db=locked)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            assert "locked by a writer" in str(app.screen.query_one("#message").render())
    finally:
        writer.kill()
        writer.wait()
    app = TaskspaceApp(db=index_db)
    async with app.run_test(size=(40, 10)) as pilot:
        await settle(app, pilot)
        assert isinstance(app.screen, TooSmallScreen)
        await pilot.resize_terminal(100, 30)
        await settle(app, pilot)
        assert not isinstance(app.screen, TooSmallScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)


async def test_run_without_matrices_says_so(tmp_path, index_db):
    db = tmp_path / "nomat.duckdb"
    shutil.copy(index_db, db)
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM similarities WHERE run_id = (SELECT min(run_id) FROM runs)")
    con.close()
    app = TaskspaceApp(db=db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        assert "has no task-space matrices" in str(app.screen.query_one("#message").render())


async def test_an_index_of_an_older_schema_says_how_to_rebuild(tmp_path, index_db):
    db = tmp_path / "old.duckdb"
    shutil.copy(index_db, db)
    con = duckdb.connect(str(db))
    con.execute("DROP TABLE meta")  # as written before schema versions were recorded
    con.close()
    app = TaskspaceApp(db=db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        msg = str(app.screen.query_one("#message").render())
        assert "schema version 1" in msg and "taskspace index" in msg


def test_help_and_palette_come_from_the_declared_keys(index_db):
    from taskspace_tui.screens.help import help_text

    text = help_text(TaskspaceApp.key_sections())
    for screen in (TaskspaceApp, RunsScreen, HeatmapScreen, CompareScreen, TaskScreen, PipelineScreen):
        for k in screen.KEYS:
            if k.keys != "escape":
                assert f"{k.spelled} {k.label}" in text
    assert "Mantel r" in text and "within a phenomenon" in text  # the statistics are explained
    app = TaskspaceApp(db=index_db)
    titles = {c.title for c in app.get_system_commands(HeatmapScreen({"run_id": 0}))}
    assert {f"heatmap: {k.label}" for k in HeatmapScreen.KEYS if k.palette} <= titles


def test_command_palette_lists_every_screen(index_db):
    app = TaskspaceApp(db=index_db)
    names = {c.title for c in app.get_system_commands(RunsScreen())}
    assert {"view: runs", "view: pipeline", "view: help", "runs: compare"} <= names
    assert np.isfinite(len(names))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
@pytest.mark.parametrize("keys", [(), ("enter",), ("space", "down", "space", "c")], ids=["runs", "heatmap", "compare"])
def test_snapshots(snap_compare, index_db, size, keys):
    async def run_before(pilot):
        await settle(pilot.app, pilot)
        for k in keys:
            await pilot.press(k)
        await settle(pilot.app, pilot)

    assert snap_compare(TaskspaceApp(db=index_db), terminal_size=size, run_before=run_before)


@pytest.fixture(scope="module")
def index67(tmp_path_factory):
    from taskspace.blimp.meta import PARADIGMS

    return build_synthetic_index(tmp_path_factory.mktemp("t67"), {"tiny": ["step30", "step60"]}, sorted(PARADIGMS))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
@pytest.mark.parametrize("keys", [("enter",), ("enter", "g", *"wh_island", "enter")], ids=["heatmap67", "jumped67"])
def test_snapshots_67_tasks(snap_compare, index67, size, keys):
    """All 67 BLiMP tasks: the view scrolls to the cursor, the header names the blocks."""

    async def run_before(pilot):
        await settle(pilot.app, pilot)
        for k in keys:
            await pilot.press(k)
            await pilot.pause()
        await settle(pilot.app, pilot)

    assert snap_compare(TaskspaceApp(db=index67), terminal_size=size, run_before=run_before)


def test_the_documented_key_table_matches_the_declared_keys():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "reference" / "tui.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in page.splitlines() if line.startswith("| ")}
    for screen, name in ((TaskspaceApp, "everywhere"), (RunsScreen, "runs"), (HeatmapScreen, "heatmap"),
                         (CompareScreen, "compare"), (TaskScreen, "task"), (PipelineScreen, "pipeline")):  # fmt: skip
        for k in screen.KEYS:
            if k.keys != "escape":
                assert f"`{k.spelled}` {k.label}" in rows[name], f"tui.md's {name} row lacks `{k.spelled}` {k.label}"


@pytest.fixture(scope="module")
def offline_project(tmp_path_factory):
    """A project folder whose workspace holds the offline profile, with conf/ for Hydra."""
    from taskspace.pipeline.settings import compose_params

    root = tmp_path_factory.mktemp("project")
    shutil.copytree(Path(__file__).resolve().parents[1] / "conf", root / "conf")
    compose_params(["profile=offline"], root / "params.yaml", str(root / "conf"))
    return root


def test_preview_tells_an_exp_run_beyond_the_workspace(offline_project):
    from taskspace.pipeline.settings import preview_exp_run

    runs, now = preview_exp_run(offline_project, [])  # no override: Hydra composes the committed default
    assert "smollm2-main" in now and "pythia-410m-step143000" in runs and "smollm2-main" not in runs
    same, now = preview_exp_run(offline_project, ["profile=offline", "ftgd.sparsity=0.05"])
    assert same == now


async def test_exp_run_beyond_the_workspace_asks_first(offline_project, index_db):
    from taskspace_tui.screens.confirm import ConfirmScreen

    app = TaskspaceApp(db=index_db, project=offline_project)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        await settle(app, pilot)
        screen = app.screen
        await pilot.press("ctrl+e")  # empty overrides box: would be the committed Pythia profile
        for _ in range(100):
            if isinstance(app.screen, ConfirmScreen):
                break
            await pilot.pause(0.1)
        assert isinstance(app.screen, ConfirmScreen) and "pythia-70m-step1000" in app.screen.question
        await pilot.press("n")
        await settle(app, pilot)
        assert app.screen is screen and not app.pipeline.busy and app.pipeline.runner.returncode is None  # not launched


NAMED_DVC = """
import sys, time
args = sys.argv[1:]
if args[:2] == ["exp", "list"]:
    print("taken")
elif args[:2] == ["exp", "run"]:
    print("experiment started", flush=True)
    time.sleep(60)
"""


async def test_exp_run_takes_a_name_and_refuses_one_dvc_would(offline_project, index_db, tmp_path):
    """The name box's value reaches `dvc exp run -n NAME`; a name DVC refuses (a space, one the baseline has
    already) is refused at once in one line, and nothing is launched."""
    script = tmp_path / "named_dvc.py"
    script.write_text(NAMED_DVC)
    app = TaskspaceApp(db=index_db, project=offline_project, dvc=[sys.executable, str(script)])
    async with app.run_test(size=(80, 24)) as pilot:
        try:
            await settle(app, pilot)
            await pilot.press("p")
            await quiet(app, pilot)
            await pilot.press(*"profile=offline", "tab", *"my exp?")  # `?` and `p` typed as text, not keys
            assert app.focused.id == "exp-name" and app.focused.value == "my exp?"
            await pilot.press("ctrl+e")
            await quiet(app, pilot)
            said = [n.message for n in app._notifications]
            assert any("experiment name 'my exp?' has a space: DVC refuses it" in m for m in said), said
            app.focused.value = "taken"
            await pilot.press("ctrl+e")
            await quiet(app, pilot)
            said = [n.message for n in app._notifications]
            assert any("an experiment named 'taken' exists already" in m for m in said), said
            assert not app.pipeline.busy and not app.pipeline.log  # nothing launched
            app.focused.value = "lr-sweep.1"
            await pilot.press("ctrl+e")  # the workspace's own profile: launched without asking
            await until(pilot, lambda: "experiment started" in app.pipeline.log)
            assert app.pipeline.args == ["exp", "run", "-n", "lr-sweep.1", "-S", "profile=offline"]
            assert "$ dvc exp run -n lr-sweep.1 -S profile=offline" in log_text(app.screen)
            await pilot.press("ctrl+c")
            await until(pilot, lambda: not app.pipeline.busy)
            await quiet(app, pilot)
        finally:
            stop(app)


async def test_escape_leaves_the_filter_box_and_keeps_the_filter(index_db):
    app = TaskspaceApp(db=index_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("slash", "z", "e", "t", "a")
        assert app.focused.id == "filter"
        await pilot.press("escape")
        assert app.focused.id == "runs"
        assert app.screen.query_one("#filter").value == "zeta" and app.screen.query_one("#runs").row_count == 1


async def test_heatmap_relays_itself_out_on_resize(index_db):
    app = TaskspaceApp(db=index_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        hm = app.screen.query_one(Heatmap)
        before = (len(hm._cols), hm.render_line(0).cell_length)
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        assert len(hm._cols) > before[0] and hm.render_line(0).cell_length > before[1]  # no key needed


async def test_q_quits_a_too_small_terminal(index_db):
    app = TaskspaceApp(db=index_db)
    async with app.run_test(size=(40, 10)) as pilot:
        await settle(app, pilot)
        assert isinstance(app.screen, TooSmallScreen)
        assert "q to quit" in str(app.screen.query_one("#too-small").render())
        await pilot.press("q")
        await pilot.pause()
        assert app.return_code is not None or not app.is_running


async def test_a_space_that_duplicates_transfer_is_not_offered(index_db, tmp_path):
    from taskspace_tui.screens.heatmap import offered_kinds

    db = tmp_path / "dup.duckdb"
    shutil.copy(index_db, db)
    idx = Index(db)
    run_id = idx.runs()[0]["run_id"]
    assert "transfer_margin" in offered_kinds(idx, run_id)  # differs from transfer here
    idx.close()
    con = duckdb.connect(str(db))
    con.execute(  # as under probing.metric = margin: the same space twice
        """UPDATE similarities s SET value = t.value FROM similarities t WHERE s.kind = 'transfer_margin'
           AND t.kind = 'transfer' AND s.run_id = t.run_id AND s.task_a = t.task_a AND s.task_b = t.task_b"""
    )
    con.close()
    idx = Index(db)
    offered = offered_kinds(idx, run_id)
    assert "transfer_margin" not in offered and {"transfer", "transfer_norm", "gradient", "sharing"} <= set(offered)
    idx.close()


def test_pipeline_states_tell_busy_from_up_to_date():
    """A failed `dvc status` (DVC's lock held by a running pipeline) never reads as "up to date"."""
    from taskspace_tui.runner import DvcResult, stage_states

    lock = DvcResult(1, "", "ERROR: Unable to acquire lock. Most likely another DVC process is running")
    assert stage_states(["prepare"], lock, running=False) == [("prepare", "DVC is busy (a pipeline is running)")]
    other = DvcResult(255, "", "ERROR: unexpected error - dvc.yaml is broken\n")
    assert stage_states(["prepare"], other, running=False) == [
        ("prepare", "unknown: ERROR: unexpected error - dvc.yaml is broken")
    ]
    ok = DvcResult(0, '{"analyze": [{"changed deps": {}}]}', "")
    assert stage_states(["prepare", "analyze"], ok, running=False) == [
        ("prepare", "up to date"),
        ("analyze", "changed"),
    ]


async def test_heatmap_exports_a_figure_into_the_project(index_db, tmp_path):
    """`e` writes the shown space as a PNG figure and CSV under <project>/exports/ and says where."""
    app = TaskspaceApp(db=index_db, project=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        figures = list((tmp_path / "exports").glob("tiny-step30-*-transfer.png"))
        assert len(figures) == 1 and figures[0].read_bytes()[:4] == b"\x89PNG"
        assert figures[0].with_suffix(".csv").read_text().startswith("tuned_task,eval_task,value")
        app.deliver_screenshot()  # the palette's Screenshot: into the project too, never ~/Downloads
        for _ in range(50):  # the driver writes it in the background
            await pilot.pause(0.1)
            if list((tmp_path / "exports").glob("*.svg")):
                break
        assert list((tmp_path / "exports").glob("*.svg"))


async def test_67_task_heatmap_scrolls_with_the_cursor_and_jumps_to_a_task(index67):
    """At 80×24 a 67-task space does not fit: the cursor stays on screen (the view scrolls), page keys move by
    screens, `g` jumps to a task typed by name, and the header names the blocks and marks the cursor's column."""
    app = TaskspaceApp(db=index67)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        screen, hm = app.screen, app.screen.query_one(Heatmap)
        assert len(screen.shown) == 67 and not hm.fits
        await pilot.press("end")
        await pilot.pause()
        assert hm.cursor[0] == 66
        assert any("▸" in hm.render_line(y).text for y in range(1, hm.size.height))  # the last row is on screen
        await pilot.press("home", "pagedown")
        await pilot.pause()
        assert 0 < hm.cursor[0] < 66
        await pilot.press("g")
        await pilot.pause()
        await pilot.press(*"wh_isl", "enter")
        await settle(app, pilot)
        want = [screen.tasks[k] for k in screen.shown].index("wh_island")
        assert hm.cursor == (want, want) and "wh_island" in str(screen.query_one("#cell").render())
        assert "▾" in hm.render_line(1).text and "wh_island" in hm.render_line(1).text  # its column, named


async def test_heatmap_fades_cells_not_significant_on_their_own_pairs(tmp_path):
    """Each transfer cell's paired test: q < 0.05 cells keep their colour, the others are faded; the cell panel
    gives p, q and the interval."""
    db = build_synthetic_index(tmp_path, {"tiny": ["step30"]}, TASKS, cells=True)
    app = TaskspaceApp(db=db)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        screen = app.screen
        hm = screen.query_one(Heatmap)
        groups = screen.groups()
        same = np.array([[groups[a] == groups[b] for b in screen.shown] for a in screen.shown])
        assert (hm.marked == same).all()  # synthetic: q 0.002 within a phenomenon, 1.0 between
        i, j = np.argwhere(~same)[0]
        assert hm._cell(int(i), int(j)) != hm.scale.color(hm.matrix[i, j])  # faded
        assert hm._cell(int(i), int(i)) == hm.scale.color(hm.matrix[i, i])  # the diagonal is never faded
        hm.cursor = (int(i), int(j))
        await pilot.pause()
        panel = str(screen.query_one("#cell").render())
        assert "paired test: p 0.5000, q 1.0000" in panel and "not significant" in panel and "interval" in panel


def label_lines(hm) -> list[tuple[str, str]]:
    """(label shown in the gutter, task of the row on that line) for each cell line on screen that carries text."""
    out = []
    for y in range(hm.HEADER, hm.size.height):
        line = y - hm.HEADER + hm._y0
        if line in hm.grid.text_at:
            row = hm.grid.text_at[line]
            shown = hm.render_line(y).text[: hm.grid.gutter - 1].strip()
            if hm.grid.numbered:
                shown = shown.rsplit(" ", 1)[0]
            out.append((shown, hm.labels[row]))
    return out


async def open_heatmap(app, pilot, *keys: str) -> tuple:
    await settle(app, pilot)
    await pilot.press("enter")
    await settle(app, pilot)
    for k in keys:
        await pilot.press(k)
        await pilot.pause()
    return app.screen, app.screen.query_one(Heatmap)


async def test_heatmap_uses_a_160x48_screen(index_db):
    """Full task names on the rows, whole phenomenon names over their blocks, numbered columns and each cell's
    value written in it."""
    from taskspace_tui.widgets.heatmap_layout import format_value

    app = TaskspaceApp(db=index_db)
    async with app.run_test(size=(160, 48)) as pilot:
        screen, hm = await open_heatmap(app, pilot)
        labelled = label_lines(hm)
        assert [t for t, _ in labelled] == [screen.tasks[k] for k in screen.shown]  # every row, in full
        assert all(shown == task for shown, task in labelled)
        header = hm.render_line(0).text
        assert sum(g in header for g in set(screen.groups())) >= 2  # phenomena named in full
        assert hm.render_line(1).text.split() == [str(k + 1) for k in range(len(screen.shown))]
        cw = hm.grid.cell_width
        for line, row in hm.grid.text_at.items():
            text = hm.render_line(hm.HEADER + line - hm._y0).text[hm.grid.gutter :]
            want = [format_value(hm.matrix[row, c], cw - 1, hm.scale.diverging) for c in range(len(hm.matrix))]
            assert None not in want and text.split() == want


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_67_task_heatmap_labels_every_visible_row(index67, size):
    """One line per task: the scrolled view names each row on screen (in full at 160×48), at the top and the end."""
    from taskspace_tui.widgets.heatmap import shorten

    app = TaskspaceApp(db=index67)
    async with app.run_test(size=size) as pilot:
        screen, hm = await open_heatmap(app, pilot)
        for key in ("pagedown", "end"):
            labelled = label_lines(hm)
            assert len(labelled) == len(hm.visible_rows()) == hm.size.height - hm.HEADER  # every line, a row
            width = hm.grid.gutter - 1 - (len(str(len(hm.matrix))) + 1 if hm.grid.numbered else 0)
            assert all(shown == shorten(task, width) for shown, task in labelled)
            if size == (160, 48):
                assert all(shown == task for shown, task in labelled)
            await pilot.press(key)
            await pilot.pause()
        assert hm.cursor[0] == 66 and label_lines(hm)[-1][1] == screen.tasks[screen.shown[66]]


async def test_zoom_and_reorder_keep_the_cursor_pair_and_the_colour_scale(index_db):
    """`z` shows the blocks of the cursor's row and column phenomena, `o` reorders: the cursor stays on its task
    pair, and a signed space keeps its diverging scale (that of the whole space)."""
    from taskspace_tui.widgets.heatmap import Scale

    app = TaskspaceApp(db=index_db)
    async with app.run_test(size=(160, 48)) as pilot:
        screen, hm = await open_heatmap(app, pilot, "down", "down", "down", "right")
        pair = screen.pair()
        groups = dict(zip(screen.tasks, screen.groups()))
        assert groups[pair[0]] != groups[pair[1]] and hm.scale.diverging
        whole = Scale.of(screen.matrix)
        for key in ("z", "o", "o", "z", "o", "z"):
            await pilot.press(key)
            await pilot.pause()
            assert screen.pair() == pair and hm.scale == whole, key
            assert screen.cell(*hm.cursor)[:2] == pair
        assert screen.zoom == (groups[pair[0]], groups[pair[1]]) and len(screen.shown) == 4


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


# ---- at 80×24: the pipeline screen over a stand-in for dvc, help, task view, runs footer -------------------------

FAKE_DVC = """
import sys, time
args = sys.argv[1:]
if args[:2] == ["stage", "list"]:  # a real pipeline's shape: foreach stages with an item per run
    items = [f"{stage}@run{i}" for stage in ("eval", "ftgd", "probe") for i in range(12)]
    print("\\n".join(["check", "prepare", *items, "analyze", "index"]))
elif args[:1] == ["status"]:
    print('{"analyze": [], "index": []}')
else:
    print("stage one done", flush=True)
    for i in range(120):  # goes on writing: a detached run keeps writing into its log once the TUI is gone
        time.sleep(0.5)
        print(f"stage two: {i}", flush=True)
"""


@pytest.fixture
def fake_dvc(tmp_path):
    script = tmp_path / "fake_dvc.py"
    script.write_text(FAKE_DVC)
    return [sys.executable, str(script)]


async def quiet(app, pilot, seconds: float = 30.0):
    """Like settle, but leaves a running pipeline command running (its worker ends only with the command)."""
    import time

    deadline = time.monotonic() + seconds
    await pilot.pause()
    while any(w.is_running and w.group != "pipeline" for w in app.workers) and time.monotonic() < deadline:
        await pilot.pause(0.05)
    await pilot.pause()


async def until(pilot, condition, seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    assert condition()


def screen_text(app) -> str:
    """What the terminal shows, line by line."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def log_text(screen) -> str:
    return "\n".join(line.text for line in screen.query_one("#log").lines)


def stop(app) -> None:
    """A test's left-over stand-in command, killed with its group."""
    import os
    import signal

    pid = app.pipeline.runner.pid
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def launched(app, pilot) -> None:
    """Open the pipeline screen, launch `dvc repro` (the stand-in) and wait for its first stage's line."""
    await settle(app, pilot)
    await pilot.press("p")
    await quiet(app, pilot)
    await pilot.press("ctrl+r")
    await until(pilot, lambda: "stage one done" in app.pipeline.log)


async def test_a_run_outlives_the_pipeline_screen(index_db, tmp_path, fake_dvc):
    """Leaving the pipeline screen leaves its command running: coming back shows it, its output so far, and cancel
    reaches it; a second launch meanwhile is refused with the command's name, PID and the cancel key."""
    app = TaskspaceApp(db=index_db, project=tmp_path, dvc=fake_dvc)
    async with app.run_test(size=(80, 24)) as pilot:
        try:
            await launched(app, pilot)
            pid = app.pipeline.runner.pid
            await pilot.press("escape")
            await quiet(app, pilot)
            assert isinstance(app.screen, RunsScreen) and app.pipeline.busy and app.pipeline.runner.pid == pid
            await pilot.press("p")
            await quiet(app, pilot)
            screen = app.screen
            assert isinstance(screen, PipelineScreen)
            state = str(screen.query_one("#run-state").render())
            assert "running: dvc repro" in state and str(pid) in state and "ctrl+c cancels" in state
            assert "$ dvc repro" in log_text(screen) and "stage one done" in log_text(screen)
            assert not screen.query_one("#cancel").disabled and screen.query_one("#running").display
            await pilot.press("ctrl+r")
            await pilot.pause()
            said = [n.message for n in app._notifications]
            assert any("already running" in m and "dvc repro" in m and str(pid) in m and "ctrl+c" in m for m in said)
            assert app.pipeline.runner.pid == pid  # the first one untouched
            await pilot.press("ctrl+c")
            await until(pilot, lambda: not app.pipeline.busy)
            assert app.pipeline.runner.returncode == -2 and app.pipeline.cancelled  # SIGINT: DVC stops cleanly
            assert screen.query_one("#cancel").disabled
            await quiet(app, pilot)
        finally:
            stop(app)


async def test_a_cancelled_run_says_what_is_kept_and_how_to_go_on(index_db, tmp_path, fake_dvc):
    app = TaskspaceApp(db=index_db, project=tmp_path, dvc=fake_dvc)
    async with app.run_test(size=(80, 24)) as pilot:
        try:
            await launched(app, pilot)
            await pilot.press("ctrl+c")
            await until(pilot, lambda: not app.pipeline.busy)
            await quiet(app, pilot)
            state = str(app.screen.query_one("#run-state").render())
            assert "cancelled: dvc repro" in state and "Finished tasks are kept" in state
            assert "ctrl+r relaunches" in state and "escape goes back" in state
            assert "[cancelled: finished tasks are kept" in log_text(app.screen)
            shown = " ".join(screen_text(app).split())
            assert "cancelled: dvc repro" in shown and "escape goes back" in shown  # on screen at 80×24
            await pilot.press("ctrl+r")  # relaunches, as it says
            await until(pilot, lambda: app.pipeline.busy and not app.pipeline.cancelled)
            assert "running: dvc repro" in str(app.screen.query_one("#run-state").render())
            await pilot.press("ctrl+c")
            await until(pilot, lambda: not app.pipeline.busy)
            await quiet(app, pilot)  # the status re-read after it ended
        finally:
            stop(app)


def running(pid: int) -> bool:
    """Not exited (a zombie no one has reaped yet counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def exited(app, seconds: float = 30.0) -> None:
    """Wait for the app to exit (plain sleeps: an exiting app is no longer paused by the pilot)."""
    import asyncio

    for _ in range(int(seconds / 0.05)):
        if app.return_code is not None:
            return
        await asyncio.sleep(0.05)
    assert app.return_code is not None


async def asked_to_quit(app, pilot) -> None:
    """Launch the stand-in, go back to the runs screen (on the pipeline screen `q` is typed into the form), q."""
    from taskspace_tui.screens.confirm import QuitScreen

    await launched(app, pilot)
    await pilot.press("escape")
    await quiet(app, pilot)
    await pilot.press("q")
    await until(pilot, lambda: isinstance(app.screen, QuitScreen) and "stay (escape)" in screen_text(app))


async def test_q_without_a_running_command_quits_at_once(index_db, tmp_path, fake_dvc):
    app = TaskspaceApp(db=index_db, project=tmp_path, dvc=fake_dvc)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("q")
        await exited(app)
    assert app.return_code == 0 and not (tmp_path / ".taskspace").exists()  # nothing launched, nothing asked


async def test_q_during_a_run_asks_and_stay_keeps_the_app_and_the_run(index_db, tmp_path, fake_dvc):
    """The question names the command, its PID, its log and what cancel keeps; escape (stay) changes nothing; the
    palette's Quit asks the same."""
    from taskspace_tui.screens.confirm import QuitScreen

    app = TaskspaceApp(db=index_db, project=tmp_path, dvc=fake_dvc)
    async with app.run_test(size=(80, 24)) as pilot:
        try:
            await asked_to_quit(app, pilot)
            pid, log = app.pipeline.runner.pid, app.pipeline.runner.log_path
            assert log.parent == tmp_path / ".taskspace" / "pipeline" and "stage one done" in log.read_text()
            question = " ".join(app.screen.question.split())
            for said in ("dvc repro is running", f"PID {pid}", "finished tasks are kept", str(log), f"-- -{pid}"):
                assert said in question, said
            assert app.screen.region.contains_region(app.screen.query_one("#confirm").region)  # all of it at 80×24
            for button in ("cancel & quit (c)", "leave running & quit (l)", "stay (escape)"):
                assert button in screen_text(app), button
            await pilot.press("escape")
            await quiet(app, pilot)
            assert isinstance(app.screen, RunsScreen) and app.return_code is None
            assert app.pipeline.busy and app.pipeline.runner.pid == pid and not app.pipeline.cancelled
            palette_quit = next(c for c in app.get_system_commands(app.screen) if c.title == "Quit")
            await palette_quit.callback()
            await until(pilot, lambda: isinstance(app.screen, QuitScreen))
            await pilot.press("enter")  # focus starts on stay
            await quiet(app, pilot)
            assert isinstance(app.screen, RunsScreen) and app.pipeline.runner.pid == pid and running(pid)
        finally:
            stop(app)


async def test_cancel_and_quit_stops_the_command_then_quits(index_db, tmp_path, fake_dvc):
    app = TaskspaceApp(db=index_db, project=tmp_path, dvc=fake_dvc)
    async with app.run_test(size=(80, 24)) as pilot:
        try:
            await asked_to_quit(app, pilot)
            pid = app.pipeline.runner.pid
            await pilot.press("c")
            await exited(app)
            assert not running(pid) and app.pipeline.cancelled and app.pipeline.runner.returncode == -2  # SIGINT
            assert "[cancelled: finished tasks are kept" in "\n".join(app.pipeline.log)
        finally:
            stop(app)


async def test_leave_running_and_quit_leaves_the_command_writing_its_log(index_db, tmp_path, fake_dvc):
    """A command left running is detached: the TUI gone, it goes on, and its output goes on into its log."""
    import time

    app = TaskspaceApp(db=index_db, project=tmp_path, dvc=fake_dvc)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await asked_to_quit(app, pilot)
            pid, log = app.pipeline.runner.pid, app.pipeline.runner.log_path
            await pilot.press("l")
            await exited(app)
        assert app.return_code == 0 and running(pid) and not app.pipeline.cancelled
        before = log.read_text().count("stage two")
        deadline = time.monotonic() + 10
        while log.read_text().count("stage two") <= before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert log.read_text().count("stage two") > before and running(pid)  # still writing, after the app exited
    finally:
        stop(app)


async def test_typing_overrides_right_after_opening_the_pipeline_goes_into_the_field(index_db, tmp_path, fake_dvc):
    """Focus starts in the overrides box: `r` (runs), `t`, `p`, `?` typed there are text, not keys."""
    app = TaskspaceApp(db=index_db, project=tmp_path, dvc=fake_dvc)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("p", *"-S ftgd.lr=0.001 ?tp")
        await quiet(app, pilot)
        assert isinstance(app.screen, PipelineScreen) and len(app.screen_stack) == 3
        assert app.focused.id == "overrides" and app.focused.value == "-S ftgd.lr=0.001 ?tp"
        assert not app.pipeline.busy and not app.pipeline.log  # nothing launched


async def test_tab_on_the_pipeline_screen_moves_between_visible_widgets(index_db, tmp_path, fake_dvc):
    app = TaskspaceApp(db=index_db, project=tmp_path, dvc=fake_dvc)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        await quiet(app, pilot)
        seen = []
        for _ in range(7):
            w = app.focused
            assert w is not None and w.display and w.region.area > 0, (seen, w)
            assert app.screen.region.contains_region(w.region), w
            seen.append(w.id)
            await pilot.press("tab")
        assert seen[0] == "overrides" and {"repro", "exp_run", "log", "stages"} <= set(seen)
        assert "progress" not in seen  # no runs to show: hidden, not an empty box to land on


async def test_the_whole_pipeline_fits_80x24(index_db, tmp_path, fake_dvc):
    """foreach stages fold into one row each, so analyze and index show without scrolling."""
    app = TaskspaceApp(db=index_db, project=tmp_path, dvc=fake_dvc)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        await quiet(app, pilot)
        table = app.screen.query_one("#stages")
        assert [table.get_row_at(i)[0] for i in range(table.row_count)] == [
            "check", "prepare", "eval@… (12)", "ftgd@… (12)", "probe@… (12)", "analyze", "index"
        ]  # fmt: skip
        assert table.row_count + 1 <= table.size.height  # header and every row in view
        lines = screen_text(app).splitlines()
        assert any(ln.lstrip().startswith("analyze") and "changed" in ln for ln in lines)
        assert any(ln.lstrip().startswith("index") and "changed" in ln for ln in lines)
        assert any(ln.lstrip().startswith("eval@… (12)") and "up to date" in ln for ln in lines)


def test_foreach_stages_fold_into_one_row_with_their_states_counted():
    from taskspace_tui.runner import group_stages

    states = [("check", "up to date"), ("eval@a", "changed"), ("eval@b", "up to date"), ("eval@c", "changed"),
              ("ftgd@a", "up to date"), ("index", "changed")]  # fmt: skip
    assert group_stages(states) == [
        ("check", "up to date"),
        ("eval@… (3)", "2 changed, 1 up to date"),
        ("ftgd@… (1)", "up to date"),
        ("index", "changed"),
    ]


async def test_help_scrolls_by_keyboard_at_80x24(index_db):
    from taskspace.report.labels import GLOSSARY

    app = TaskspaceApp(db=index_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        body = app.screen.query_one("#help")
        assert app.focused is body and body.max_scroll_y > 0 and body.region.bottom <= 24
        last = list(GLOSSARY)[-1]
        assert last not in screen_text(app)
        await pilot.press("down")
        await until(pilot, lambda: body.scroll_y >= 1)
        await pilot.press("pagedown")
        await until(pilot, lambda: body.scroll_y > 1)
        await pilot.press("end")
        await until(pilot, lambda: body.scroll_y == body.max_scroll_y)
        await pilot.pause()
        assert last in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_task_view_names_its_run_and_shows_transfer_values_at_80x24(index_db):
    app = TaskspaceApp(db=index_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        screen, text = app.screen, screen_text(app)
        label = screen.run_row["label"]
        assert label in str(screen.query_one("#task-title").render()) and label in text.splitlines()[0]  # header
        for table_id in ("#from", "#to"):
            table = screen.query_one(table_id)
            assert table.region.right <= 80
            for i in range(min(4, table.row_count)):
                value = table.get_row_at(i)[0]
                assert value.startswith(("+", "-")) and value in text, (table_id, value)


async def test_runs_footer_shows_enter_and_enter_in_the_filter_returns_to_the_table(index_db):
    app = TaskspaceApp(db=index_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        footer = screen_text(app).splitlines()[-1]
        assert "heatmap" in footer and footer.lstrip().startswith("⏎ heatmap")
        await pilot.press("slash", "z", "enter")
        assert app.focused.id == "runs" and isinstance(app.screen, RunsScreen)  # enter in the box: to the table
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, HeatmapScreen) and app.screen.run_row["label"] == "zeta@main"
