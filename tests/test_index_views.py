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

    extras = {"cmp.png": ("--compare", "tiny@step30"), "stab.pdf": ("--stability",)}
    for name in ("space.png", "space.svg", "cmp.png", "stab.pdf", "report.md", "report.html", "cells.csv"):
        extra = extras.get(name, ())
        assert export("tiny@step60", "--out", str(tmp_path / name), *extra).startswith("0 "), name
    assert (tmp_path / "space.png").read_bytes()[:4] == b"\x89PNG" and b"tuned on" in (
        tmp_path / "space.svg"
    ).read_bytes()
    assert b"evaluated on" in (tmp_path / "space.svg").read_bytes()
    md = (tmp_path / "report.md").read_text()
    assert "# tiny@step60" in md and "| transfer |" in md and "![transfer space](report.png)" in md
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
    assert "--out" in export("tiny@step60", "--out", str(tmp_path / "x.txt")) and not (tmp_path / "x.txt").exists()
