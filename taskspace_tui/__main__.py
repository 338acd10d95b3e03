"""python -m taskspace_tui [DB] — open the TUI over an index (default data/index/taskspace.duckdb)."""

import sys

from taskspace.runs import INDEX_DB
from taskspace_tui.app import TaskspaceApp

TaskspaceApp(db=sys.argv[1] if len(sys.argv) > 1 else INDEX_DB).run()
