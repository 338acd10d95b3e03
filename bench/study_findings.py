"""The figures of README "Findings", from a finished run with replicates and a control (the `study` profile):
each space's fit to the hypothesis space with its p-value, lexical control and reliability; the noise floor; low
impact. The run's own metric comes from analysis.json and probe.json as the pipeline wrote them; the other
transfer metric (accuracy when the run measured margin, or the reverse) is recomputed here from the kept eval1 and
eval2 scores, replicates and control alike, and fitted the same way.

    cd <the experiment's workspace> && .venv/bin/python bench/study_findings.py [--run smollm2@main]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow.parquet as pq

from taskspace.blimp.words import task_words
from taskspace.method.probing import accuracy_and_margin
from taskspace.method.similarity import transfer_matrix
from taskspace.pipeline import stages as pipeline
from taskspace.pipeline.replicates import Replicate, replicates, splits
from taskspace.pipeline.settings import Settings
from taskspace.report.labels import stat_cell
from taskspace.runs import ANALYSIS_FILE
from taskspace.stats import analysis as A
from taskspace.stats.reliability import noise_floor, spearman_brown, split_half
from taskspace.stats.spaces import TaskSpaces

COLUMNS = ("mantel_r", "mantel_p", "p_floor", "contrast", "contrast_p", "lexical_r", "partial_r", "partial_p")


def unit_transfer(rep: Replicate, layout, tasks: list[str]) -> dict[str, np.ndarray]:
    """One unit's transfer space in accuracy and in margin (T, T): eval2 after each task's tuning minus eval1,
    from the kept scores, each file read once."""
    before = accuracy_and_margin(pq.read_table(rep.layout.eval1), tasks)
    after = [accuracy_and_margin(pq.read_table(layout.eval2(t)), tasks) for t in tasks]
    return {metric: transfer_matrix(before[k], np.stack([a[k] for a in after]))
            for k, metric in enumerate(("accuracy", "margin"))}  # fmt: skip


def fit_row(kind: str, stats: dict, rel: dict | None) -> str:
    sb = "—"
    if rel and rel.get("spearman_brown") is not None:
        sb = f"{rel['spearman_brown']:.2f} ({rel['split_half']:.2f})"
    return f"| {kind} | " + " | ".join(stat_cell(stats.get(k), k) for k in COLUMNS) + f" | {sb} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--run", default=None, help="model@revision (default: the first run)")
    args = ap.parse_args()
    s = Settings.load(args.params)
    runs = s.runs
    run = next((r for r in runs if r.label == args.run), None) if args.run else runs[0]
    if run is None:
        raise SystemExit(f"--run {args.run}: not in {args.params} (runs: {', '.join(r.label for r in runs)})")
    pcfg, cfg = s.probe, s.analysis
    analysis = json.loads(ANALYSIS_FILE.read_text())
    key = next(k for k in analysis["runs"] if k.split("#")[0] == run.label)
    fits = analysis["runs"][key]
    probe = json.loads(run.layout.summary.read_text())
    quality = probe.get("replicates") or {}
    tasks = TaskSpaces.load(run.layout.matrices).tasks
    groups = [pipeline.task_meta()[t]["phenomenon"] for t in tasks]
    words = task_words(splits())
    lexical = A.lexical_overlap([words[t] for t in tasks])

    print(f"# {run.label}: {len(tasks)} tasks in {len(set(groups))} phenomena, "
          f"{quality.get('replicates', 1)} replicate(s), control {pcfg.control}, metric {pcfg.metric}\n")  # fmt: skip
    print("| space | Mantel r | p | p floor | within − between | p | r, lexical overlap | r, lexical out | p | "
          "reliability S–B (split-half) |")  # fmt: skip
    print("|---" * 10 + "|")
    for kind, stats in fits.items():
        print(fit_row(f"{kind} ({pcfg.metric})" if kind.startswith("transfer") else kind, stats,
                      (quality.get("reliability") or {}).get(kind)))  # fmt: skip

    other = "accuracy" if pcfg.metric == "margin" else "margin"
    reps = replicates(s, run)
    units = [[unit_transfer(rep, lay, tasks) for lay, _ in rep.units(pcfg.control)] for rep in reps]
    real = {m: np.stack([u[0][m] for u in units]) for m in ("accuracy", "margin")}  # (R, T, T) per metric
    ctrl = {m: np.stack([u[1][m] for u in units]) for m in ("accuracy", "margin")} if pcfg.control else {}
    mean = real[other].mean(0)
    rel = split_half(real[other]) if len(reps) > 1 else None
    rel_row = {"split_half": rel, "spearman_brown": spearman_brown(rel)} if rel is not None else None
    fit = A.summarize(mean, groups, lexical, cfg.permutations, cfg.seed, cfg.symmetric)
    print(fit_row(f"transfer ({other})", fit, rel_row))
    noise = {}
    if pcfg.control:
        fit_mc = A.summarize(mean - ctrl[other].mean(0), groups, lexical, cfg.permutations, cfg.seed, cfg.symmetric)
        print(fit_row(f"transfer_minus_control ({other})", fit_mc, None))
        noise = noise_floor(mean, ctrl[other])

    print("\n## Noise floor (95th percentile of |control transfer| off the diagonal)\n")
    for metric, nf in ((pcfg.metric, quality.get("noise") or {}), (other, noise)):
        if nf.get("noise_floor") is not None:
            print(f"- {metric}: floor {nf['noise_floor']:.4g}; {nf['cells_above_noise']} of {nf['cells']} "
                  f"off-diagonal cells above ({nf['cells_above_noise'] / nf['cells']:.0%})")  # fmt: skip
    if pcfg.control and len(reps) > 1:
        eye = np.eye(len(tasks), dtype=bool)
        for metric in (pcfg.metric, other):
            print(f"- {metric}: mean |transfer| off the diagonal {np.abs(real[metric].mean(0)[~eye]).mean():.4g}, "
                  f"mean |control| {np.abs(ctrl[metric][:, ~eye]).mean():.4g}; the control's own split-half "
                  f"reliability {split_half(ctrl[metric]):+.2f} (near 0: noise, not a systematic effect)")  # fmt: skip
    impact = probe.get("impact") or {}
    diag = np.diag(mean)
    print("\n## Low impact\n")
    print(f"- own-task gain ({pcfg.metric}): {impact.get('self_transfer', float('nan')):+.3f}; "
          f"({other}): {np.nanmean(diag):+.3f}, positive on {int((diag > 0).sum())} of {len(diag)} tasks")  # fmt: skip
    rise, top = impact.get("lm_loss_rise", float("nan")), impact.get("lm_loss_rise_max", float("nan"))
    print(f"- LM-loss rise on the other tasks' grammatical sentences: mean {rise:+.3f}, max {top:+.3f} nats/token")
    per = probe.get("per_task") or {}
    worst = sorted(per.items(), key=lambda kv: kv[1]["lm_loss_before"] - kv[1]["lm_loss_after"])[:3]
    for task, info in worst:
        print(f"  - {task}: {info['lm_loss_before']:.2f} → {info['lm_loss_after']:.2f} (replicate 0)")


if __name__ == "__main__":
    main()
