"""The index's views and pandas access: task names, directions and units on every row; variants never mixed."""

import numpy as np
import pytest
from synthetic import build_synthetic_index

from taskspace.index import Index, load_space

TASKS = ["anaphor_gender_agreement", "anaphor_number_agreement", "adjunct_island", "wh_island"]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build_synthetic_index(tmp_path_factory.mktemp("views"), {"tiny": ["step30", "step60"]}, TASKS)


def test_transfer_view_names_the_tuned_and_the_evaluated_task(db):
    idx = Index(db)
    try:
        run = next(r for r in idx.runs() if r["revision"] == "step60")
        names, m = idx.matrix(run["run_id"], "transfer")
        df = idx.frame("transfer", model="tiny", revision="step60")
        assert len(df) == len(TASKS) ** 2 and set(df["unit"]) == {"accuracy (fraction of pairs)"}
        row = df[(df.tuned_task == "adjunct_island") & (df.eval_task == "wh_island")].iloc[0]
        assert row.value == pytest.approx(m[names.index("adjunct_island"), names.index("wh_island")])
        assert row.tuned_phenomenon == "island_effects" and row.run == "tiny@step60"
        acc = idx.frame("task_accuracy", run_id=run["run_id"], stage="eval1")
        assert set(acc.task) == set(TASKS) and acc.tuned_task.isna().all() and acc.accuracy.between(0, 1).all()
        with pytest.raises(ValueError, match="transfer has no column 'tuned'"):
            idx.frame("transfer", tuned="x")
    finally:
        idx.close()


def test_load_space_pivots_one_run_and_refuses_to_mix_checkpoints(db):
    space = load_space(db, "tiny", "step30")
    idx = Index(db)
    try:
        run = next(r for r in idx.runs() if r["revision"] == "step30")
        names, m = idx.matrix(run["run_id"], "gradient")
    finally:
        idx.close()
    grad = load_space(db, "tiny", "step30", kind="gradient")
    assert np.allclose(grad.loc[names, names].to_numpy(), m) and space.shape == (4, 4)
    with pytest.raises(ValueError, match=r"2 runs match .*tiny@step30#h+, tiny@step60#h+.*give revision="):
        load_space(db, "tiny")


