"""The TUI driven by Textual's Pilot over a synthetic index (made-up outputs analysed and indexed like the
pipeline's, seconds to build): runs, heatmaps, the task view, help, states and snapshots."""

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
from conftest import SYNTHETIC_TASKS as TASKS
from synthetic import build_synthetic_index
from tui_support import (
    label_lines,
    open_heatmap,
    screen_text,
    settle,
    until,
)

from taskspace.index import Index
from taskspace_tui.app import TaskspaceApp
from taskspace_tui.screens.compare import CompareScreen
from taskspace_tui.screens.heatmap import HeatmapScreen
from taskspace_tui.screens.help import HelpScreen, TooSmallScreen
from taskspace_tui.screens.pipeline import PipelineScreen
from taskspace_tui.screens.runs import RunsScreen
from taskspace_tui.screens.task import TaskScreen
from taskspace_tui.widgets.heatmap import Heatmap


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

    page = (Path(__file__).resolve().parents[1] / "docs" / "reference" / "tui.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in page.splitlines() if line.startswith("| ")}
    for screen, name in ((TaskspaceApp, "everywhere"), (RunsScreen, "runs"), (HeatmapScreen, "heatmap"),
                         (CompareScreen, "compare"), (TaskScreen, "task"), (PipelineScreen, "pipeline")):  # fmt: skip
        for k in screen.KEYS:
            if k.keys != "escape":
                assert f"`{k.spelled}` {k.label}" in rows[name], f"tui.md's {name} row lacks `{k.spelled}` {k.label}"


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
