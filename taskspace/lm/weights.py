"""Weight identity: one sha256 per run's weights, so checkpoints that serve the same weights (a published branch
that repeats another, or the final model) are told apart from a model that really stopped changing.

The hash is over the model's weight files as they are on disk: each file streamed in 1 MiB blocks, then the
sha256 of their `sha256sum` listing (`<digest>  <name>` lines, names sorted) — so `sha256sum *.safetensors |
sha256sum` reproduces it. Safetensors files when the folder has any (what transformers loads), else
`pytorch_model*.bin`; a GGUF model is its file. Each file's digest is cached by (path, size, mtime) in
`cache_dir()/weights-sha256.json`, outside the model's folder (a DVC output the hash must not change), so a second
run does not read the bytes again. A model with no files found (built in memory) is hashed from its state_dict:
each tensor's name, dtype, shape and bytes, by name.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from taskspace.lm.hubcache import cached_snapshot
from taskspace.lm.models import BUNDLED, cache_dir

BLOCK = 1 << 20  # bytes read at a time
CACHE_NAME = "weights-sha256.json"


def sha256_file(path: str | Path, block: int = BLOCK) -> str:
    """The sha256 of a file's bytes, read in blocks (memory stays at one block whatever the size)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def weight_files(folder: str | Path) -> list[Path]:
    """A model folder's weight files, sorted: its safetensors shards, else its pytorch_model*.bin; a .gguf path
    is its own one file."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        return []
    for pattern in ("*.safetensors", "pytorch_model*.bin"):
        found = sorted(p for p in folder.glob(pattern) if p.is_file())
        if found:
            return found
    return []


def _cache_path() -> Path:
    return cache_dir() / CACHE_NAME


def _read_cache(path: Path) -> dict:
    try:
        got = json.loads(path.read_text())
        return got if isinstance(got, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, cache: dict) -> None:
    """Best effort (a read-only cache folder only costs a rehash next time); atomic, so readers never see half."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def files_sha256(files: Iterable[str | Path], cache: bool = True) -> str:
    """The sha256 of the files' `sha256sum` listing (`<digest>  <name>\\n`, by name); each file's digest cached by
    (resolved path, size, mtime) unless `cache` is False."""
    files = sorted((Path(f) for f in files), key=lambda p: p.name)
    store_path = _cache_path()
    store = _read_cache(store_path) if cache else {}
    changed = False
    lines = []
    for f in files:
        real = f.resolve()  # a hub cache snapshot's files are links to its blobs
        st = real.stat()
        key, stamp = str(real), [st.st_size, st.st_mtime_ns]
        hit = store.get(key)
        if isinstance(hit, list) and len(hit) == 3 and hit[:2] == stamp:
            digest = hit[2]
        else:
            digest = sha256_file(real)
            store[key] = [*stamp, digest]
            changed = True
        lines.append(f"{digest}  {f.name}\n")
    if cache and changed:
        _write_cache(store_path, store)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def state_dict_sha256(model) -> str:
    """The sha256 of a model's tensors (name, dtype, shape, bytes; by name): for a model with no files."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}\0{str(t.dtype).removeprefix('torch.')}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def weights_location(spec: str, revision: str | None = None) -> Path | None:
    """Where a model's weight files are, found without downloading or converting anything: a local folder (its
    revision sub-folder), a GGUF file, a bundled model's converted folder, or the hub cache's snapshot."""
    if spec in BUNDLED:
        folder = cache_dir() / "models" / BUNDLED[spec]
        return folder if folder.is_dir() else None
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file():
            return path
        sub = path / revision if revision and revision != "main" else path
        return sub if sub.is_dir() else None
    return cached_snapshot(spec, None if revision in (None, "main") else revision)


def location_sha256(spec: str, revision: str | None = None) -> str | None:
    """The weights hash of a model found on this machine, or None when its files are not here."""
    where = weights_location(spec, revision)
    files = weight_files(where) if where else []
    return files_sha256(files) if files else None


def weights_sha256(lm) -> str:
    """A loaded model's weights hash (`taskspace.lm.models.LM`): from its files when they are found, else from its
    tensors."""
    return location_sha256(lm.name, lm.revision) or state_dict_sha256(lm.model)
