"""The word sets of the lexical control: a task space should beat plain vocabulary overlap between tasks."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa


def sentence_words(sentences: Iterable[str]) -> set[str]:
    """Lower-cased words with `.,?!` stripped: the vocabulary a lexical-overlap control compares."""
    return {w for s in sentences for tok in s.lower().split() if (w := tok.strip(".,?!"))}


def task_words(tables: Iterable[pa.Table]) -> dict[str, set[str]]:
    """Each task's vocabulary over the given pair tables (task, good, bad), e.g. both splits."""
    words: dict[str, set[str]] = {}
    for table in tables:
        for t, g, b in zip(*(table.column(c).to_pylist() for c in ("task", "good", "bad"))):
            words.setdefault(t, set()).update(sentence_words([g, b]))
    return words
