"""The TUI's modules import each other without a cycle, counting imports inside functions: the App knows the
screens, the screens know their widgets, keys and messages, and nothing below knows the App."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "taskspace_tui"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, module: str, known: set[str]) -> set[str]:
    """The known modules a parsed file imports, at module level or inside functions (relative ones resolved)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to the module's package
                parent = module.split(".")[: -node.level]
                base = ".".join(parent + ([base] if base else []))
            # `from pkg import mod` imports pkg.mod; `from mod import name` imports mod
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        out |= {n for n in names if n in known}
    return out - {module}


def tui_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    return {m: imported(ast.parse(p.read_text()), m, known) for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_cycle_check_sees_imports_inside_functions():
    known = {"taskspace_tui.app", "taskspace_tui.screens.help", "taskspace_tui.screens"}
    code = "def help_text():\n    from taskspace_tui.app import TaskspaceApp\n"
    assert imported(ast.parse(code), "taskspace_tui.screens.help", known) == {"taskspace_tui.app"}
    code = "from taskspace_tui.screens import help\nfrom . import screens\n"
    assert imported(ast.parse(code), "taskspace_tui.app", known) == {
        "taskspace_tui.screens.help",
        "taskspace_tui.screens",
    }
    cycle = find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "d": {"a", "c"}}) is None


def test_no_import_cycle_among_the_tui_modules():
    graph = tui_graph()
    assert "taskspace_tui.screens.help" in graph["taskspace_tui.app"]  # the graph is the real one
    assert "taskspace_tui.screens.base" in graph["taskspace_tui.screens.pipeline"]
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_help_and_pipeline_know_neither_the_app_nor_other_screens():
    """The App hands the help screen every screen's keys; the pipeline posts IndexChanged from messages."""
    graph = tui_graph()
    screens = {m for m in graph if m.startswith("taskspace_tui.screens.")}
    assert graph["taskspace_tui.screens.help"] <= {"taskspace_tui.keys"}
    assert not graph["taskspace_tui.screens.pipeline"] & {"taskspace_tui.app"}
    assert graph["taskspace_tui.screens.pipeline"] & screens <= {
        "taskspace_tui.screens.base",
        "taskspace_tui.screens.confirm",
    }
    assert not any("taskspace_tui.app" in graph[m] for m in graph if m != "taskspace_tui.__main__")


def test_the_runner_and_messages_stand_alone():
    """Process control knows no Textual and no screen: it is tested with plain subprocesses."""
    graph = tui_graph()
    assert graph["taskspace_tui.runner"] == set() and graph["taskspace_tui.messages"] == set()
    runner = ast.parse((PACKAGE / "runner.py").read_text())
    mods = {n.module for n in ast.walk(runner) if isinstance(n, ast.ImportFrom)}
    mods |= {a.name for n in ast.walk(runner) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m.split(".")[0] == "textual" for m in mods if m)
