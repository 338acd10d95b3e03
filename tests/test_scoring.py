import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from taskspace.blimp import data
from taskspace.cli import main
from taskspace.lm.scoring import encode, length_batches, score_pairs, sentence_logprobs, task_accuracy

SENTENCES = [
    "The dogs bark.",
    "Who should Derek hug after shocking Richard?",
    "Some actress who dislikes these museums has praised herself.",
    "A cat.",
]


def reference_logprob(lm, sentence: str) -> float:
    """Token by token, no batching, no padding: sum_t log P(w_t | <prefix> w_1 … w_{t-1})."""
    ids = [lm.prefix_id] + encode(lm.tokenizer, [sentence])[0]
    total = 0.0
    with torch.no_grad():
        for t in range(1, len(ids)):
            logits = lm.model(input_ids=torch.tensor([ids[:t]])).logits[0, -1].double()
            total += float(torch.log_softmax(logits, -1)[ids[t]])
    return total


def test_logprob_equals_token_by_token_reference(tiny_lm):
    got = sentence_logprobs(tiny_lm, SENTENCES, batch_size=4)
    want = [reference_logprob(tiny_lm, s) for s in SENTENCES]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert all(g < 0 for g in got)


def test_score_alone_equals_score_in_padded_batch(tiny_lm):
    alone = np.array([sentence_logprobs(tiny_lm, [s], batch_size=1)[0] for s in SENTENCES])
    # one batch of very different lengths forces heavy right padding
    batched = sentence_logprobs(tiny_lm, SENTENCES, batch_size=len(SENTENCES))
    np.testing.assert_allclose(batched, alone, atol=1e-4, rtol=0)


def test_length_batches_group_similar_lengths():
    batches = length_batches([5, 1, 9, 2, 8, 3], 2)
    assert [sorted(b.tolist()) for b in batches] == [[1, 3], [0, 5], [2, 4]]


def test_pairs_margins_accuracy_and_ties(tiny_lm, blimp):
    pairs = data.load_blimp(blimp, ["passive_1"])
    pairs = pairs.slice(320, 10)  # pair ids 320..329
    scores = score_pairs(tiny_lm, pairs, batch_size=8)
    good = sentence_logprobs(tiny_lm, pairs["good"].to_pylist())
    bad = sentence_logprobs(tiny_lm, pairs["bad"].to_pylist())
    np.testing.assert_allclose(scores["margin"].to_numpy(), good - bad, atol=1e-4)
    tie = scores["pair_id"].to_pylist().index(324)  # published pair with good == bad
    assert scores["margin"][tie].as_py() == 0.0 and scores["correct"][tie].as_py() is False
    (row,) = task_accuracy(scores)
    assert row["ties"] == 1 and row["n"] == 10
    assert row["accuracy"] == pytest.approx(np.mean(good - bad > 0))
    assert row["mean_margin"] == pytest.approx(np.mean(good - bad), abs=1e-4)


def test_cli_score_writes_parquet(tiny_dir, blimp, tmp_path):
    out = tmp_path / "scores.parquet"
    res = CliRunner().invoke(
        main,
        [
            "score",
            "--model",
            str(tiny_dir),
            "--revision",
            "step300",
            "--blimp",
            str(blimp),
            "--tasks",
            "regular_plural_subject_verb_agreement_1,anaphor_gender_agreement",
            "--n",
            "20",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    t = pq.read_table(out)
    assert t.num_rows == 40 and set(t["task"].to_pylist()) == {
        "regular_plural_subject_verb_agreement_1",
        "anaphor_gender_agreement",
    }
    assert t.schema.metadata[b"prefix"] == b"<|endoftext|>" and t.schema.metadata[b"revision"] == b"step300"
    assert "anaphor_gender_agreement" in res.output and "accuracy" in res.output


def test_compiled_model_scores_the_same(tiny_dir, blimp, tmp_path):
    """`--compile` (torch.compile, dynamic shapes) changes speed, not scores."""
    outs = []
    for flag in ([], ["--compile"]):
        out = tmp_path / f"scores{len(flag)}.parquet"
        args = ["score", "--model", str(tiny_dir), "--revision", "step300", "--blimp", str(blimp)]
        res = CliRunner().invoke(main, [*args, "--tasks", "passive_1,wh_island", "--n", "30", "--out", str(out), *flag])
        assert res.exit_code == 0, res.output
        outs.append(pq.read_table(out))
    assert outs[0]["pair_id"].to_pylist() == outs[1]["pair_id"].to_pylist()
    np.testing.assert_allclose(outs[1]["margin"].to_numpy(), outs[0]["margin"].to_numpy(), atol=1e-4, rtol=0)
