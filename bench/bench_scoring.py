"""Scoring throughput on the same BLiMP pairs, same model, same threads, one run (ratios, not absolute times):
a naive one-sentence-at-a-time loop; minicons' IncrementalLMScorer (summed log-probs); taskspace unpacked (one
right-padded row per sentence, length-bucketed: the plain path); taskspace with prefix-tree packing over row
sizes and batch sizes. Methods run interleaved in rounds (bench/rounds.py): ratios are medians of per-round ratios
with their min–max. Also the achieved FLOP/s as a fraction of a torch matmul on the same threads.

    .venv/bin/pip install minicons          # optional: the peer comparison
    .venv/bin/python bench/bench_scoring.py --model smollm2                     # 2,000 pairs (500 × 4 tasks)
    .venv/bin/python bench/bench_scoring.py --model data/prepare/models/tiny --revision step300
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch
from rounds import interleave

from taskspace.blimp import data
from taskspace.lm.models import LM, load_model
from taskspace.lm.packing import pack_rows
from taskspace.lm.scoring import encode, sentence_logprobs, uses_packing

TASKS = ["regular_plural_subject_verb_agreement_1", "anaphor_gender_agreement", "adjunct_island", "wh_island"]


def naive(lm: LM, sentences: list[str]) -> np.ndarray:
    """One forward per sentence, no batching: what a first script would do."""
    out = []
    with torch.inference_mode():
        for ids in encode(lm.tokenizer, sentences):
            x = torch.tensor([[lm.prefix_id] + ids], device=lm.device)
            lp = lm.model(input_ids=x).logits[0, :-1].float().log_softmax(-1)
            out.append(float(lp.gather(-1, x[0, 1:, None]).sum()))
    return np.array(out)


def minicons_scores(lm: LM, sentences: list[str], batch_size: int) -> np.ndarray:
    """minicons' IncrementalLMScorer, summed log-probs, with the same prefix token as BOS."""
    from minicons import scorer

    lm.tokenizer.bos_token = lm.prefix  # minicons prepends bos_token's text; make it our prefix
    s = scorer.IncrementalLMScorer(lm.model, device=str(lm.device), tokenizer=lm.tokenizer)
    out = []
    with torch.inference_mode():
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


def forward_flops(lm: LM, positions: int, logit_positions: int) -> float:
    """2·N FLOPs per position for the transformer body, plus 2·V·H where logits are computed; attention
    scores and softmax are left out, so this under-counts."""
    emb_in = lm.model.get_input_embeddings().weight
    emb_out = lm.model.get_output_embeddings().weight
    body = lm.n_params - emb_in.numel() - (0 if emb_out.data_ptr() == emb_in.data_ptr() else emb_out.numel())
    return 2.0 * body * positions + 2.0 * emb_out.numel() * logit_positions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--revision", default=None)
    ap.add_argument("--pairs", type=int, default=500, help="pairs per task (4 tasks)")
    ap.add_argument("--row-tokens", default="64,128,256", help="packed row sizes tried at batch 64")
    ap.add_argument("--batch-sizes", default="32,128", help="further batch sizes tried with rows of 128")
    ap.add_argument("--minicons-batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    lm = load_model(args.model, revision=args.revision)
    _, ev = data.split_pairs(data.load_blimp(data.default_source(), TASKS), 0, args.pairs, seed=0)
    sentences = ev["good"].to_pylist() + ev["bad"].to_pylist()
    seqs = encode(lm.tokenizer, sentences)
    n = len(sentences)
    print(
        f"{lm.name}: {lm.n_params / 1e6:.1f}M params, {n // 2} pairs = {n} sentences, {torch.get_num_threads()} "
        f"threads, {args.rounds} interleaved rounds"
    )
    assert uses_packing(lm), "this model cannot take prefix-tree packing"
    plain_lm = replace(lm, packing=False)
    naive_label, plain_label = "naive loop, one sentence per forward", "taskspace unpacked, batch 64"
    methods = {naive_label: lambda: naive(lm, sentences)}
    try:
        import minicons  # noqa: F401

        mc_label = f"minicons batch {args.minicons_batch}"
        methods[mc_label] = lambda: minicons_scores(lm, sentences, args.minicons_batch)
    except ImportError:
        mc_label = None
        print("minicons not installed (pip install minicons): peer comparison skipped")
    methods[plain_label] = lambda: sentence_logprobs(plain_lm, sentences, 64)
    packed = {(64, rt) for rt in (int(x) for x in args.row_tokens.split(","))}
    packed |= {(bs, 128) for bs in (int(x) for x in args.batch_sizes.split(",") if x)}
    for bs, rt in sorted(packed, key=lambda k: (k[1], k[0])):
        methods[f"taskspace packed, rows {rt}, batch {bs}"] = lambda bs=bs, rt=rt: sentence_logprobs(
            lm, sentences, bs, None, rt
        )
    sentence_logprobs(lm, sentences[:16], 64)  # warm-up: the packing check and first-call costs
    t = interleave(methods, args.rounds, warmup=False)
    ref = t.results[naive_label]
    print(f"{'method':<40}{'sentences/s':>12}{'× naive (min–max)':>22}{'max |Δ| vs naive':>18}")
    for label in methods:
        diff = float(np.abs(np.asarray(t.results[label]) - ref).max())
        print(f"{label:<40}{n / t.median(label):>12.1f}{t.ratio_text(label, naive_label):>22}{diff:>18.1e}")
    best = min((k for k in methods if k.startswith("taskspace packed")), key=t.median)
    print(f"best: {best}; vs unpacked {t.ratio_text(best, plain_label)}", end="")
    if mc_label:
        diff = np.abs(np.asarray(t.results[best]) - np.asarray(t.results[mc_label])).max()
        print(f"; vs minicons {t.ratio_text(best, mc_label)}; max |taskspace − minicons| = {diff:.1e}", end="")
    print()

    rt = int(best.split("rows ")[1].split(",")[0])
    packed_rows = pack_rows(seqs, lm.prefix_id, rt)
    positions = sum(len(r) for r in packed_rows)
    logit_positions = sum(len(set(r.parent[1:])) for r in packed_rows)
    unpacked_positions = sum(len(s) + 1 for s in seqs)
    achieved = forward_flops(lm, positions, logit_positions) / t.median(best)
    ceiling = matmul_flops()
    print(
        f"positions computed: {positions:,} packed vs {unpacked_positions:,} unpacked "
        f"({unpacked_positions / positions:.2f}× fewer); achieved {achieved / 1e9:.1f} GFLOP/s = "
        f"{achieved / ceiling:.0%} of a {ceiling / 1e9:.1f} GFLOP/s fp32 1024² matmul on the same threads"
    )


if __name__ == "__main__":
    main()
