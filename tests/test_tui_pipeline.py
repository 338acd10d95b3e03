"""The TUI's pipeline screen, driven by Textual's Pilot: launching DVC on the real pipeline, and a stand-in dvc
(a Python script) for what must not wait on a real run: outliving the screen, cancel, quit, the form."""

import shutil
import sys
from pathlib import Path

import pytest
from tui_support import (
    asked_to_quit,
    exited,
    launched,
    log_text,
    quiet,
    running,
    screen_text,
    settle,
    stop,
    until,
)

from taskspace_tui.app import TaskspaceApp
from taskspace_tui.screens.pipeline import PipelineScreen
from taskspace_tui.screens.runs import RunsScreen


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
