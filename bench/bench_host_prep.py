"""Host work per eval pass and the sharing reduction, before and after keeping the prepared eval set, on this machine.

1. Host preparation (encode, pack, collate) of an eval set at the Pythia profile's size (every BLiMP task, --pairs
   per task), on a tiny stand-in model so the forward is cheap and the host work shows: a one-off pass (the old
   path: prepared again inside every pass) against one preparation and a pass on the kept batches.
2. Total eval2 seconds of a small tiny-model run (run_eval2 over --eval2-tasks tuned tasks): the real run_eval2,
   which prepares once, against the same run_eval2 given an eval set prepared again on every pass (the work each
   pass did before).
3. The sharing reduction (Jaccard of FTGD footprints) at 1% of a Pythia size's parameters for --footprints tasks,
   with overlaps like the measured ones (Jaccard ≈ 0.2): the old per-pair lookup against intersection_counts.
The tiny model's forward, on one thread, stands in for a GPU's: cheap, so the host's share shows. Methods run
interleaved in rounds (bench/rounds.py): ratios are medians of per-round ratios with their min–max; each "after" is
checked against its "before" (scores bit for bit, Jaccard exactly).

    .venv/bin/python bench/bench_host_prep.py [--pairs 200] [--eval2-tasks 8] [--shape pythia-410m] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from rounds import interleave

from taskspace.blimp import data
from taskspace.config import FTGDConfig, ProbeConfig
from taskspace.lm import tiny
from taskspace.lm.models import LM, load_model
from taskspace.lm.scoring import PreparedEval, prepare_sentences, score_pairs
from taskspace.method.probing import run_eval1, run_eval2, run_ftgd
from taskspace.method.similarity import jaccard_matrix
from taskspace.runs import Layout


class EveryPass(PreparedEval):
    """The baseline: prepared again on each pass, as every pass was before the preparation was kept."""

    @property
    def sentences(self):
        text = self.pairs.column("good").to_pylist() + self.pairs.column("bad").to_pylist()
        return prepare_sentences(self.lm, text, self.batch_size, self.row_tokens)


def old_jaccard(masks: list[np.ndarray], size: int) -> np.ndarray:
    """The reduction before: one P-sized membership vector per row task, a lookup per pair."""
    t = len(masks)
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


def footprints(size: int, tasks: int, seed: int = 0) -> list[np.ndarray]:
    """1% footprints, sorted int32 like global_indices': 70% from a shared core of 1.5 footprints, 30% anywhere."""
    rng = np.random.default_rng(seed)
    k = size // 100
    core = np.unique(rng.integers(0, size, int(1.5 * k)))
    chosen = np.zeros(size, dtype=bool)
    out = []
    for _ in range(tasks):
        chosen[:] = False
        chosen[core[rng.random(core.size) < 0.7 * k / core.size]] = True
        chosen[rng.integers(0, size, int(0.3 * k))] = True
        out.append(np.flatnonzero(chosen).astype(np.int32))
    return out


def n_params(shape: str) -> int:
    from transformers import GPTNeoXForCausalLM

    from taskspace.lm.shapes import pythia_config

    with torch.device("meta"):
        return sum(p.numel() for p in GPTNeoXForCausalLM(pythia_config(shape)).parameters())


def host_prep(lm: LM, ev: pa.Table, tasks: int, args: argparse.Namespace) -> None:
    """1. One eval pass at the Pythia profile's size: the old one-off path against preparation + kept batches."""
    bs = args.batch_size
    prepared = PreparedEval(lm, ev, bs)
    prepared.sentences  # noqa: B018 (built here, outside the timings)
    print(f"\n1. one eval pass: {tasks} tasks × {args.pairs} pairs = {2 * ev.num_rows:,} sentences, batch {bs}")
    before, prep, after = "pass, prepared inside (before)", "preparation alone", "pass on kept batches (after)"
    methods = {
        before: lambda: score_pairs(lm, ev, bs),
        prep: lambda: PreparedEval(lm, ev, bs).sentences,
        after: lambda: score_pairs(lm, prepared),
    }
    t = interleave(methods, args.rounds)
    same = t.results[before].equals(t.results[after])
    for label in methods:
        print(f"  {label:<34}{t.median(label):>8.2f} s")
    print(f"  host preparation per pass: {t.median(prep):.2f} s before, none after (once per run, not per pass)")
    print(f"  a pass {t.ratio_text(after, before)} faster; scores identical: {same}")


