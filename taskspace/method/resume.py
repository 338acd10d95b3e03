"""Finished per-task work that survives DVC: each finished task's files are hard-linked into `.taskspace/resume/`
(outside every DVC output, git-ignored), and restored from there when the stage output lost them. `export` and
`import_bundle` carry the stash to another machine (a preempted node, a new session's box) as one file.

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
import tarfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from taskspace.errors import OutputError
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


# Large and remade bit for bit by FTGD on the same kind of machine (tested): left out of a bundle unless asked for.
# Nothing is trusted blindly either way: a carried eval2 is used only when its stamp names the delta FTGD makes.
REMADE = ("delta.safetensors", "grad.npy")


def export(out: Path, root: Path = ROOT, with_deltas: bool = False) -> tuple[int, int]:
    """Write the stash's files into one .tar.gz (paths relative to the project); (files, bytes) written."""
    files = sorted(
        f for f in root.rglob("*")
        if f.is_file() and ".tmp" not in f.relative_to(root).parts and (with_deltas or f.name not in REMADE)
    )  # fmt: skip
    if not files:
        raise OutputError(f"{root} holds no finished work to export (run a stage first)")

    def write(tmp: Path) -> None:
        with tarfile.open(tmp, "w:gz") as tar:
            for f in files:
                tar.add(f, arcname=f.relative_to(root).as_posix(), recursive=False)

    atomic_write(out, write)
    return len(files), sum(f.stat().st_size for f in files)


def import_bundle(bundle: Path, root: Path = ROOT) -> tuple[int, int]:
    """Put a bundle's files into the stash, where the stages find them (checked by their stamps like any stashed
    task); a file the stash already holds is kept as it is. Returns (added, kept)."""
    added = kept = 0
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            for m in tar.getmembers():
                rel = Path(m.name)
                if not m.isfile() or rel.is_absolute() or ".." in rel.parts or not rel.parts or rel.parts[0] != "data":
                    raise OutputError(f"{bundle}: '{m.name}' is not a file of a stage output; not a taskspace bundle")
                dst = root / rel
                if dst.exists():
                    kept += 1
                    continue
                data = tar.extractfile(m).read()  # each file whole or not at all (then renamed into place)
                atomic_write(dst, lambda p, d=data: p.write_bytes(d))
                added += 1
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        if isinstance(e, FileNotFoundError) and not bundle.exists():
            raise OutputError(f"{bundle}: no such bundle (make one with `taskspace resume export`)") from None
        raise OutputError(f"{bundle}: truncated or not a .tar.gz bundle ({e}); export it again") from None
    return added, kept
