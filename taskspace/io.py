"""Atomic writes: every output goes to a temp file in the same folder and is renamed into place, so an
interrupted stage never leaves a half-written file where a finished one is expected."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()


def file_hash(path: str | Path) -> str:
    """sha1 of a file's bytes (streamed): what per-task records keep to tell a corrupt or changed file."""
    import hashlib

    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, then rename tmp over `path`; the temp file is removed on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600; outputs get the user's usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_parquet(table: pa.Table, path: str | Path) -> Path:
    return atomic_write(path, lambda p: pq.write_table(table, p))


def write_json(obj, path: str | Path, sort_keys: bool = True) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def _numpy_writer(save, *args, **kwargs):
    # np.save/np.savez append a suffix to a path, so write through an open file instead
    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            save(fh, *args, **kwargs)

    return write


def write_npy(path: str | Path, arr) -> Path:
    import numpy as np

    return atomic_write(path, _numpy_writer(np.save, arr))


def write_npz(path: str | Path, **arrays) -> Path:
    import numpy as np

    return atomic_write(path, _numpy_writer(np.savez, **arrays))


# ---- stamps: which settings made a per-task output ---------------------------------------------------------


def read_record(path: str | Path) -> dict | None:
    """A per-task JSON record (e.g. ftgd.json), or None when it is missing or unreadable."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def record_stamp(path: str | Path) -> str | None:
    """The settings stamp (`config`) a JSON record was written with; None when there is none."""
    return (read_record(path) or {}).get("config")


def parquet_stamp(path: str | Path) -> str:
    """The settings stamp a Parquet output carries in its metadata; "" when missing, truncated or corrupt (such a
    file is redone, never used)."""
    try:
        return ((pq.read_schema(path).metadata or {}).get(b"config") or b"").decode()
    except (OSError, pa.ArrowException):
        return ""
