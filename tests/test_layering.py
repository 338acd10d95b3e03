"""The arrows of architecture.md, checked: which parts may import which."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_in(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.split()


def test_library_imports_without_textual():
    """taskspace/ is the core: it must import (CLI included) without pulling in the TUI toolkit."""
    code = (
        "import sys, taskspace.cli, taskspace.index, taskspace.pipeline.stages, taskspace.method.probing, taskspace.stats.spaces; "
        "print('textual' in sys.modules, 'tui' in sys.modules)"
    )
    assert imported_in(code) == ["False", "False"]


def test_tui_never_loads_torch_or_a_model():
    """The TUI reads the index; it never imports torch or transformers (a model would take seconds and GBs)."""
    screens = "taskspace_tui.screens.runs, taskspace_tui.screens.heatmap, taskspace_tui.screens.compare, taskspace_tui.screens.task, taskspace_tui.screens.pipeline"
    code = f"import sys, taskspace_tui.app, {screens}; print('torch' in sys.modules, 'transformers' in sys.modules)"
    assert imported_in(code) == ["False", "False"]


def test_cli_answers_help_without_torch():
    assert imported_in("import sys, taskspace.cli; print('torch' in sys.modules)") == ["False"]


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_the_maths_never_knows_where_results_are_stored():
    """Scoring, packing, FTGD and the statistics take and return arrays; runs, the index, params and the stages
    (which know the layout and the files) are above them."""
    storage = ("taskspace.runs", "taskspace.index", "taskspace.pipeline.settings", "taskspace.pipeline.stages", "taskspace.cli")
    for module in ("analysis", "packing", "scoring", "ftgd", "similarity", "config"):
        found = {m for m in _imports(ROOT / "taskspace" / f"{module}.py") if m.startswith(storage)}
        assert not found, f"taskspace/{module}.py imports {sorted(found)}"


def test_tui_reads_results_only_through_the_index():
    """No SQL or file reading of stage outputs in the TUI: it goes through taskspace.index."""
    for path in (ROOT / "tui").rglob("*.py"):
        found = {m for m in _imports(path) if m in ("duckdb", "pyarrow.parquet", "taskspace.runs.Layout")}
        assert not found, f"{path.relative_to(ROOT)} imports {sorted(found)}"


def test_the_executor_only_runs_jobs():
    """Where work runs never decides what is computed: executor.py knows no stage, loop or model code."""
    compute = ("taskspace.method.probing", "taskspace.method.ftgd", "taskspace.lm.scoring", "taskspace.pipeline.stages", "taskspace.lm.models")
    found = {m for m in _imports(ROOT / "taskspace" / "executor.py") if m.startswith(compute)}
    assert not found, f"taskspace/pipeline/executor.py imports {sorted(found)}"
