"""The scale claim at 67 tasks: two models' task spaces over the same tasks, side by side (README "Findings";
docs/concepts/findings.md).

The paper finds that larger models "generalise better to overarching general concepts for linguistic tasks". With
one small and one larger model (here SmolLM2-135M, `study67`, and Gemma-3-270M, `gemma67`: two families, so size is
confounded with tokenizer, data and architecture) that reads: the larger model's spaces fit the phenomenon grouping
better, and its transfer reaches further off the diagonal. For each kind both runs have (transfer in first order,
which both have; gradient similarity; parameter sharing) this prints each model's Mantel r and within − between
with their p (1,000 relabellings of the grouping), how alike the two spaces are (Spearman, Mantel p), the paired
task-sample spread of r(B) − r(A) (the same random subsets of 2 tasks per phenomenon applied to both), and for
transfer its reach: mean off-diagonal, within- and between-phenomenon cells as fractions of the mean diagonal.

    .venv/bin/python bench/scale67.py A/data/probe/smollm2/main/matrices.npz B/data/probe/gemma3/main/matrices.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from taskspace.config import AnalysisConfig
from taskspace.pipeline import stages as pipeline
from taskspace.stats import analysis as A
from taskspace.stats import spaces
from taskspace.stats.subsets import draw_subsets

KINDS = ("transfer_linear", "gradient", "sharing")


def reach(m: np.ndarray, groups: list[str]) -> dict[str, float]:
    """Off-diagonal transfer as a fraction of the mean diagonal (own-task) transfer: all, within, between."""
    g = np.asarray(groups)
    off = ~np.eye(len(m), dtype=bool)
    same = (g[:, None] == g[None, :]) & off
    diag = float(np.mean(np.diag(m)))
    return {k: float(np.mean(m[mask])) / diag for k, mask in (("all", off), ("within", same), ("between", off & ~same))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path, help="the smaller model's matrices.npz")
    ap.add_argument("b", type=Path, help="the larger model's matrices.npz")
    ap.add_argument("--names", default="A,B", help="the two models' names, comma-separated")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--permutations", type=int, default=1000)
    args = ap.parse_args()
    na, nb = args.names.split(",")
    a, b = spaces.TaskSpaces.load(args.a, na), spaces.TaskSpaces.load(args.b, nb)
    tasks = [t for t in a.tasks if t in b.tasks]
    a, b = a.restricted(tasks), b.restricted(tasks)
    groups = spaces.groups_of(tasks, "phenomenon", pipeline.task_meta())
    h = A.hypothesis_space(groups)
    subsets = draw_subsets(groups, 2, args.draws, seed=0)
    cfg = AnalysisConfig(permutations=args.permutations)
    print(f"{na} vs {nb}: {len(tasks)} shared tasks, {len(set(groups))} phenomena\n")
    print(f"| space | r {na} (p) | r {nb} (p) | within − between {na} (p) | {nb} (p) | {na} vs {nb}: r (p) "
          f"| r({nb}) − r({na}) over {args.draws} 26-task samples: 5–95%, share > 0 |")  # fmt: skip
    print("|---" * 7 + "|")
    for kind in KINDS:
        if kind not in a.matrices or kind not in b.matrices:
            print(f"| {kind} | (not in both runs) |")
            continue
        ma, mb = a.matrices[kind], b.matrices[kind]
        tests = [A.hypothesis_tests(m, groups, args.permutations, 0) for m in (ma, mb)]
        c = spaces.compare(a, b, kind, cfg)
        d = np.array([A.spearman_offdiag(mb[np.ix_(s, s)], h[np.ix_(s, s)])
                      - A.spearman_offdiag(ma[np.ix_(s, s)], h[np.ix_(s, s)]) for s in subsets])  # fmt: skip
        cells = [f"{mt.r:+.3f} ({mt.p:.3f})" for mt, _ in tests]
        cells += [f"{wb.contrast:+.3g} ({wb.p:.3f})" for _, wb in tests]
        spread = f"{np.quantile(d, 0.05):+.3f} … {np.quantile(d, 0.95):+.3f}, {np.mean(d > 0):.0%}"
        print(f"| {kind} | " + " | ".join(cells) + f" | {c.r:+.3f} ({c.p:.3f}) | {spread} |")
    if "transfer_linear" in a.matrices and "transfer_linear" in b.matrices:
        print("\nreach of first-order transfer (mean off-diagonal cell / mean diagonal cell):")
        for name, s in ((na, a), (nb, b)):
            m = s.matrices["transfer_linear"]
            r = reach(m, groups)
            print(f"  {name}: diagonal mean {np.mean(np.diag(m)):+.3f} nats; all {r['all']:+.3f}, "
                  f"within {r['within']:+.3f}, between {r['between']:+.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
