"""The local Hugging Face hub cache, read without a request: which revisions of a model it holds, and the
folder of one of them. Used to name the revisions that exist when one is missing, and to find a hub model's
weight files for their hash (`taskspace.lm.weights`)."""

from __future__ import annotations

from pathlib import Path


def repo_folder(repo_id: str) -> Path:
    """Where the hub cache keeps a model repository ($HF_HUB_CACHE/models--org--name)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))


def cached_revisions(repo_id: str) -> list[str]:
    """The revisions (branch or tag names, e.g. Pythia's `step1000`) the cache holds a snapshot of, sorted."""
    folder = repo_folder(repo_id)
    refs = folder / "refs"
    if not refs.is_dir():
        return []
    out = []
    for ref in sorted(p for p in refs.rglob("*") if p.is_file()):
        commit = ref.read_text().strip()
        if (folder / "snapshots" / commit).is_dir():
            out.append(ref.relative_to(refs).as_posix())
    return out


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The cached snapshot folder of a revision (None: `main`), or None when the cache does not hold it."""
    folder = repo_folder(repo_id)
    rev = revision or "main"
    ref = folder / "refs" / rev
    commit = ref.read_text().strip() if ref.is_file() else rev  # a commit hash is its own snapshot name
    snap = folder / "snapshots" / commit
    return snap if snap.is_dir() else None
