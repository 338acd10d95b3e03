import subprocess
import sys


def test_library_imports_without_textual():
    """taskspace/ is the core: it must import (CLI included) without pulling in the TUI toolkit."""
    code = (
        "import sys, taskspace.cli, taskspace.index, taskspace.pipeline, taskspace.probing, taskspace.analysis; "
        "print('textual' in sys.modules, 'tui' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
