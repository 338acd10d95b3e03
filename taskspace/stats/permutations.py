"""The relabellings a permutation test compares an observed statistic with — exact when there are few.

A test of a task space against a grouping (Mantel vs the hypothesis space, within − between) depends on the
labels only through the partition of tasks into groups, so its distinct relabellings are the partitions with
the same block sizes: T! / (Π n_g! · Π_k m_k!) of them (m_k: the number of groups of size k) — 15 for 6 tasks in
3 pairs, however many random permutations are drawn. When there are at most `EXACT_LIMIT`, every one is
enumerated and p = #(at least as extreme) / N exactly, which can be as small as 1/N and no smaller; otherwise
random permutations give (b + 1)/(m + 1). Comparing two spaces permutes all T labels: T! relabellings.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

EXACT_LIMIT = 50_000


@dataclass(frozen=True)
class Relabellings:
    """Row 0 is the observed labelling; the others are what it is compared with."""

    labels: np.ndarray  # (N, T): a permutation of 0..T-1 (spaces) or group codes (groupings) per row
    exact: bool  # every distinct relabelling, once each (else random draws)

    @property
    def count(self) -> int:
        """Distinct relabellings (exact, the observed one included) or random draws (the observed one not)."""
        return len(self.labels) if self.exact else len(self.labels) - 1

    def p_value(self, hits: int) -> float:
        """hits: relabellings (rows 1…) at least as extreme as the observed one."""
        return (hits + 1) / (self.count + (0 if self.exact else 1))

    @property
    def min_p(self) -> float:
        """The smallest p-value these relabellings can give."""
        return 1 / (self.count + (0 if self.exact else 1))

    @property
    def method(self) -> str:
        return "exact" if self.exact else "random"


def count_partitions(groups: Sequence) -> int:
    """Distinct partitions of the tasks with the grouping's block sizes."""
    sizes = Counter(groups).values()
    n = math.factorial(len(groups))
    for s in sizes:
        n //= math.factorial(s)
    for m in Counter(sizes).values():
        n //= math.factorial(m)
    return n


def _partitions(items: list[int], sizes: list[int]) -> Iterator[list[list[int]]]:
    """Every partition of `items` into blocks of the given sizes (a multiset), each once: the block holding the
    first remaining item takes each distinct remaining size in turn."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for size in sorted(set(sizes)):
        left = list(sizes)
        left.remove(size)
        for others in itertools.combinations(rest, size - 1):
            remaining = [x for x in rest if x not in others]
            for tail in _partitions(remaining, left):
                yield [[first, *others], *tail]


def group_relabellings(groups: Sequence, permutations: int, seed: int, limit: int = EXACT_LIMIT) -> Relabellings:
    """Group codes (N, T) of the observed grouping and its relabellings: all distinct partitions when there are
    at most `limit`, else `permutations` random permutations of the labels."""
    codes = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    t = len(codes)
    if count_partitions(codes.tolist()) <= limit:
        sizes = list(Counter(codes.tolist()).values())
        observed = _canonical(codes)
        rows = [observed]
        for blocks in _partitions(list(range(t)), sizes):
            row = np.empty(t, dtype=np.int64)
            for b, block in enumerate(blocks):
                row[block] = b
            if not np.array_equal(_canonical(row), observed):
                rows.append(row)
        return Relabellings(np.stack(rows), exact=True)
    perms = random_permutations(t, permutations, seed)
    return Relabellings(np.concatenate([codes[None], codes[perms]]), exact=False)


def space_relabellings(t: int, permutations: int, seed: int, limit: int = EXACT_LIMIT) -> Relabellings:
    """Permutations (N, T) of T task labels: all T! when at most `limit`, else random ones; row 0 the identity."""
    if math.factorial(t) <= limit:
        return Relabellings(np.array(list(itertools.permutations(range(t))), dtype=np.int64), exact=True)
    return Relabellings(np.concatenate([np.arange(t)[None], random_permutations(t, permutations, seed)]), exact=False)


def random_permutations(t: int, n: int, seed: int) -> np.ndarray:
    """(n, T) random label permutations, reproducible from the seed."""
    return np.argsort(np.random.default_rng(seed).random((n, t)), axis=1)


def _canonical(codes: np.ndarray) -> np.ndarray:
    """Group codes renumbered by first appearance: equal for two labellings with the same partition."""
    first = {}
    return np.array([first.setdefault(int(c), len(first)) for c in codes], dtype=np.int64)
