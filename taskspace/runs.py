"""Runs: one model at one revision. Checkpoints are ordered by training step everywhere (`step1000` before
`step16000`, which text order gets wrong); revisions that are not steps keep their listed order, after them."""

from __future__ import annotations

import re
from collections.abc import Sequence

STEP = re.compile(r"^step(\d+)$")
# The same rule in SQL, for index queries: the step number, NULL for other names (sorted last).
STEP_SQL = "TRY_CAST(regexp_extract({col}, '^step([0-9]+)$', 1) AS BIGINT)"


def revision_step(revision: str) -> int | None:
    """The training step of a Pythia-style revision name (`step16000` → 16000), else None."""
    m = STEP.match(str(revision))
    return int(m.group(1)) if m else None


def revision_key(revision: str, listed: int = 0) -> tuple[int, int]:
    """Sort key: steps by number first, then other names by their listed position."""
    step = revision_step(revision)
    return (0, step) if step is not None else (1, listed)


def order_revisions(revisions: Sequence[str]) -> list[str]:
    """Revisions in training order (see module doc)."""
    return [r for _, r in sorted((revision_key(r, i), r) for i, r in enumerate(revisions))]
