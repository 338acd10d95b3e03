"""python -m tui [DB] — open the TUI over an index (default data/index/taskspace.duckdb)."""

import sys

from taskspace_tui.app import TaskspaceApp

TaskspaceApp(db=sys.argv[1] if len(sys.argv) > 1 else "data/index/taskspace.duckdb").run()
