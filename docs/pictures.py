"""The README's two pictures, made by the project's own commands from an index (after ./scripts/main.sh):
the TUI's heatmap of one run as an SVG screenshot, and `taskspace export`'s figure of the same run.

    .venv/bin/python docs/pictures.py [--db data/index/taskspace.duckdb] [--run smollm2@main]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

from taskspace_tui.app import TaskspaceApp
from taskspace_tui.screens.heatmap import HeatmapScreen

IMAGES = Path(__file__).resolve().parent / "images"


async def screenshot(db: Path, run: str, out: Path, size: tuple[int, int] = (120, 34)) -> None:
    """Open the TUI on `db`, walk the runs list to `run`, open its heatmap, move the cursor off the diagonal."""
    app = TaskspaceApp(db=db)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        for _ in range(len(app.screen.rows)):
            if app.screen.current()["label"] == run:
                break
            await pilot.press("down")
        else:
            raise SystemExit(f"{run} is not in {db}'s runs list")
        await pilot.press("enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, HeatmapScreen)
        await pilot.press("down", "right", "right", "right")
        await pilot.pause()
        app.save_screenshot(filename=out.name, path=str(out.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=Path("data/index/taskspace.duckdb"))
    ap.add_argument("--run", default="smollm2@main")
    args = ap.parse_args()
    IMAGES.mkdir(exist_ok=True)
    asyncio.run(screenshot(args.db, args.run, IMAGES / "tui-heatmap.svg"))
    name = args.run.split("@")[0]
    taskspace = Path(sys.executable).parent / "taskspace"
    subprocess.run([str(taskspace), "export", args.run, "--db", str(args.db), "--out",
                    str(IMAGES / f"transfer-{name}.png")], check=True)  # fmt: skip
    for f in sorted(IMAGES.iterdir()):
        print(f"{f.relative_to(IMAGES.parents[1])}: {f.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