def test_export_writes_figures_csv_and_reports(db, tmp_path):
    """`taskspace export`: every format from the index, one line for what cannot be done."""
    import csv

    from click.testing import CliRunner

    from taskspace.cli import main

    def export(*args: str) -> str:
        res = CliRunner().invoke(main, ["export", *args, "--db", str(db)])
        return f"{res.exit_code} {res.output}"

    mine = tmp_path / "report.png"  # the user's own file beside the reports: never overwritten or deleted
    mine.write_bytes(b"mine")
    extras = {"cmp.png": ("--compare", "tiny@step30"), "stab.pdf": ("--stability",)}
    for name in ("space.png", "space.svg", "cmp.png", "stab.pdf", "report.md", "report.html", "cells.csv"):
        extra = extras.get(name, ())
        assert export("tiny@step60", "--out", str(tmp_path / name), *extra).startswith("0 "), name
    assert (tmp_path / "space.png").read_bytes()[:4] == b"\x89PNG" and b"tuned on" in (
        tmp_path / "space.svg"
    ).read_bytes()
    assert b"evaluated on" in (tmp_path / "space.svg").read_bytes()
    md = (tmp_path / "report.md").read_text()
    assert "# tiny@step60" in md and "| transfer |" in md and "![transfer space](report.heatmap.png)" in md
    assert mine.read_bytes() == b"mine" and (tmp_path / "report.heatmap.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "report.heatmap.png").unlink()
    assert export("tiny@step60", "--out", str(tmp_path / "report.html")).startswith("0 ")
    assert mine.read_bytes() == b"mine" and not (tmp_path / "report.heatmap.png").exists()  # html inlines it
    assert "r, lexical overlap out" in md and "**noise floor**: not measured" in md  # this run has no control
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()
    idx = Index(db)
    try:
        names, m = idx.matrix(next(r for r in idx.runs() if r["revision"] == "step60")["run_id"], "transfer")
    finally:
        idx.close()
    with open(tmp_path / "cells.csv") as fh:
        cells = {(r["tuned_task"], r["eval_task"]): float(r["value"]) for r in csv.DictReader(fh)}
    assert cells[names[0], names[1]] == pytest.approx(m[0, 1])
    assert "no run matches 'zeta@main'" in export("zeta@main", "--out", str(tmp_path / "x.png"))
    one = build_synthetic_index(tmp_path / "one", {"solo": ["step30"]}, TASKS)
    res = CliRunner().invoke(main, ["export", "solo@step30", "--stability", "--out", str(tmp_path / "s.png"),
                                    "--db", str(one)])  # fmt: skip
    assert res.exit_code != 0 and "--stability needs a checkpoint series" in res.output
    assert not (tmp_path / "s.png").exists()  # no empty axes written
    assert "--out" in export("tiny@step60", "--out", str(tmp_path / "x.txt")) and not (tmp_path / "x.txt").exists()


def test_compare_panels_of_one_checkpoint_under_two_settings_say_which_and_runs_are_found_by_experiment(db, tmp_path):
    from taskspace.cli.export import panel_titles

    a = {"label": "tiny@step300", "experiment": "lr-high", "params_hash": "aaaa1111bbbb"}
    b = {"label": "tiny@step300", "experiment": "", "params_hash": "cccc2222dddd"}
    assert panel_titles(a, b) == ("tiny@step300 (lr-high)", "tiny@step300 (#cccc2222)")
    assert panel_titles(a, {**b, "label": "tiny@step30"}) == ("tiny@step300", "tiny@step30")
    import shutil

    import duckdb

    copy = shutil.copy(db, tmp_path / "named.duckdb")
    con = duckdb.connect(str(copy))
    con.execute("UPDATE runs SET experiment = 'lr-high' WHERE label = 'tiny@step30'")
    con.close()
    idx = Index(copy)
    try:
        assert idx.find_run("tiny@step30#lr-high")["experiment"] == "lr-high"
        with pytest.raises(ValueError, match="no run matches 'tiny@step60#lr-high'"):
            idx.find_run("tiny@step60#lr-high")
    finally:
        idx.close()


def test_rebuilding_from_the_same_outputs_leaves_the_index_byte_for_byte(tmp_path):
    """DVC records the index's md5: a rebuild with nothing new must not change it (nor add a cache object)."""
    import hashlib

    from taskspace.index import build_index

    db = build_synthetic_index(tmp_path, {"tiny": ["step30", "step60"]}, TASKS)
    data, analysis = db.parent.parent, db.parent.parent / "analyze" / "analysis.json"
    before = hashlib.sha1(db.read_bytes()).hexdigest()
    counts = build_index(db, data, analysis)
    assert (counts["added"], counts["replaced"]) == (0, 0)
    assert hashlib.sha1(db.read_bytes()).hexdigest() == before
    analysis.write_text(analysis.read_text().replace('"comparisons"', '"comparisons"', 1) + "\n")  # new bytes
    build_index(db, data, analysis)
    assert hashlib.sha1(db.read_bytes()).hexdigest() != before  # changed inputs are loaded


def test_the_spaces_view_gives_each_kind_the_unit_the_labels_show():
    """The index's `unit` column (SQL) and the figures' and TUI's unit (Python) come from the same data."""
    import json

    import duckdb

    from taskspace.index.schema import SCHEMA, VIEWS
    from taskspace.report.labels import unit
    from taskspace.stats.spaces import KINDS

    con = duckdb.connect()
    con.execute(SCHEMA)
    con.execute(VIEWS)
    con.execute("INSERT INTO tasks VALUES (0, 't', 'p', 'p', 'f')")
    metrics = {0: "margin", 1: "accuracy", 2: None}  # None: a run that did not record its metric
    for run_id, metric in metrics.items():
        probe = json.dumps({"probing": {"metric": metric}} if metric else {})
        con.execute("INSERT INTO runs (run_id, index_key, probe) VALUES (?, ?, ?)", [run_id, f"r{run_id}", probe])
        for kind in (*KINDS, "transfer_ci"):
            con.execute("INSERT INTO similarities VALUES (?, ?, 0, 0, 0.5)", [run_id, kind])
    rows = con.execute("SELECT run_id, kind, unit FROM spaces").fetchall()
    assert len(rows) == 3 * (len(KINDS) + 1)
    for run_id, kind, shown in rows:
        assert shown == unit(kind, metrics[run_id] or "accuracy"), (run_id, kind)
    assert {u for r, k, u in rows if k == "transfer"} == {"mean margin (nats)", "accuracy (fraction of pairs)"}


def test_index_tasks_come_from_the_tasks_table_else_from_blimp(tmp_path):
    """Tasks the prepare stage listed keep its metadata; others get BLiMP's; the paper phenomenon is derived."""
    import pyarrow as pa

    from taskspace.blimp.data import task_table
    from taskspace.index import build_index
    from taskspace.io import write_parquet

    splits = tmp_path / "data" / "prepare" / "splits"
    write_parquet(task_table({"my_task": ("custom", "syntax")}), splits / "tasks.parquet")
    names = ["my_task", "animate_subject_trans", "unknown_task"]
    pairs = pa.table({"task": names, "pair_id": [0, 0, 0], "good": ["a ."] * 3, "bad": ["b ."] * 3})
    write_parquet(pairs, splits / "eval.parquet")
    db = tmp_path / "index.duckdb"
    build_index(db, tmp_path / "data")
    idx = Index(db)
    try:
        assert [tuple(r.values()) for r in idx.tasks()] == [
            (0, "my_task", "custom", "custom", "syntax"),
            (1, "animate_subject_trans", "s-selection", "argument_structure", "syntax"),
            (2, "unknown_task", "", "", ""),
        ]
    finally:
        idx.close()


def test_settings_diff_names_what_distinguishes_two_runs(tmp_path):
    """The index's recorded settings (probe.json's ftgd and probing, device and dtype, analysis settings) are diffed
    per run; when none differs, it says what does: the checkpoint, the model, or a setting only the hash covers."""
    from taskspace.index.settings_diff import diff_runs

    ftgd = {"lr": 1e-4, "steps": 10, "betas": [0.9, 0.999]}
    probe = {"ftgd": ftgd, "probing": {"metric": "accuracy"}, "device": "cuda:0", "dtype": "bfloat16"}
    recorded = {
        ("tiny", "step30"): {"probe": probe},
        ("tiny", "step60"): {"probe": probe | {"ftgd": ftgd | {"lr": 3e-4}, "device": "cuda:1"},
                             "run": {"params_hash": "lr3lr3lr3lr3", "experiment": "lr3"}},
        ("tiny", "step90"): {"probe": probe},
        ("zeta", "main"): {"probe": probe},
    }  # fmt: skip
    db = build_synthetic_index(tmp_path, {"tiny": ["step30", "step60", "step90"], "zeta": ["main"]}, TASKS,
                               recorded=recorded)  # fmt: skip
    idx = Index(db)
    try:
        ids = {r["label"]: r["run_id"] for r in idx.runs()}
        s30 = idx.settings(ids["tiny@step30"])
        assert s30["ftgd.lr"] == 1e-4 and s30["compute.device"] == "cuda" and s30["probing.metric"] == "accuracy"
        assert s30["analysis.permutations"] == 100 and s30["prefix"] == "<|endoftext|>"
        d = idx.settings_diff(ids["tiny@step30"], ids["tiny@step60"])
        assert d.settings == [("ftgd.lr", 1e-4, 3e-4)] and d.identity == ["revision"]  # cuda:0 and cuda:1: one kind
        assert d.summary() == "1 setting differs" and d.experiments == ("", "lr3")  # "": a run of `dvc repro`
        same = idx.settings_diff(ids["tiny@step30"], ids["tiny@step90"])
        assert same.settings == [] and same.summary() == "same settings: only the checkpoint differs"
        other = idx.settings_diff(ids["tiny@step30"], ids["zeta@main"])
        assert other.summary() == "same settings: only the model and checkpoint differ"
    finally:
        idx.close()
    # one model, other settings hashes, nothing recorded differs: a data.* setting, which only the hash covers
    a = {"model": "tiny", "revision": "step30", "params_hash": "a", "settings": {"ftgd.lr": 1e-4}}
    hidden = diff_runs(a, a | {"params_hash": "b"})
    assert hidden.unrecorded and "the index does not record (data.*)" in hidden.summary()
    # a section only one run records (not analysed yet) is unknown there, not a difference
    assert diff_runs(a | {"settings": {"ftgd.lr": 1e-4, "analysis.seed": 0}}, a).settings == []
