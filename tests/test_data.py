import json

import pyarrow as pa
import pytest
from click.testing import CliRunner

from taskspace.blimp import data
from taskspace.blimp.meta import PARADIGMS, paper_phenomenon
from taskspace.cli import main


def test_load_one_task_has_schema_and_normalised_field(blimp):
    t = data.load_blimp(blimp, ["principle_A_case_2"])
    assert t.num_rows == 1000
    assert t.column_names == ["task", "phenomenon", "field", "pair_id", "good", "bad"]
    assert set(t.column("field").to_pylist()) == {"syntax_semantics"}  # file says syntax/semantics
    assert t.column("pair_id").to_pylist()[:3] == [0, 1, 2]


def test_select_by_phenomenon_field_and_name(blimp):
    sva = data.select_tasks(blimp, phenomena=["subject_verb_agreement"])
    assert len(sva) == 6 and all("agreement" in t for t in sva)
    assert len(data.select_tasks(blimp, fields=["semantics"])) == 9
    assert len(data.select_tasks(blimp, fields=["syntax/semantics"])) == 14
    assert data.select_tasks(blimp, tasks=["wh_island", "passive_1"]) == ["wh_island", "passive_1"]
    assert len(data.select_tasks(blimp)) == 67
    # the hub source knows the same 67 paradigms without reading anything
    assert data.available_tasks("hub") == data.available_tasks(blimp)


def test_split_is_seeded_disjoint_and_per_task(blimp):
    pairs = data.load_blimp(blimp, ["wh_island", "passive_1"])
    tr, ev = data.split_pairs(pairs, 500, 200, seed=0)
    assert tr.num_rows == 1000 and ev.num_rows == 400
    for task in ("wh_island", "passive_1"):
        a = {p for t, p in zip(tr["task"].to_pylist(), tr["pair_id"].to_pylist()) if t == task}
        b = {p for t, p in zip(ev["task"].to_pylist(), ev["pair_id"].to_pylist()) if t == task}
        assert len(a) == 500 and len(b) == 200 and not a & b
    tr2, ev2 = data.split_pairs(data.load_blimp(blimp, ["passive_1"]), 500, 200, seed=0)
    assert ev2["pair_id"].to_pylist() == [
        p for t, p in zip(ev["task"].to_pylist(), ev["pair_id"].to_pylist()) if t == "passive_1"
    ]
    _, ev3 = data.split_pairs(pairs, 500, 200, seed=1)
    assert ev3["pair_id"].to_pylist() != ev["pair_id"].to_pylist()


def _write(folder, name, lines):
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.jsonl").write_text("".join(line + "\n" for line in lines))
    return folder


def _rec(pid, **kw):
    r = {
        "sentence_good": "Dogs bark.",
        "sentence_bad": "Dogs barks.",
        "field": "morphology",
        "linguistics_term": "subject_verb_agreement",
        "UID": "toy",
        "pairID": str(pid),
    }
    r.update(kw)
    return json.dumps(r)


@pytest.mark.parametrize(
    "lines, message",
    [
        ([_rec(0), "{not json"], "toy.jsonl:2: malformed JSON"),
        ([_rec(0), json.dumps({"sentence_good": "a."})], "toy.jsonl:2: missing field 'sentence_bad'"),
        ([], "toy.jsonl: empty file"),
        ([_rec(0), _rec(1), _rec(0)], "toy.jsonl:3: duplicate pairID '0' (first on line 1)"),
        ([_rec(0, sentence_good="")], "toy.jsonl:1: field 'sentence_good' must be a non-empty string"),
    ],
)
def test_bad_jsonl_names_file_line_and_field(tmp_path, lines, message):
    folder = _write(tmp_path / "b", "toy", lines)
    with pytest.raises(data.DataError) as e:
        data.load_blimp(folder, ["toy"])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_unknown_task_suggests_close_names(blimp):
    with pytest.raises(data.DataError, match="unknown task 'adjunct_islnd'.*did you mean adjunct_island"):
        data.select_tasks(blimp, tasks=["adjunct_islnd"])
    with pytest.raises(data.DataError, match="unknown phenomenon 'binding_theory'.*binding"):
        data.select_tasks(blimp, phenomena=["binding_theory"])


def test_split_larger_than_task_is_refused(blimp):
    with pytest.raises(data.DataError, match="task 'wh_island' has 1000 pairs but n_train \\+ n_eval = 900 \\+ 200"):
        data.split_pairs(data.load_blimp(blimp, ["wh_island"]), 900, 200)


def test_cli_reports_bad_input_in_one_line(blimp):
    res = CliRunner().invoke(main, ["score", "--blimp", str(blimp), "--tasks", "adjunct_islnd"])
    assert res.exit_code == 1  # a data error: 1 (click's usage errors are 2)
    assert "did you mean adjunct_island" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["score", "--blimp", "/nonexistent/blimp", "--tasks", "x"])
    assert res.exit_code == 1 and "BLiMP folder /nonexistent/blimp does not exist" in res.output


def test_paper_phenomenon_counts_s_selection_under_argument_structure():
    assert paper_phenomenon("s-selection") == "argument_structure"
    assert paper_phenomenon("binding") == "binding"


def test_task_table_from_a_mapping_adds_the_paper_phenomenon():
    t = data.task_table({t: PARADIGMS[t] for t in ("wh_island", "animate_subject_trans")})
    assert t.schema == data.TASK_SCHEMA
    assert [tuple(r.values()) for r in t.to_pylist()] == [
        ("wh_island", "island_effects", "island_effects", "syntax"),
        ("animate_subject_trans", "s-selection", "argument_structure", "syntax"),
    ]
    assert data.task_table({}).num_rows == 0 and data.task_table({}).schema == data.TASK_SCHEMA


def test_task_table_from_pairs_has_one_row_per_task_in_order_of_first_appearance():
    pairs = pa.table({"task": ["b", "a", "b"], "phenomenon": ["s-selection", "binding", "other"],
                      "field": ["syntax", "syntax_semantics", "x"], "pair_id": [0, 0, 1]})  # fmt: skip
    assert [tuple(r.values()) for r in data.task_table(pairs).to_pylist()] == [
        ("b", "s-selection", "argument_structure", "syntax"),
        ("a", "binding", "binding", "syntax_semantics"),
    ]


def test_task_table_of_read_pairs_matches_the_paradigm_metadata(blimp):
    names = ["principle_A_case_2", "animate_subject_passive"]
    read = data.task_table(data.load_blimp(blimp, names))
    assert read.equals(data.task_table({t: PARADIGMS[t] for t in names}))
    assert read.column("field").to_pylist() == ["syntax_semantics", "syntax"]
