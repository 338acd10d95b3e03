"""docs/how-to/own-data.md as written: a folder of made-up minimal pairs (its JSON example as one record) is scored by
the CLI, each refusal the page lists is one line naming file:line, a dotfile is no task, and a grouping file with a
typo is refused with its row and the closest task."""

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskspace.blimp import data
from taskspace.cli import main
from taskspace.errors import TaskspaceError
from taskspace.stats.grouping import check_names, groups_for, load_grouping

PAGE = Path(__file__).resolve().parents[1] / "docs" / "how-to" / "own-data.md"
NOUNS = ["dog", "cat", "bird", "horse", "boy", "girl", "teacher", "farmer", "doctor", "student", "king", "queen"]
VERBS = ["bark", "sleep", "sing", "run", "laugh", "cry", "talk", "wait", "smile", "work", "eat", "walk"]
# task → (linguistics_term, field, pair maker): two phenomena of two tasks each
TASKS = {
    "my_agreement": ("agreement", "morphology", lambda n, v: (f"The {n}s {v}.", f"The {n}s {v}s.")),
    "det_agreement": ("agreement", "morphology", lambda n, v: (f"These {n}s {v}.", f"This {n}s {v}.")),
    "anaphor_number": ("anaphor_agreement", "morphology",
                       lambda n, v: (f"The {n}s saw themselves.", f"The {n}s saw himself.")),
    "anaphor_gender": ("anaphor_agreement", "morphology",
                       lambda n, v: (f"The {n} who {v}s saw herself.", f"The {n} who {v}s saw itself.")),
}  # fmt: skip


def page_example() -> dict:
    """The page's ```json block: one record, as a user would copy it."""
    block = re.search(r"```json\n(.*?)\n```", PAGE.read_text(), re.DOTALL)
    assert block, "own-data.md has no ```json example"
    return json.loads(block.group(1))


def records(task: str) -> list[dict]:
    term, field, make = TASKS[task]
    out = []
    for i, (noun, verb) in enumerate(zip(NOUNS, VERBS, strict=True)):
        good, bad = make(noun, verb)
        out.append({"sentence_good": good, "sentence_bad": bad, "UID": task, "pairID": str(i),
                    "linguistics_term": term, "field": field})  # fmt: skip
    return out


def write(path: Path, recs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


@pytest.fixture
def pairs(tmp_path) -> Path:
    """Four tasks of 12 pairs, the page's example as my_agreement's first, and a dotfile that is not JSON at all."""
    folder = tmp_path / "pairs"
    folder.mkdir()
    example = page_example()
    assert example["UID"] == "my_agreement"
    for task in TASKS:
        recs = records(task)
        if task == example["UID"]:
            recs[0] = example
        write(folder / f"{task}.jsonl", recs)
    (folder / ".x.jsonl").write_text("an editor's backup, not JSON\n")
    return folder


def refusal(folder: Path) -> str:
    """What loading the folder's pairs says, checked to be one line."""
    with pytest.raises(TaskspaceError) as e:
        data.load_blimp(str(folder))
    assert "\n" not in str(e.value)
    return str(e.value)


def test_the_page_example_is_a_valid_record(pairs):
    table = data.read_jsonl(pairs / "my_agreement.jsonl")
    first = table.slice(0, 1).to_pylist()[0]
    assert first == {"task": "my_agreement", "phenomenon": "agreement", "field": "morphology", "pair_id": 0,
                     "good": "The dogs bark.", "bad": "The dogs barks."}  # fmt: skip


def test_a_dotfile_is_not_a_task(pairs):
    assert sorted(data.available_tasks(pairs)) == sorted(TASKS)
    loaded = data.load_blimp(str(pairs))
    assert loaded.num_rows == 4 * 12 and set(loaded.column("task").to_pylist()) == set(TASKS)


def test_score_reads_the_folder(pairs, tiny_dir):
    res = CliRunner().invoke(main, ["score", "--blimp", str(pairs), "--model", str(tiny_dir), "--revision", "step300",
                                    "--n", "8", "--format", "json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert sorted(r["task"] for r in rows) == sorted(TASKS) and all(0 <= r["accuracy"] <= 1 for r in rows)


@pytest.mark.parametrize(
    ("spoil", "line", "said"),
    [
        (lambda r: r[4].update(UID="det_agreement"), 5, "UID 'det_agreement' differs from the file's task"),
        (lambda r: r[7].update(pairID="2"), 8, "duplicate pairID '2' (first on line 3)"),
        (lambda r: r[2].pop("linguistics_term"), 3, "missing field 'linguistics_term'"),
    ],
    ids=["uid-not-the-file", "duplicate-pair-id", "missing-field"],
)
def test_bad_records_are_refused_in_one_line_naming_file_and_line(pairs, spoil, line, said):
    recs = records("anaphor_number")
    spoil(recs)
    path = write(pairs / "anaphor_number.jsonl", recs)
    msg = refusal(pairs)
    assert msg.startswith(f"{path}:{line}: ") and said in msg, msg


def test_the_cli_says_a_refusal_in_one_line(pairs):
    recs = records("anaphor_gender")
    recs[3]["UID"] = "anaphor_number"
    path = write(pairs / "anaphor_gender.jsonl", recs)
    res = CliRunner().invoke(main, ["score", "--blimp", str(pairs), "--model", "unused", "--n", "8"])
    assert res.exit_code == 1 and res.output.strip().count("\n") == 0, res.output
    assert f"{path}:4: UID 'anaphor_number'" in res.output and "rename the file" in res.output


def test_a_grouping_file_is_read_and_a_typo_is_named_with_its_row_and_the_closest_task(pairs, tmp_path):
    tasks = data.select_tasks(str(pairs))
    good = tmp_path / "construction.csv"
    good.write_text("task,group\n" + "".join(f"{t},{TASKS[t][0]}\n" for t in tasks))
    assert groups_for(tasks, load_grouping(good)) == [TASKS[t][0] for t in tasks]
    as_json = tmp_path / "construction.json"
    as_json.write_text(json.dumps({t: TASKS[t][0] for t in tasks}, indent=1))
    check_names(load_grouping(as_json), data.available_tasks(pairs))
    assert groups_for(tasks, load_grouping(as_json)) == [TASKS[t][0] for t in tasks]

    typo = tmp_path / "typo.csv"
    typo.write_text("task,group\nmy_agreement,agreement\ndet_agreemnt,agreement\n"
                    "anaphor_number,anaphor\nanaphor_gender,anaphor\n")  # fmt: skip
    with pytest.raises(TaskspaceError) as e:
        check_names(load_grouping(typo), data.available_tasks(pairs))
    msg = str(e.value)
    assert msg.startswith(f"{typo}:3: unknown task 'det_agreemnt'") and "did you mean 'det_agreement'" in msg, msg
    assert "\n" not in msg