def eval2_run(lm: LM, train: pa.Table, ev: pa.Table, work: Path, args: argparse.Namespace) -> None:
    """2. run_eval2 of a small tuned run, prepared once (as it is) against prepared again on every pass."""
    ftgd, probe = FTGDConfig(sparsity=0.01, steps=2, batch_size=8), ProbeConfig(eval_batch_size=args.batch_size)
    base = Layout(work / "run", work / "run", work / "run")
    eval1 = run_eval1(lm, ev, base, probe)
    run_ftgd(lm, train, base, ftgd, probe)
    runs = iter(range(10**6))

    def eval2(evalset: pa.Table | PreparedEval) -> dict:
        layout = Layout(base.eval, base.ftgd, work / f"probe{next(runs)}")  # nothing on disk yet: every pass runs
        res = run_eval2(lm, evalset, eval1, layout, ftgd, probe)
        shutil.rmtree(layout.probe)
        return res

    tasks = len(set(ev["task"].to_pylist()))
    print(f"\n2. eval2 of a tiny run: {tasks} tuned tasks × {2 * ev.num_rows:,} sentences a pass")
    before, after = "run_eval2, prepared every pass", "run_eval2, prepared once"
    methods = {before: lambda: eval2(EveryPass(lm, ev, args.batch_size)), after: lambda: eval2(ev)}
    t = interleave(methods, args.rounds)
    same = all(np.array_equal(t.results[before][k], t.results[after][k]) for k in ("transfer", "transfer_margin"))
    for label in methods:
        print(f"  {label:<34}{t.median(label):>8.2f} s")
    print(f"  eval2 {t.ratio_text(after, before)} faster; spaces identical: {same}")


def sharing(args: argparse.Namespace) -> None:
    """3. The Jaccard reduction at a realistic footprint size: the old per-pair lookup against the counts."""
    size = n_params(args.shape)
    masks = footprints(size, args.footprints)
    pairs = args.footprints * (args.footprints - 1) // 2
    print(f"\n3. sharing: {args.footprints} footprints of 1% of {args.shape} ({size:,} parameters), {pairs} pairs")
    before, after = "per-pair lookup (before)", "intersection_counts (after)"
    methods = {before: lambda: old_jaccard(masks, size), after: lambda: jaccard_matrix(masks, size)}
    t = interleave(methods, args.rounds, warmup=False)  # numpy only: no first-call costs to leave out
    j = t.results[after]
    for label in methods:
        print(f"  {label:<34}{t.median(label):>8.2f} s  ({t.median(label) / pairs * 1e3:.1f} ms a pair)")
    off, same = j[~np.eye(len(masks), dtype=bool)].mean(), np.array_equal(j, t.results[before])
    print(f"  {t.ratio_text(after, before)} faster; mean Jaccard {off:.3f}; values identical: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=200, help="eval pairs per task (the Pythia profile: 200)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--eval2-tasks", type=int, default=8)
    ap.add_argument("--shape", default="pythia-410m", help="footprints at 1%% of this Pythia size")
    ap.add_argument("--footprints", type=int, default=24, help="tasks in the sharing reduction")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parts", default="1,2,3", help="which of the three measurements to run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: no OpenMP spinning on a busy machine)")
    args = ap.parse_args()
    parts = {int(x) for x in args.parts.split(",")}
    torch.set_num_threads(args.threads)
    print(f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds")
    if parts & {1, 2}:
        work = Path(tempfile.mkdtemp(prefix="bench-host-prep-"))
        src = data.default_source()
        names = data.select_tasks(src)
        pairs = data.load_blimp(src, names)
        tiny.build_tiny(work / "tiny", pairs["good"].to_pylist() + pairs["bad"].to_pylist(), [], steps=0)
        lm = load_model(str(work / "tiny"), "step0", device="cpu")
        print(f"a tiny stand-in model: {lm.n_params / 1e6:.2f}M parameters")
        train, ev = data.split_pairs(pairs, 16, args.pairs, seed=0)
        if 1 in parts:
            host_prep(lm, ev, len(names), args)
        if 2 in parts:
            mine = names[: args.eval2_tasks]
            train, ev = (x.filter(np.isin(x["task"].to_pylist(), mine)) for x in (train, ev))
            eval2_run(lm, train, ev, work, args)
        shutil.rmtree(work)
    if 3 in parts:
        sharing(args)


if __name__ == "__main__":
    main()
