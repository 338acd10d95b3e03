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

With `--exact-b C/data/probe/gemma3/main/matrices.npz` (B's exact transfer on a task subset: `gemma26`, whose
deltas are B's own), the same table for exact transfer on that subset (A's exact cells restricted to it), each
model's first-order agreement with its exact cells there, and a check that the subset run's deltas are B's (its
parameter-sharing cells equal B's). When A has exact transfer and B only first order, A's exact cells are also set
against B's first order: the comparison to read where B's first order is measured to agree with its exact cells.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from taskspace.config import AnalysisConfig
from taskspace.pipeline import stages as pipeline
from taskspace.stats import analysis as A
from taskspace.stats import spaces
from taskspace.stats.agreement import agreement
from taskspace.stats.subsets import draw_subsets

KINDS = ("transfer_linear", "gradient", "sharing")


def reach(m: np.ndarray, groups: list[str]) -> dict[str, float]:
    """Off-diagonal transfer as a fraction of the mean diagonal (own-task) transfer: all, within, between."""
    g = np.asarray(groups)
    off = ~np.eye(len(m), dtype=bool)
    same = (g[:, None] == g[None, :]) & off
    diag = float(np.mean(np.diag(m)))
    return {k: float(np.mean(m[mask])) / diag for k, mask in (("all", off), ("within", same), ("between", off & ~same))}


def table(a: spaces.TaskSpaces, b: spaces.TaskSpaces, kinds: tuple[str, ...], draws: int, permutations: int) -> list:
    """Print the side-by-side table over the two runs' shared tasks; returns their phenomenon labels."""
    na, nb = a.key, b.key
    tasks = [t for t in a.tasks if t in b.tasks]
    a, b = a.restricted(tasks), b.restricted(tasks)
    groups = spaces.groups_of(tasks, "phenomenon", pipeline.task_meta())
    h = A.hypothesis_space(groups)
    sampled = len(tasks) > 2 * len(set(groups))  # 2 per phenomenon from a set that has more: a real sample
    subsets = draw_subsets(groups, 2, draws, seed=0) if sampled else []
    cfg = AnalysisConfig(permutations=permutations)
    print(f"{na} vs {nb}: {len(tasks)} shared tasks, {len(set(groups))} phenomena\n")
    print(f"| space | r {na} (p) | r {nb} (p) | within − between {na} (p) | {nb} (p) | {na} vs {nb}: r (p) "
          f"| r({nb}) − r({na}) over {draws} 2-per-phenomenon samples: 5–95%, share > 0 |")  # fmt: skip
    print("|---" * 7 + "|")
    for kind in kinds:
        if kind not in a.matrices or kind not in b.matrices:
            print(f"| {kind} | (not in both runs) |")
            continue
        ma, mb = a.matrices[kind], b.matrices[kind]
        tests = [A.hypothesis_tests(m, groups, permutations, 0) for m in (ma, mb)]
        c = spaces.compare(a, b, kind, cfg)
        cells = [f"{mt.r:+.3f} ({mt.p:.3f})" for mt, _ in tests]
        cells += [f"{wb.contrast:+.3g} ({wb.p:.3f})" for _, wb in tests]
        spread = "— (the whole set)"
        if subsets:
            d = np.array([A.spearman_offdiag(mb[np.ix_(s, s)], h[np.ix_(s, s)])
                          - A.spearman_offdiag(ma[np.ix_(s, s)], h[np.ix_(s, s)]) for s in subsets])  # fmt: skip
            spread = f"{np.quantile(d, 0.05):+.3f} … {np.quantile(d, 0.95):+.3f}, {np.mean(d > 0):.0%}"
        print(f"| {kind} | " + " | ".join(cells) + f" | {c.r:+.3f} ({c.p:.3f}) | {spread} |")
    return groups


def print_reach(runs: list[spaces.TaskSpaces], kind: str, groups: list[str]) -> None:
    print(f"\nreach of {kind} (mean off-diagonal cell / mean diagonal cell):")
    for s in runs:
        m = s.matrices[kind]
        r = reach(m, groups)
        print(f"  {s.key}: diagonal mean {np.mean(np.diag(m)):+.3f} nats; all {r['all']:+.3f}, "
              f"within {r['within']:+.3f}, between {r['between']:+.3f}")  # fmt: skip


def exact_subset(
    a: spaces.TaskSpaces, b: spaces.TaskSpaces, exact_b: spaces.TaskSpaces, draws: int, permutations: int
) -> None:
    """Exact transfer on B's subset run, against A's exact cells on the same tasks; first order's agreement there."""
    tasks = [t for t in exact_b.tasks if t in a.tasks and t in b.tasks]
    a, b, eb = (s.restricted(tasks) for s in (a, b, exact_b))
    same = float(np.nanmax(np.abs(eb.matrices["sharing"] - b.matrices["sharing"])))
    print(
        f"\n## exact transfer on {len(tasks)} tasks ({eb.key}: max |sharing − {b.key}'s| {same:.2g}, "
        "0 when its deltas are the same)\n"
    )
    groups = table(a, eb, ("transfer",), draws, permutations)
    print_reach([a, eb], "transfer", groups)
    print("\nfirst order against exact, off the diagonal (stats.agreement):")
    for name, exact, lin in ((a.key, a, a), (b.key, eb, b)):
        g = agreement(exact.matrices["transfer_margin"], lin.matrices["transfer_linear"])
        print(f"  {name}: Pearson {g['pearson']:.2f}, Spearman {g['spearman']:.2f}, row median "
              f"{g['row_pearson_median']:.2f} (worst {g['row_pearson_min']:.2f}), diagonal {g['diagonal_ratio']:.2f}"
              f"×, magnitude {g['magnitude_ratio']:.2f}×, {g['cells']} cells")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path, help="the smaller model's matrices.npz")
    ap.add_argument("b", type=Path, help="the larger model's matrices.npz")
    ap.add_argument("--exact-b", type=Path, help="the larger model's exact transfer on a task subset (matrices.npz)")
    ap.add_argument("--names", default="A,B", help="the two models' names, comma-separated")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--permutations", type=int, default=1000)
    args = ap.parse_args()
    na, nb = args.names.split(",")
    a, b = spaces.TaskSpaces.load(args.a, na), spaces.TaskSpaces.load(args.b, nb)
    groups = table(a, b, KINDS, args.draws, args.permutations)
    if "transfer_linear" in a.matrices and "transfer_linear" in b.matrices:
        shared = [t for t in a.tasks if t in b.tasks]
        print_reach([a.restricted(shared), b.restricted(shared)], "transfer_linear", groups)
    if "transfer" in a.matrices and "transfer" not in b.matrices and "transfer_linear" in b.matrices:
        # B's first order where its agreement with exact is measured high (--exact-b), against A's exact cells
        b_lin = spaces.TaskSpaces(b.tasks, {"transfer": b.matrices["transfer_linear"]}, f"{nb} first order")
        print(f"\n## {na}'s exact transfer against {nb}'s first order\n")
        table(a, b_lin, ("transfer",), args.draws, args.permutations)
    if args.exact_b:
        exact_subset(a, b, spaces.TaskSpaces.load(args.exact_b, f"{nb} exact"), args.draws, args.permutations)


if __name__ == "__main__":
    main()
