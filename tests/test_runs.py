"""Checkpoints in training order everywhere: params, analysis (stability, metrics, plots), index and TUI."""

import csv
import json

from synthetic import write_run, write_splits

from taskspace.index import Index, build_index
from taskspace.pipeline import stages as pipeline
from taskspace.pipeline.settings import Settings
from taskspace.runs import expand_runs, order_revisions, revision_step

SCRAMBLED = ["step16000", "step0", "step143000", "step1000"]  # text order: step0, step1000, step143000, step16000
TRAINING = ["step0", "step1000", "step16000", "step143000"]
TASKS = ["anaphor_gender_agreement", "anaphor_number_agreement", "adjunct_island", "wh_island", "causative"]


def test_order_revisions_by_step_then_listed():
    assert order_revisions(SCRAMBLED) == TRAINING
    assert order_revisions(["main", "step20", "final", "step3"]) == ["step3", "step20", "main", "final"]
    assert revision_step("step143000") == 143000 and revision_step("main") is None


def test_runs_stability_metrics_plots_and_index_follow_training_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    write_splits(data, TASKS)
    for i, rev in enumerate(SCRAMBLED):  # written (and so globbed, timestamped) out of order
        write_run(data, "m", rev, TASKS, seed=i)
    p = {
        "models": {"m": {"spec": "m", "revisions": SCRAMBLED}},
        "data": {},
        "ftgd": {},
        "probing": {},
        "analysis": {"permutations": 50},
    }
    p["runs"] = expand_runs(p["models"])
    p["data_files"] = "taskspace/blimp/data.py"  # what data.source (hub, the default) derives
    assert [r["revision"] for r in p["runs"].values()] == TRAINING
    res = pipeline.stage_analyze(Settings.from_dict(p), say=lambda _: None)
    assert res["stability"]["m"]["transfer"]["revisions"] == TRAINING
    assert [c["a"].split("#")[0] for c in res["comparisons"] if c["kind"] == "transfer"] == [
        f"m@{r}" for r in TRAINING[:-1]
    ]
    metrics = json.loads((data / "analyze" / "metrics.json").read_text())
    assert list(metrics) == [f"m@{r}" for r in TRAINING]
    assert (data / "analyze" / "plots" / "images" / "m-stability.png").read_bytes()[:4] == b"\x89PNG"
    with open(data / "analyze" / "plots" / "stability" / "m.csv") as fh:
        plot = list(csv.DictReader(fh))
    assert [(r["revision"], int(r["step"])) for r in plot] == [(r, revision_step(r)) for r in TRAINING]
    db = tmp_path / "index.duckdb"
    build_index(db, data, data / "analyze" / "analysis.json")
    idx = Index(db)
    try:
        assert [r["revision"] for r in idx.runs()] == TRAINING
    finally:
        idx.close()
