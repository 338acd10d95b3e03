"""Finished per-task work that survives DVC: each finished task's files are hard-linked into `.taskspace/resume/`
(outside every DVC output, git-ignored), and restored from there when the stage output lost them.

`dvc repro` keeps a killed stage's per-task files (the outputs persist), but `dvc exp run` resets the workspace's
outputs to the baseline's before it runs, so a killed experiment would retune every task. A hard link costs no
disk and keeps the finished file's bytes whatever DVC does to the path; a restored task is checked (its record's
stamp and file hashes) exactly like one that never left.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from taskspace.io import atomic_write

ROOT = Path(".taskspace") / "resume"


def _stash_path(path: Path, root: Path) -> Path:
    return root / Path(os.path.relpath(path.resolve(), Path.cwd().resolve()))


def _link(src: Path, dst: Path, root: Path) -> None:
    """Make dst hold src's bytes: a hard link (no disk), else a copy, renamed into place. The temporary name lives
    in the stash (`root`), outside every DVC output, and is removed whatever happens: a link left beside dst would
    be committed by DVC with the output. When dst already is src (a restore onto the file it was stashed from),
    nothing is done: POSIX rename of one hard link onto another of the same file is a no-op that keeps both."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if os.path.samefile(src, dst):
            return
    spare = root / ".tmp"
    spare.mkdir(parents=True, exist_ok=True)
    tmp = spare / f"{dst.name}.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:  # another filesystem, or no hard links: a copy, written beside dst and renamed (or removed)
        atomic_write(dst, lambda p: shutil.copy2(src, p))
    finally:
        tmp.unlink(missing_ok=True)


def stash(files: Sequence[Path], root: Path = ROOT) -> None:
    """Keep a task's finished files (call after its record is written)."""
    for f in files:
        _link(f, _stash_path(f, root), root)


def restore(files: Sequence[Path], root: Path = ROOT) -> bool:
    """Put a task's stashed files back where the stage expects them; False when any is not stashed."""
    stashed = [_stash_path(f, root) for f in files]
    if not all(s.exists() for s in stashed):
        return False
    for s, f in zip(stashed, files):
        _link(s, f, root)
    return True


def write_kept(path: Path, write: Callable[[Path], object], root: Path = ROOT) -> None:
    """Write a file into the stash first and link it into place: once it appears at `path` it is kept, even if
    the process is killed the next instant (the record that marks a task finished is written this way)."""
    kept = _stash_path(path, root)
    write(kept)
    _link(kept, path, root)
