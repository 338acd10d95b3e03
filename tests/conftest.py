"""Shared fixtures: the real BLiMP folder and a tiny GPT-NeoX with a checkpoint series, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from taskspace import data  # noqa: E402

TINY_TASKS = [
    "regular_plural_subject_verb_agreement_1",
    "distractor_agreement_relational_noun",
    "determiner_noun_agreement_1",
    "anaphor_gender_agreement",
    "adjunct_island",
    "wh_vs_that_no_gap",
]


@pytest.fixture(scope="session")
def blimp() -> Path:
    path = Path(data.default_source())
    assert path.is_dir(), f"tests need the shared BLiMP folder at {path} (or set TASKSPACE_BLIMP)"
    return path


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, blimp) -> Path:
    """Tiny model trained 300 steps on TINY_TASKS' grammatical train sentences; revisions step0…step300."""
    from taskspace import tiny

    out = tmp_path_factory.mktemp("models") / "tiny"
    vocab = data.load_blimp(blimp, data.select_tasks(blimp))
    train, _ = data.split_pairs(data.load_blimp(blimp, TINY_TASKS), 500, 200, 0)
    v, s = tiny.sentences_for_tiny(vocab, train)
    tiny.build_tiny(out, v, s, steps=300, save_every=100, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_lm(tiny_dir):
    from taskspace.models import load_model

    return load_model(str(tiny_dir), revision="step300")
