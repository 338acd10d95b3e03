"""Prefix-tree packing: sentences that begin alike share the computation of their common beginning.

A causal LM's hidden state at a position depends only on the tokens up to it, so sentences with a common
beginning — a minimal pair up to the word where it differs, the sentences of one BLiMP template — have identical
states over that beginning. Sentences are therefore laid into rows as a prefix tree: every tree node is one
position, its position id is its depth, and it attends to exactly its ancestors (a custom 4-D attention mask).
A node's logits score its children's tokens, so logits are computed only for nodes with children. Over all of
BLiMP this computes ~1.5× fewer positions than one padded row per sentence, with the same scores (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

ROW_TOKENS = 128  # nodes per row: more sharing vs a quadratic attention mask (see bench/bench_scoring.py)


@dataclass
class Row:
    """One prefix tree: node 0 is the prefix token; `paths` holds each sentence's nodes (root excluded)."""

    tokens: list[int]
    parent: list[int] = field(default_factory=lambda: [-1])
    depth: list[int] = field(default_factory=lambda: [0])
    children: list[dict[int, int]] = field(default_factory=lambda: [{}])
    paths: list[tuple[int, list[int]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)

    def new_nodes(self, seq: Sequence[int]) -> int:
        """How many nodes adding `seq` would create."""
        node = 0
        for k, tok in enumerate(seq):
            nxt = self.children[node].get(tok)
            if nxt is None:
                return len(seq) - k
            node = nxt
        return 0

    def add(self, sentence: int, seq: Sequence[int]) -> None:
        node, path = 0, []
        for tok in seq:
            nxt = self.children[node].get(tok)
            if nxt is None:
                nxt = len(self.tokens)
                self.children[node][tok] = nxt
                self.tokens.append(tok)
                self.parent.append(node)
                self.depth.append(self.depth[node] + 1)
                self.children.append({})
            node = nxt
            path.append(node)
        self.paths.append((sentence, path))


def pack_rows(seqs: Sequence[Sequence[int]], prefix_id: int, row_tokens: int = ROW_TOKENS) -> list[Row]:
    """Sentences in lexicographic token order (so neighbours share beginnings), greedily filled into rows of at
    most `row_tokens` nodes; a sentence longer than that gets a row of its own."""
    rows: list[Row] = []
    cur = Row([prefix_id])
    for i in sorted(range(len(seqs)), key=lambda i: seqs[i]):
        if len(cur) > 1 and len(cur) + cur.new_nodes(seqs[i]) > row_tokens:
            rows.append(cur)
            cur = Row([prefix_id])
        cur.add(i, seqs[i])
    if cur.paths:
        rows.append(cur)
    return rows


def batch_rows(rows: Sequence[Row], sentences_per_batch: int) -> list[list[Row]]:
    """Consecutive rows per forward pass, up to `sentences_per_batch` sentences (at least one row)."""
    batches: list[list[Row]] = []
    cur: list[Row] = []
    n = 0
    for row in rows:
        if cur and n + len(row.paths) > sentences_per_batch:
            batches.append(cur)
            cur, n = [], 0
        cur.append(row)
        n += len(row.paths)
    if cur:
        batches.append(cur)
    return batches


@dataclass
class PackedBatch:
    """Tensors for one forward pass over packed rows, and how node log-probs add up to sentences."""

    ids: torch.Tensor  # (R, W) node tokens, right-padded
    position_ids: torch.Tensor  # (R, W) node depths
    mask: torch.Tensor  # (R, 1, W, W) additive: 0 where a node may attend (its ancestors and itself)
    keep: torch.Tensor  # (R, W) bool: nodes whose logits are needed (those with children)
    src: torch.Tensor  # (N,) for each scored node: the row of the kept logits that predicts it
    target: torch.Tensor  # (N,) its token
    owner: torch.Tensor  # (E,) sentence slot of each (sentence, node) membership
    member: torch.Tensor  # (E,) scored-node index of that membership
    sentences: np.ndarray  # (S,) input index of each sentence slot


def collate_rows(rows: Sequence[Row], pad_id: int, device, dtype: torch.dtype) -> PackedBatch:
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    pos = np.zeros((len(rows), width), dtype=np.int64)
    allowed = np.zeros((len(rows), width, width), dtype=bool)
    allowed[:, np.arange(width), np.arange(width)] = True  # padding attends to itself only: no NaN anywhere
    keep = np.zeros((len(rows), width), dtype=bool)
    for r, row in enumerate(rows):
        n = len(row)
        ids[r, :n] = row.tokens
        pos[r, :n] = row.depth
        anc = allowed[r]
        for v in range(1, n):  # parents precede children, so each row of `anc` is its parent's plus itself
            anc[v, :v] = anc[row.parent[v], :v]
        keep[r, row.parent[1:]] = True
    kept = np.cumsum(keep.reshape(-1)) - 1  # flat position → row of the kept logits
    scored = np.full((len(rows), width), -1, dtype=np.int64)
    src, target, owner, member, sentences = [], [], [], [], []
    for r, row in enumerate(rows):
        n = len(row)
        scored[r, 1:n] = np.arange(len(src), len(src) + n - 1)
        src.extend(kept[r * width + np.asarray(row.parent[1:])].tolist())
        target.extend(row.tokens[1:])
        for sentence, path in row.paths:
            owner.extend([len(sentences)] * len(path))
            member.extend(scored[r, path].tolist())
            sentences.append(sentence)

    def as_t(x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.int64), device=device)

    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(torch.from_numpy(~allowed), torch.finfo(dtype).min)
    return PackedBatch(
        ids=as_t(ids),
        position_ids=as_t(pos),
        mask=mask.unsqueeze(1).to(device),
        keep=torch.from_numpy(keep).to(device),
        src=as_t(src),
        target=as_t(target),
        owner=as_t(owner),
        member=as_t(member),
        sentences=np.asarray(sentences, dtype=np.int64),
    )


def packed_logprobs(model: torch.nn.Module, batch: PackedBatch) -> torch.Tensor:
    """Summed log-prob of each sentence slot of the batch; differentiable (FTGD trains through it)."""
    logits = model(
        input_ids=batch.ids, attention_mask=batch.mask, position_ids=batch.position_ids, logits_to_keep=batch.keep
    ).logits.float()  # (K, V): only the K kept nodes (those with children), flattened over rows
    lse = torch.logsumexp(logits, dim=-1)  # (K,)
    node_lp = logits[batch.src, batch.target] - lse[batch.src]  # (N,): log p of each scored node given its parent
    out = torch.zeros(len(batch.sentences), dtype=node_lp.dtype, device=node_lp.device)  # (S,)
    return out.index_add(0, batch.owner, node_lp[batch.member])  # (S,): each sentence sums the nodes on its path
