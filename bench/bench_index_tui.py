"""Index and TUI speed on a synthetic index: 67 tasks × RUNS runs × 5 kinds (≈1.1M similarity rows at 50 runs).

Prints ingest rows/s (bulk Arrow insert), the time to read one 67×67 matrix, and the TUI's time from start to
the first heatmap on screen (Textual Pilot, headless).

    .venv/bin/python bench/bench_index_tui.py [--runs 50] [--db /tmp/synthetic.duckdb] [--existing DB]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from taskspace.blimp.data import task_table
from taskspace.blimp.meta import PARADIGMS
from taskspace.index import SCHEMA, SCHEMA_VERSION, Index, insert, similarity_rows
from taskspace.method.probing import KINDS


def synthetic_index(path: Path, runs: int, seed: int = 0) -> float:
    """Write a synthetic index; returns similarity rows inserted per second."""
    rng = np.random.default_rng(seed)
    tasks = sorted(PARADIGMS)
    con = duckdb.connect(str(path))
    con.execute(SCHEMA)
    con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
    meta = task_table({t: PARADIGMS[t] for t in tasks})
    insert(con, "tasks", meta.add_column(0, "task_id", pa.array(range(len(tasks)), pa.int32())))
    ids = {t: i for i, t in enumerate(tasks)}
    rows, t0 = 0, time.perf_counter()
    for r in range(runs):
        row = [r, f"m@step{r}#h", f"m@step{r}", "m", "spec", "70M", 70_000_000, f"step{r}", r, "<|endoftext|>", "h"]
        con.execute(f"INSERT INTO runs VALUES ({', '.join('?' * 17)})", row + ["", "", "", "", "{}", None])
        mats = {k: rng.normal(size=(len(tasks), len(tasks))) for k in KINDS}
        table = similarity_rows(r, tasks, mats, ids)
        insert(con, "similarities", table)
        rows += table.num_rows
    rate = rows / (time.perf_counter() - t0)
    con.close()
    return rate


async def first_heatmap(db: Path) -> float:
    from taskspace_tui.app import TaskspaceApp
    from taskspace_tui.screens.heatmap import HeatmapScreen

    t0 = time.perf_counter()
    app = TaskspaceApp(db=db)
    async with app.run_test(size=(120, 40)) as pilot:
        while not getattr(app.screen, "rows", None):
            await pilot.pause(0.01)
        await pilot.press("enter")
        while not (isinstance(app.screen, HeatmapScreen) and app.screen.shown):
            await pilot.pause(0.01)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--db", type=Path, default=None)
    ap.add_argument("--existing", type=Path, default=None, help="also time the TUI on this index")
    args = ap.parse_args()
    db = args.db or Path(tempfile.mkdtemp()) / "synthetic.duckdb"
    db.unlink(missing_ok=True)
    rate = synthetic_index(db, args.runs)
    idx = Index(db)
    n = idx.counts()["similarities"]
    t0 = time.perf_counter()
    reps = 20
    for r in range(reps):
        tasks, m = idx.matrix(r % args.runs, "transfer")
    read_ms = (time.perf_counter() - t0) / reps * 1000
    idx.close()
    print(f"synthetic index: {args.runs} runs × {len(tasks)} tasks, {n:,} similarity rows")
    print(f"ingest: {rate:,.0f} rows/s   one {m.shape[0]}×{m.shape[1]} matrix: {read_ms:.1f} ms")
    print(f"TUI start → first heatmap (synthetic): {asyncio.run(first_heatmap(db)):.2f} s")
    if args.existing:
        print(f"TUI start → first heatmap ({args.existing}): {asyncio.run(first_heatmap(args.existing)):.2f} s")


if __name__ == "__main__":
    main()
