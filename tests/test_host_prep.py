"""Host preparation once per run and the cheap sharing reduction give exactly what the code before them gave:
scores bit for bit (packed and unpacked, fp32 and bf16, CPU and the fake CUDA device) and Jaccard values equal."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from fake_cuda import fake_cuda

from taskspace.blimp import data
from taskspace.config import FTGDConfig, ProbeConfig
from taskspace.lm import scoring
from taskspace.lm.models import LM, load_model
from taskspace.lm.packing import batch_rows, collate_rows, pack_rows, packed_logprobs
from taskspace.lm.scoring import (
    PreparedEval,
    collate,
    encode,
    length_batches,
    score_pairs,
    sentence_logprobs,
    sequence_logprobs,
    uses_packing,
)
from taskspace.method import probing
from taskspace.method.ftgd import Delta
from taskspace.method.similarity import intersection_counts, jaccard_matrix
from taskspace.runs import Layout

TASKS = ["regular_plural_subject_verb_agreement_1", "anaphor_gender_agreement", "adjunct_island"]


# ---- the code before this change, verbatim: the references ----------------------------------------------------


def old_sentence_logprobs(lm: LM, sentences, batch_size: int = 128, row_tokens: int = 128) -> np.ndarray:
    seqs = encode(lm.tokenizer, sentences)
    out = np.empty(len(seqs), dtype=np.float64)
    pad = lm.tokenizer.pad_token_id
    with torch.inference_mode():
        if uses_packing(lm):
            for rows in batch_rows(pack_rows(seqs, lm.prefix_id, row_tokens), batch_size):
                batch = collate_rows(rows, pad, lm.device, lm.dtype)
                out[batch.sentences] = packed_logprobs(lm.model, batch).double().cpu().numpy()
            return out
        for idx in length_batches([len(s) for s in seqs], batch_size):
            ids, mask = collate([seqs[i] for i in idx], lm.prefix_id, pad, lm.device)
            out[idx] = sequence_logprobs(lm.model, ids, mask).double().cpu().numpy()
    return out


def old_score_pairs(lm: LM, pairs: pa.Table, batch_size: int = 128) -> pa.Table:
    n = pairs.num_rows
    lp = old_sentence_logprobs(lm, pairs.column("good").to_pylist() + pairs.column("bad").to_pylist(), batch_size)
    good, bad = lp[:n], lp[n:]
    margin = good - bad
    columns = {"task": pairs.column("task"), "pair_id": pairs.column("pair_id"), "logp_good": good, "logp_bad": bad}
    return pa.table({**columns, "margin": margin, "correct": margin > 0}, schema=scoring.SCORE_SCHEMA)


def old_jaccard_matrix(masks, size=None) -> np.ndarray:
    t = len(masks)
    if size is None:
        size = max((int(m.max()) for m in masks if m.size), default=-1) + 1
    out = np.eye(t)
    member = np.zeros(size, dtype=bool)
    for i in range(t):
        member[masks[i]] = True
        for j in range(i + 1, t):
            inter = int(np.count_nonzero(member[masks[j]]))
            union = masks[i].size + masks[j].size - inter
            out[i, j] = out[j, i] = inter / union if union else 0.0
        member[masks[i]] = False
    return out


# ---- scoring: the prepared path against the old one ----------------------------------------------------------


@pytest.fixture(scope="module")
def evalset(blimp) -> pa.Table:
    return data.split_pairs(data.load_blimp(blimp, TASKS), 16, 24, seed=0)[1]


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def dtype_lm(request, tiny_dir) -> LM:
    return load_model(str(tiny_dir), revision="step300", device="cpu", dtype=request.param)


def same_bytes(got: pa.Table, want: pa.Table) -> None:
    assert got.schema == want.schema and got.equals(want)
    for col in ("logp_good", "logp_bad", "margin"):
        assert got[col].to_numpy().tobytes() == want[col].to_numpy().tobytes(), col


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "unpacked"])
def test_prepared_scores_are_the_old_scores_bit_for_bit(dtype_lm, evalset, packed):
    lm = dtype_lm if packed else replace(dtype_lm, packing=False)
    assert uses_packing(lm) == packed
    want = old_score_pairs(lm, evalset, batch_size=16)  # several batches, a short last one
    prepared = PreparedEval(lm, evalset, 16)
    assert all(b.ids.dtype == torch.long for b in prepared.sentences.batches) and len(prepared.sentences.batches) > 3
    for _ in range(2):  # the kept batches give the same bytes on every pass
        same_bytes(score_pairs(lm, prepared), want)
    same_bytes(score_pairs(lm, evalset, 16), want)  # the one-off path too
    np.testing.assert_array_equal(
        prepared.good_tokens, [len(s) for s in encode(lm.tokenizer, evalset["good"].to_pylist())]
    )


def test_prepared_sentences_keep_their_order_and_progress(tiny_lm, evalset):
    text = evalset["bad"].to_pylist()
    prepared = scoring.prepare_sentences(tiny_lm, text, 8)
    seen: list[int] = []
    got = sentence_logprobs(tiny_lm, prepared, progress=seen.append)
    assert got.tobytes() == old_sentence_logprobs(tiny_lm, text, 8).tobytes() and sum(seen) == len(text)


def test_prepared_refuses_another_batch_size_or_model(tiny_lm, evalset):
    prepared = PreparedEval(tiny_lm, evalset, 16)
    with pytest.raises(ValueError, match="batch size 16"):
        score_pairs(tiny_lm, prepared, 32)
    score_pairs(tiny_lm, prepared, 16)
    with pytest.raises(ValueError, match="another model"):
        score_pairs(replace(tiny_lm, packing=False), prepared)


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "unpacked"])
def test_prepared_batches_live_on_the_device(tiny_lm, evalset, packed):
    cpu = tiny_lm if packed else replace(tiny_lm, packing=False)
    want = old_score_pairs(cpu, evalset, 16)
    with fake_cuda():
        lm = replace(cpu, model=copy.deepcopy(cpu.model).to("cuda"), device=torch.device("cuda"), packing=packed)
        prepared = PreparedEval(lm, evalset, 16)
        batch = prepared.sentences.batches[0]
        assert batch.ids.device.type == "cuda" and batch.mask.device.type == "cuda"
        got = [score_pairs(lm, prepared) for _ in range(2)]
    for g in got:
        same_bytes(g, want)


def test_probe_prepares_once_and_eval2_is_the_old_scoring(tiny_lm, blimp, tmp_path, monkeypatch):
    train, ev = data.split_pairs(data.load_blimp(blimp, TASKS), 8, 12, seed=0)
    cfg, pcfg = FTGDConfig(sparsity=0.01, lr=1e-3, steps=2, batch_size=8), ProbeConfig(eval_batch_size=8)
    made: list[int] = []
    real = scoring.prepare_sentences
    monkeypatch.setattr(scoring, "prepare_sentences", lambda *a, **k: made.append(1) or real(*a, **k))
    res = probing.probe(tiny_lm, train, ev, tmp_path, cfg, pcfg)
    assert len(made) == 1  # eval1 and the three eval2 passes share one preparation
    layout = Layout.single(tmp_path)
    same_bytes(pq.read_table(layout.eval1).replace_schema_metadata(None), old_score_pairs(tiny_lm, ev, 8))
    for task in TASKS:
        delta = Delta.load(layout.delta(task))
        delta.apply(tiny_lm.model)
        try:
            want = old_score_pairs(tiny_lm, ev, 8)
        finally:
            delta.remove(tiny_lm.model)
        same_bytes(pq.read_table(layout.eval2(task)).replace_schema_metadata(None), want)
    # resumed with every pass on disk: nothing prepared, the same spaces and token counts
    eval1 = probing.run_eval1(tiny_lm, ev, layout, pcfg)
    again = probing.run_eval2(tiny_lm, ev, eval1, layout, cfg, pcfg)
    assert len(made) == 1 and again["summary"]["per_task"] == res["summary"]["per_task"]
    for kind in ("transfer", "gradient", "sharing"):
        np.testing.assert_array_equal(again[kind], res[kind])
    # an executor's shard prepares once for all its tasks
    shard = Layout(tmp_path, tmp_path, tmp_path / "shard")
    stamp = probing.config_hash(cfg, pcfg)
    probing.run_eval2_tasks(tiny_lm, ev, shard, pcfg, stamp, stamp, TASKS)
    assert len(made) == 2 and all(shard.eval2(t).exists() for t in TASKS)


# ---- parameter sharing: the counts against the old lookup ---------------------------------------------------


def test_jaccard_by_hand():
    masks = [np.array([0, 1, 2, 3]), np.array([2, 3, 4]), np.array([7, 8]), np.array([], dtype=np.int64)]
    inter = intersection_counts(masks, block=4)  # indices spread over three blocks
    np.testing.assert_array_equal(inter, [[4, 2, 0, 0], [2, 3, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]])
    j = jaccard_matrix(masks, size=9)
    want = [[1, 2 / 5, 0, 0], [2 / 5, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    np.testing.assert_array_equal(j, want)
    np.testing.assert_array_equal(j, old_jaccard_matrix(masks, 9))
    with pytest.raises(IndexError):
        jaccard_matrix(masks, size=8)
    assert jaccard_matrix([]).shape == (0, 0)
    np.testing.assert_array_equal(jaccard_matrix([masks[3], masks[3]]), np.eye(2))


@pytest.mark.parametrize("seed", range(4))
def test_jaccard_equals_the_old_lookup_on_random_footprints(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(500, 50_000))
    pool = rng.choice(size, size // 20, replace=False)  # a shared core, as real footprints have
    masks = []
    for t in range(int(rng.integers(2, 25))):
        k = int(rng.integers(0, size // 10))
        m = np.union1d(rng.choice(pool, min(k // 2, pool.size), replace=False), rng.choice(size, k, replace=False))
        masks.append(m.astype(np.int32 if t % 2 else np.int64))
    if seed == 3:
        masks = [rng.permutation(m) for m in masks]  # unsorted input is sorted first
    want = old_jaccard_matrix(masks, size)
    for block in (64, 1000, 1 << 20):
        got = np.zeros_like(want)
        inter = intersection_counts(masks, block=block)
        sizes = np.diag(inter)
        union = sizes[:, None] + sizes[None] - inter
        np.divide(inter, union, out=got, where=union > 0)
        np.fill_diagonal(got, 1.0)
        np.testing.assert_array_equal(got, want)
    got = jaccard_matrix(masks, size)
    assert got.tobytes() == want.tobytes()
