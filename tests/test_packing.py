"""Prefix-tree packing: the tree by hand, and scores/gradients identical to one padded row per sentence."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from taskspace.blimp import data
from taskspace.lm.models import LM
from taskspace.lm.packing import batch_rows, collate_rows, pack_rows
from taskspace.lm.scoring import encode, logprobs_tensor, sentence_logprobs, uses_packing


def test_tree_by_hand():
    # sentences: a b c | a b d | a e | a b c (a duplicate) ; prefix token 9
    seqs = [[1, 2, 3], [1, 2, 4], [1, 5], [1, 2, 3]]
    (row,) = pack_rows(seqs, prefix_id=9)
    # nodes: 9, a, b, c, d, e — six positions instead of 4 + 4 + 3 + 4 = 15
    assert row.tokens == [9, 1, 2, 3, 4, 5]
    assert row.parent == [-1, 0, 1, 2, 2, 1] and row.depth == [0, 1, 2, 3, 3, 2]
    assert dict(row.paths) == {0: [1, 2, 3], 3: [1, 2, 3], 1: [1, 2, 4], 2: [1, 5]}
    b = collate_rows([row], pad_id=0, device="cpu", dtype=torch.float32)
    allowed = (b.mask[0, 0] == 0).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],  # c sees its ancestors, not its sibling d
        [1, 1, 1, 0, 1, 0],
        [1, 1, 0, 0, 0, 1],
    ]
    assert b.position_ids[0].tolist() == [0, 1, 2, 3, 3, 2]
    assert b.keep[0].tolist() == [True, True, True, False, False, False]  # leaves predict nothing
    # node k's token is scored by the logits of its parent, as rows of the kept logits
    assert b.src.tolist() == [0, 1, 2, 2, 1] and b.target.tolist() == [1, 2, 3, 4, 5]


def test_rows_respect_budget_and_batches_count_sentences():
    seqs = [[i, i + 1, i + 2] for i in range(10)]  # nothing shared: 3 nodes each
    rows = pack_rows(seqs, prefix_id=0, row_tokens=7)
    assert [len(r) for r in rows] == [7] * 5 and sorted(s for r in rows for s, _ in r.paths) == list(range(10))
    assert [len(b) for b in batch_rows(rows, 5)] == [2, 2, 1]
    (long,) = pack_rows([list(range(1, 20))], prefix_id=0, row_tokens=7)  # too long for a row: its own row
    assert len(long) == 20


@pytest.fixture(scope="module")
def pairs_text(blimp):
    _, ev = data.split_pairs(data.load_blimp(blimp, ["passive_1", "anaphor_gender_agreement", "wh_island"]), 0, 30, 0)
    extra = ["The dogs bark.", "The dogs bark", "The dogs bark."]  # a prefix of another sentence, a duplicate
    return ev["good"].to_pylist() + ev["bad"].to_pylist() + extra


def unpacked(lm: LM) -> LM:
    return replace(lm, packing=False)


@pytest.mark.parametrize("row_tokens,batch_size", [(16, 7), (128, 64), (4096, 1000)])
def test_packed_scores_equal_unpacked(tiny_lm, pairs_text, row_tokens, batch_size):
    assert uses_packing(tiny_lm)
    want = sentence_logprobs(unpacked(tiny_lm), pairs_text, batch_size=1)
    got = sentence_logprobs(tiny_lm, pairs_text, batch_size=batch_size, row_tokens=row_tokens)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert got[-1] == got[-3]  # identical sentences share every node: exactly equal scores


def test_packed_gradient_equals_unpacked(tiny_lm, pairs_text):
    seqs = encode(tiny_lm.tokenizer, pairs_text[:12])
    grads = []
    for lm in (tiny_lm, unpacked(tiny_lm)):
        lm.model.zero_grad()
        logprobs_tensor(lm, seqs).mul(torch.linspace(-1, 1, len(seqs))).sum().backward()
        grads.append({n: p.grad.clone() for n, p in lm.model.named_parameters()})
    tiny_lm.model.zero_grad()
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-4)


class NoLogitsToKeep(torch.nn.Module):
    """A causal LM whose forward lacks `logits_to_keep` (like an older or custom model class)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


def test_model_without_packing_support_scores_unpacked(tiny_lm, pairs_text):
    plain = replace(tiny_lm, model=NoLogitsToKeep(tiny_lm.model), packing=None)
    got = sentence_logprobs(plain, pairs_text[:20])
    assert plain.packing is False
    np.testing.assert_allclose(got, sentence_logprobs(tiny_lm, pairs_text[:20]), atol=1e-4, rtol=0)
