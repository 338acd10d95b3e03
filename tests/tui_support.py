"""Helpers of the TUI tests (tests/test_tui*.py): waiting on the app, reading the screen, the stand-in dvc."""

import shutil
from pathlib import Path

import duckdb

from taskspace_tui.widgets.heatmap import Heatmap

RUNS = {"tiny": ["step100", "step30", "step60"], "zeta": ["main"]}  # listed out of training order on purpose


async def settle(app, pilot):
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


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
