"""Scoring throughput: taskspace's length-bucketed batches at several batch sizes vs a naive
one-sentence-at-a-time loop, same model, same pairs, same threads. Prints sentences/s and ratios.

    .venv/bin/python bench/bench_scoring.py --model smollm2 --pairs 100
    .venv/bin/python bench/bench_scoring.py --model data/prepare/models/tiny --revision step300 --pairs 500
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from taskspace import data
from taskspace.models import load_model
from taskspace.scoring import encode, sentence_logprobs

TASKS = ["regular_plural_subject_verb_agreement_1", "anaphor_gender_agreement", "adjunct_island", "wh_island"]


def naive(lm, sentences) -> np.ndarray:
    """One forward per sentence, no batching: what a first script would do."""
    out = []
    with torch.inference_mode():
        for ids in encode(lm.tokenizer, sentences):
            x = torch.tensor([[lm.prefix_id] + ids], device=lm.device)
            lp = lm.model(input_ids=x).logits[0, :-1].float().log_softmax(-1)
            out.append(float(lp.gather(-1, x[0, 1:, None]).sum()))
    return np.array(out)


def minicons_scores(lm, sentences, batch_size: int) -> np.ndarray:
    """minicons' IncrementalLMScorer, summed log-probs, with the same prefix token as BOS."""
    from minicons import scorer

    lm.tokenizer.bos_token = lm.prefix  # minicons prepends bos_token's text; make it our prefix
    s = scorer.IncrementalLMScorer(lm.model, device=str(lm.device), tokenizer=lm.tokenizer)
    out = []
    for i in range(0, len(sentences), batch_size):
        out += s.sequence_score(sentences[i : i + batch_size], reduction=lambda x: x.sum(0).item(), bos_token=True)
    return np.array(out)


def matmul_flops(n: int = 1024, reps: int = 10) -> float:
    """The machine's practical ceiling: fp32 matmul FLOP/s on the same threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--revision", default=None)
    ap.add_argument("--pairs", type=int, default=100, help="pairs per task (4 tasks)")
    ap.add_argument("--batch-sizes", default="1,8,32,64")
    args = ap.parse_args()
    lm = load_model(args.model, revision=args.revision)
    _, ev = data.split_pairs(data.load_blimp(data.default_source(), TASKS), 0, args.pairs, seed=0)
    sentences = ev["good"].to_pylist() + ev["bad"].to_pylist()
    print(f"{lm.name}: {lm.n_params / 1e6:.1f}M params, {len(sentences)} sentences, {torch.get_num_threads()} threads")
    t0 = time.perf_counter()
    ref = naive(lm, sentences)
    base = len(sentences) / (time.perf_counter() - t0)
    print(f"{'method':<22}{'sentences/s':>12}{'× naive':>9}{'max |Δ|':>10}")
    print(f"{'naive loop':<22}{base:>12.1f}{1.0:>9.2f}{0.0:>10.1e}")
    best = 0.0
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        t0 = time.perf_counter()
        got = sentence_logprobs(lm, sentences, batch_size=bs)
        rate = len(sentences) / (time.perf_counter() - t0)
        best = max(best, rate)
        print(f"{f'taskspace batch {bs}':<22}{rate:>12.1f}{rate / base:>9.2f}{np.abs(got - ref).max():>10.1e}")
    try:
        t0 = time.perf_counter()
        mc = minicons_scores(lm, sentences, 32)
        rate = len(sentences) / (time.perf_counter() - t0)
        print(f"{'minicons batch 32':<22}{rate:>12.1f}{rate / base:>9.2f}{np.abs(mc - ref).max():>10.1e}")
        print(f"taskspace best / minicons: {best / rate:.2f}×")
    except ImportError:
        print("minicons not installed (pip install minicons): comparison skipped")
    tokens = sum(len(s) + 1 for s in encode(lm.tokenizer, sentences))
    achieved = 2 * lm.n_params * tokens * best / len(sentences)  # forward ≈ 2·N FLOPs per token
    ceiling = matmul_flops()
    print(
        f"achieved {achieved / 1e9:.1f} GFLOP/s = {achieved / ceiling:.0%} of a {ceiling / 1e9:.1f} GFLOP/s "
        "fp32 matmul on the same threads"
    )


if __name__ == "__main__":
    main()
