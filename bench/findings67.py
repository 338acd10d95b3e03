"""The figures of README "Findings at 67 tasks", from a finished run over all 67 BLiMP tasks (profiles `study67`,
`gemma67`): each space's fit with its p, lexical control and task-sample spread; the same fits on the 26 tasks
of the `study` profile (the earlier study's sample, restricted from this very space); first-order transfer's
agreement with exact at 67 and at those 26 tasks; transfer cells significant on their own pairs.

    cd <the experiment's workspace> && .venv/bin/python bench/findings67.py [--run smollm2@main]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from taskspace.blimp.words import task_words
from taskspace.pipeline import stages as pipeline
from taskspace.pipeline.replicates import splits
from taskspace.pipeline.settings import Settings
from taskspace.report.labels import stat_cell
from taskspace.runs import ANALYSIS_FILE
from taskspace.stats import spaces
from taskspace.stats.agreement import agreement

COLUMNS = ("mantel_r", "mantel_p", "contrast", "contrast_p", "lexical_r", "partial_r", "partial_p")
STUDY = Path(__file__).resolve().parents[1] / "conf" / "profile" / "study.yaml"


def spread(f: dict, stat: str) -> str:
    if not f.get(f"sample_{stat}_n"):
        return "—"
    sig = f.get(f"sample_{stat}_significant")
    tail = f", p<.05 in {sig:.0%}" if sig is not None else ""
    return f"{f[f'sample_{stat}_p05']:+.3f} … {f[f'sample_{stat}_p95']:+.3f}{tail}"


def rounded(d: dict) -> str:
    return json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--run", default=None, help="model@revision (default: the first run)")
    args = ap.parse_args()
    s = Settings.load(args.params)
    run = next((r for r in s.runs if r.label == args.run), s.runs[0]) if args.run else s.runs[0]
    analysis = json.loads(ANALYSIS_FILE.read_text())
    key = next(k for k in analysis["runs"] if k.split("#")[0] == run.label)
    fits = analysis["runs"][key]
    space = spaces.TaskSpaces.load(run.layout.matrices, key)
    print(f"{key}: {len(space.tasks)} tasks\n")
    print("| space | " + " | ".join(COLUMNS) + " | r over 26-task samples (5–95%) | within − between (5–95%) |")
    print("|---" * (len(COLUMNS) + 3) + "|")
    for kind, f in fits.items():
        cells = " | ".join(stat_cell(f.get(c), c) for c in COLUMNS)
        print(f"| {kind} | {cells} | {spread(f, 'mantel_r')} | {spread(f, 'contrast')} |")
    t = fits.get("transfer", {})
    if t.get("cells_tested"):
        print(f"\ntransfer cells with q < 0.05 on their own pairs: {t['cells_q05']} of {t['cells_tested']} "
              f"(p < 0.05 uncorrected: {t['cells_p05']})")  # fmt: skip
    m = space.matrices
    if "transfer_margin" in m and "transfer_linear" in m:
        a = agreement(m["transfer_margin"], m["transfer_linear"])
        print(f"\nfirst order vs exact at {len(space.tasks)} tasks: {rounded(a)}")
    study = [t for t in yaml.safe_load(STUDY.read_text())["data"]["tasks"] if t in space.tasks]
    sub = space.restricted(study)
    if "transfer_margin" in m and "transfer_linear" in m:
        a = agreement(sub.matrices["transfer_margin"], sub.matrices["transfer_linear"])
        print(f"first order vs exact at the study's {len(study)} tasks: {rounded(a)}")
    meta, words = pipeline.task_meta(), task_words(splits())
    cfg = s.analysis
    groups = spaces.groups_of(study, cfg.grouping, meta)
    refit = spaces.fit(sub, groups, words, s.ftgd(run.model).sparsity, cfg)
    print(f"\nthe same run restricted to the study's {len(study)} tasks:")
    for kind, f in refit.items():
        d = f.__dict__
        print(f"| {kind} | " + " | ".join(stat_cell(d.get(c), c) for c in COLUMNS) + " |")
    print(f"\n(sample draws: {cfg.sample_draws} of {cfg.sample_per_group} per group; permutations {cfg.permutations})")


if __name__ == "__main__":
    main()
