"""Atomic writes and checked reads: every output goes to a temp file and is renamed into place, so an interrupted
stage never leaves a half-written file where a finished one is expected; every file taskspace reads back is read
through `reading`, so one it cannot read is named, with the fix, instead of a library's message about bytes."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from taskspace.errors import OutputError, TaskspaceError


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


OUTPUTS = Path("data")  # the pipeline's DVC outputs, under the project (taskspace.runs.DATA)
SPARE = Path(".taskspace") / "tmp"  # temp files of writes into them: outside every output, git- and DVC-ignored


def _temp_dir(folder: Path) -> Path:
    """Where a write into `folder` stages its temp file: `.taskspace/tmp` of the project when `folder` is one of
    its DVC outputs on the same filesystem (a write killed outright then leaves nothing DVC would commit with the
    output), else `folder` itself (the rename must stay on one filesystem; the temp file is removed on failure)."""
    cwd = Path.cwd()
    try:
        inside = folder.resolve().is_relative_to((cwd / OUTPUTS).resolve())
        if inside:
            spare = cwd / SPARE
            spare.mkdir(parents=True, exist_ok=True)
            if spare.stat().st_dev == folder.stat().st_dev:
                return spare
    except OSError:
        pass
    return folder


_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_OS_TEXT = {"no space left": errno.ENOSPC, "file too large": errno.EFBIG, "disk quota": errno.EDQUOT}


def _as_os_error(e: Exception, path: Path) -> OSError | None:
    """The OSError inside another library's write error ("… I/O error: No space left on device (os error 28)"),
    on the file being written, so a full disk reads as one, naming the file; None when it is not one."""
    text = str(e)
    code = _OS_ERROR.search(text)
    number = int(code[1]) if code else next((n for w, n in _OS_TEXT.items() if w in text.lower()), None)
    return OSError(number, os.strerror(number), str(path)) if number else None


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, then rename tmp over `path`; the temp file is removed on failure (and, for the
    pipeline's outputs, lives outside them: see _temp_dir)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=_temp_dir(path.parent))
    os.close(fd)
    try:
        try:
            write(Path(tmp))
        except (OSError, TaskspaceError):
            raise
        except Exception as e:  # a writer's own error (safetensors, …) wrapping the OS's: an OSError on `path`
            raise _as_os_error(e, path) or e from None
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600; outputs get the user's usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_parquet(table: pa.Table, path: str | Path) -> Path:
    """A Parquet file with a CRC per page: a flipped byte is then found when the file is read, not used."""
    return atomic_write(path, lambda p: pq.write_table(table, p, write_page_checksum=True))


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


# ---- reading: a file that cannot be read is named, with the fix --------------------------------------------

RESTORE = "restore it with `dvc checkout --relink {path}` or rerun the stage that writes it (`dvc repro`)"


def _reason(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


@contextlib.contextmanager
def reading(path: str | Path, fix: str = RESTORE) -> Iterator[None]:
    """Around the read of one file: whatever the reader raises (truncated, flipped bytes, not the format, gone)
    becomes one OutputError naming the file and `fix` ("{path}" in it is filled in), never a library's traceback about
    thrift, zip headers or end of stream that names no file."""
    fix = fix.replace("{path}", str(path))
    try:
        yield
    except TaskspaceError:
        raise
    except FileNotFoundError:
        raise OutputError(f"{path} is missing: {fix}") from None
    except Exception as e:  # noqa: BLE001 - pyarrow, numpy, zipfile, safetensors, json: in a read, all mean the same
        raise OutputError(f"{path} is unreadable or corrupt ({_reason(e)}): {fix}") from None


def read_parquet(path: str | Path, fix: str = RESTORE) -> pa.Table:
    """A Parquet output, its page checksums verified (files written by write_parquet carry them)."""
    with reading(path, fix):
        return pq.read_table(path, page_checksum_verification=True)


def read_json(path: str | Path, fix: str = RESTORE):
    """A JSON file (record, summary, metrics, analysis), named with `fix` when truncated or not JSON."""
    with reading(path, fix):
        return json.loads(Path(path).read_text(encoding="utf-8"))


def read_npy(path: str | Path, fix: str = RESTORE):
    """One NumPy array (no pickles)."""
    import numpy as np

    with reading(path, fix):
        return np.load(path, allow_pickle=False)


def read_npz(path: str | Path, fix: str = RESTORE) -> dict:
    """Every array of an .npz file, read now (a lazy NpzFile would fail later, far from the file's name)."""
    import numpy as np

    with reading(path, fix), np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


_VERIFIED: dict[tuple, bool] = {}  # (path, inode, size, mtime) → every page of that version reads back


def parquet_readable(path: str | Path) -> bool:
    """The whole file reads back with its page checksums (remembered per version of the file, so progress polls
    that ask again and again read it once)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        try:
            pq.read_table(path, page_checksum_verification=True)
            _VERIFIED[key] = True
        except (OSError, ValueError, pa.ArrowException):
            _VERIFIED[key] = False
    return _VERIFIED[key]


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
    """The settings stamp a Parquet output carries in its metadata; "" when missing, truncated or corrupt anywhere
    (a flipped byte in a page, not only in the footer): such a file is redone, never used."""
    try:
        stamp = ((pq.read_schema(path).metadata or {}).get(b"config") or b"").decode()
    except (OSError, ValueError, pa.ArrowException):
        return ""
    return stamp if stamp and parquet_readable(path) else ""
