"""Nothing silently wrong, round 3 (issue #25): corrupt files are named, a held index is refused, full disks and
truncated files end in one line, and no temp or link file is left in an output. Real files, real DuckDB, real
processes: nothing here is mocked."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from synthetic import write_run, write_splits

from taskspace import io
from taskspace.cli import main
from taskspace.errors import OutputError
from taskspace.index import build_index
from taskspace.io import parquet_stamp, write_json, write_npz, write_parquet
from taskspace.method import resume

TASKS = ["anaphor_gender_agreement", "adjunct_island", "wh_island"]
TASKSPACE = [sys.executable, "-c", "from taskspace.cli import main; main()"]


def cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return res.exit_code, res.output


def one_line(code: int, text: str) -> str:
    """The CLI's answer to a user error: exit code 1 (click's usage errors are 2) and one `error:` line, no
    traceback."""
    assert code == 1, text
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    return " ".join(text.split())  # rich wraps long lines: compare the words


def one_line_about(path: Path, text: str, *command: str) -> tuple[Path, str]:
    """Write a broken `text` to `path`, give it to `taskspace *command PATH`: the path and the one-line answer."""
    path.write_text(text)
    return path, one_line(*cli(*command, str(path)))


def flip(path: Path, at: float = 0.5) -> None:
    """Flip one byte in the middle of a file (a bad disk, a bad copy): same size, same name."""
    b = bytearray(path.read_bytes())
    b[int(len(b) * at)] ^= 0xFF
    path.write_bytes(bytes(b))


def limited(limit: int):
    """A subprocess's preexec: files may not grow beyond `limit` bytes (EFBIG, SIGXFSZ ignored) — a full disk."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Made-up stage outputs of one run (splits, eval1, eval2, spaces, run.json) under tmp_path/data."""
    write_splits(tmp_path / "data", TASKS)
    write_run(tmp_path / "data", "tiny", "step30", TASKS)
    return tmp_path


# ---- 1. no stash, temp or link file in an output -----------------------------------------------------------


def test_restoring_onto_the_stashed_file_itself_leaves_no_link_file(tmp_path, monkeypatch):
    """A stashed file restored onto the same inode (DVC left the workspace file in place, the stamp changed): POSIX
    rename of one hard link onto another is a no-op, which used to leave `.name.link` inside the output."""
    monkeypatch.chdir(tmp_path)
    out = Path("data/ftgd/tiny/step30/tasks/a")
    out.mkdir(parents=True)
    files = [out / "delta.safetensors", out / "grad.npy"]
    for f in files:
        f.write_bytes(b"finished")
    resume.stash(files)
    assert resume.restore(files)  # the same files: nothing to do, nothing left behind
    resume.write_kept(out / "ftgd.json", lambda p: p.write_text("{}"))
    resume.write_kept(out / "ftgd.json", lambda p: p.write_text('{"again": 1}'))
    assert sorted(p.name for p in out.iterdir()) == ["delta.safetensors", "ftgd.json", "grad.npy"]
    assert json.loads((out / "ftgd.json").read_text()) == {"again": 1}
    assert not list(Path(".taskspace/resume/.tmp").iterdir())


def test_a_write_killed_outright_leaves_nothing_in_the_output(tmp_path):
    """SIGKILL in the middle of an atomic write into data/: the temp file is outside the output folder, so DVC
    never commits it with the output."""
    code = (
        "import os, signal; from taskspace.io import atomic_write\n"
        "def write(p):\n    p.write_bytes(b'half'); os.kill(os.getpid(), signal.SIGKILL)\n"
        "atomic_write('data/probe/tiny/step30/eval1.parquet', write)"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path)
    assert res.returncode == -signal.SIGKILL
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file()]


# ---- 2. a corrupt file is named, never used -------------------------------------------------------------------


def test_flipped_bytes_in_a_parquet_output_are_found_and_named(project):
    eval1 = project / "data" / "eval" / "tiny" / "step30" / "eval1.parquet"
    table = io.read_parquet(eval1)
    write_parquet(table.replace_schema_metadata({"config": "abc"}), eval1)
    assert parquet_stamp(eval1) == "abc"
    flip(eval1)
    assert parquet_stamp(eval1) == ""  # stale: redone by the stage, never read as scores
    with pytest.raises(OutputError, match=rf"{eval1} is unreadable or corrupt .*dvc checkout --relink {eval1}"):
        io.read_parquet(eval1)


def test_a_corrupt_eval1_under_index_is_named_with_the_fix(project):
    eval1 = project / "data" / "eval" / "tiny" / "step30" / "eval1.parquet"
    flip(eval1, 0.3)
    text = one_line(*cli("index", "--db", str(project / "idx.duckdb"), "--data-dir", str(project / "data")))
    assert f"{eval1} is unreadable or corrupt" in text and "dvc repro -f eval@tiny-step30" in text


def test_truncated_json_and_npz_are_named(tmp_path):
    write_json({"a": 1}, tmp_path / "r.json")
    (tmp_path / "r.json").write_text('{"a": ')
    with pytest.raises(OutputError, match=r"r.json is unreadable or corrupt .*dvc checkout --relink"):
        io.read_json(tmp_path / "r.json")
    write_npz(tmp_path / "m.npz", x=[1.0, 2.0])
    (tmp_path / "m.npz").write_bytes((tmp_path / "m.npz").read_bytes()[:60])
    with pytest.raises(OutputError, match=r"m.npz is unreadable or corrupt"):
        io.read_npz(tmp_path / "m.npz")


def test_a_corrupt_delta_file_is_named(tmp_path):
    import torch

    from taskspace.method.ftgd import Delta

    path = tmp_path / "delta.safetensors"
    Delta({"w": torch.tensor([0, 2])}, {"w": torch.zeros(2)}, {"w": torch.ones(2)}).save(path)
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(OutputError, match=r"delta.safetensors is unreadable or corrupt .*rerun the ftgd stage"):
        Delta.load(path)


# ---- 3. an index another process holds is refused, nothing lost ------------------------------------------------


@contextlib.contextmanager
def opened_elsewhere(db: Path, read_only: bool, then: str = "pass") -> Iterator[subprocess.Popen]:
    """Another process that opens the index `db`, runs `then` (Python, its connection `con`) and holds it open
    until the block ends; then it is killed, as a crashed or closed TUI would be."""
    code = f"import sys, time, duckdb; con = duckdb.connect(sys.argv[1], read_only={read_only}); {then}; "
    other = subprocess.Popen([sys.executable, "-c", code + "print('open', flush=True); time.sleep(120)", str(db)],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert other.stdout.readline().strip() == "open"
        yield other
    finally:
        other.kill()
        other.wait()


def test_an_index_held_open_by_another_process_is_refused_and_nothing_is_lost(project):
    db = project / "taskspace.duckdb"
    build_index(db, project / "data")
    insert = "con.execute(\"INSERT INTO meta VALUES ('note', 'kept')\")"
    with opened_elsewhere(db, read_only=False, then=insert) as holder:
        text = one_line(*cli("index", "--db", str(db), "--data-dir", str(project / "data")))
        assert f"index {db} is open for writing in another process (pid {holder.pid}" in text
        assert "nothing in the index was changed" in text
    counts = build_index(db, project / "data")  # killed with its INSERT only in the WAL: now the WAL is folded in
    assert counts["runs"] == 1 and counts["added"] == 0
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT value FROM meta WHERE key = 'note'").fetchone() == ("kept",)
    con.close()


def test_readers_of_the_index_do_not_stop_a_rebuild(project):
    db = project / "taskspace.duckdb"
    build_index(db, project / "data")
    with opened_elsewhere(db, read_only=True):  # the TUI
        write_run(project / "data", "tiny", "step60", TASKS, seed=1)
        assert build_index(db, project / "data")["added"] == 1
        with duckdb.connect(str(db), read_only=True) as con:  # and in this process too
            write_run(project / "data", "tiny", "step90", TASKS, seed=2)
            assert build_index(db, project / "data")["added"] == 1
            assert con.execute("SELECT count(*) FROM runs").fetchone() == (2,)  # a reader keeps what it opened


# ---- 4. tracebacks: truncated files and full disks end in one line ---------------------------------------------


def test_a_truncated_metrics_file_is_one_line(tmp_path):
    path, text = one_line_about(
        tmp_path / "metrics.json", '{"tiny@step30": {"transfer_mantel_r": 0.', "metrics", "--file"
    )
    assert f"{path} is unreadable or corrupt" in text and "dvc repro -f analyze" in text


def test_a_truncated_eval2_under_index_is_one_line(project):
    eval2 = project / "data" / "probe" / "tiny" / "step30" / "tasks" / TASKS[1] / "eval2.parquet"
    assert eval2.exists(), sorted(p.name for p in eval2.parent.parent.iterdir())
    eval2.write_bytes(eval2.read_bytes()[:200])
    text = one_line(*cli("index", "--db", str(project / "idx.duckdb"), "--data-dir", str(project / "data")))
    assert f"{eval2} is unreadable or corrupt" in text and "dvc repro -f probe@tiny-step30" in text


def test_a_full_disk_under_index_is_one_line_and_the_index_is_unchanged(project):
    db, data = project / "taskspace.duckdb", project / "data"
    res = subprocess.run([*TASKSPACE, "index", "--db", str(db), "--data-dir", str(data)],
                         capture_output=True, text=True, preexec_fn=limited(8 * 1024))  # fmt: skip
    text = one_line(res.returncode, res.stdout + res.stderr)  # DuckDB's TransactionException, as one line
    assert f"cannot write index {db}" in text and "free disk space" in text and "rerun `taskspace index`" in text
    assert not db.exists()
    build_index(db, data)
    before = db.read_bytes()
    write_run(data, "tiny", "step60", TASKS, seed=1)
    res = subprocess.run([*TASKSPACE, "index", "--db", str(db), "--data-dir", str(data)],
                         capture_output=True, text=True, preexec_fn=limited(len(before) // 2))  # fmt: skip
    text = one_line(res.returncode, res.stdout + res.stderr)
    assert f"cannot write index {db}" in text and "free disk space" in text, text
    assert db.read_bytes() == before
    assert not [p.name for p in project.iterdir() if p.name.startswith(".taskspace.duckdb")]


def test_a_full_disk_under_ftgd_out_is_one_line(tiny_dir, tmp_path):
    out = tmp_path / "out"
    args = ["ftgd", "--model", str(tiny_dir), "--revision", "step300", "--tasks", "adjunct_island", "--n-train", "8",
            "--n-eval", "4", "--steps", "2", "--batch-size", "4", "--device", "cpu", "--out", str(out)]  # fmt: skip
    res = subprocess.run([*TASKSPACE, *args], capture_output=True, text=True, preexec_fn=limited(4096))
    text = one_line(res.returncode, res.stdout + res.stderr)
    assert "File too large" in text and "adjunct_island.delta.safetensors" in text and "ulimit" in text, text
    assert not [p for p in out.rglob("*") if p.is_file()]


# ---- 5. grouping files are checked strictly ---------------------------------------------------------------------

SIX = ["anaphor_gender_agreement", "anaphor_number_agreement", "adjunct_island", "wh_island",
       "determiner_noun_agreement_1", "determiner_noun_agreement_2"]  # fmt: skip


def _probe_folder(folder: Path) -> Path:
    import numpy as np

    from taskspace.runs import Layout
    from taskspace.stats.spaces import KINDS, TaskSpaces

    layout = Layout.single(folder)
    rng = np.random.default_rng(0)
    TaskSpaces(SIX, {k: rng.normal(size=(6, 6)) for k in KINDS}).save(layout.matrices)
    write_json({"ftgd": {"sparsity": 0.01}, "per_task": {}}, layout.summary)
    return folder


def test_a_single_group_file_is_refused_with_the_reason(tmp_path):
    g = tmp_path / "one.csv"
    g.write_text("task,group\n" + "".join(f"{t},all\n" for t in SIX))
    probe = _probe_folder(tmp_path / "run")
    text = one_line(*cli("analyze", "--probe", str(probe), "--grouping", str(g), "--permutations", "20"))
    assert f"{g}: all 6 tasks of this space are in group 'all'" in text and "at least two groups" in text


def test_a_typo_in_a_grouping_row_is_named_with_its_line_and_the_closest_task(tmp_path):
    g = tmp_path / "g.csv"
    rows = [f"{t},{t.split('_')[0]}" for t in SIX]
    rows[3] = "wh_islnd,wh"
    g.write_text("task,group\n" + "\n".join(rows) + "\n")
    probe = _probe_folder(tmp_path / "run")
    text = one_line(*cli("analyze", "--probe", str(probe), "--grouping", str(g), "--permutations", "20"))
    assert f"{g}:5: unknown task 'wh_islnd' — did you mean 'wh_island'?" in text


def test_an_unknown_task_in_a_grouping_file_is_not_ignored(tmp_path):
    from taskspace.stats.grouping import groups_for, load_grouping

    g = tmp_path / "g.json"
    g.write_text(json.dumps({"t1": "x", "t2": "x", "t3": "y", "t4": "y", "wh_islnd": "z"}, indent=1))
    with pytest.raises(ValueError, match=rf"{g}:6: task 'wh_islnd' is not a task of this space — did you mean 'wh_i"):
        groups_for(["t1", "t2", "t3", "t4", "wh_island"], load_grouping(g))
    with pytest.raises(ValueError, match=rf"{g} has no group for task\(s\) other: add a row"):
        groups_for(["t1", "t2", "other"], load_grouping(g))
    assert groups_for(["t1", "t2", "t3"], load_grouping(g)) == ["x", "x", "y"]  # rows for other tasks are fine


# ---- 6. messages that say what is wrong ------------------------------------------------------------------------


def test_a_model_folder_without_tokenizer_files_says_so(tiny_dir, tmp_path):
    import shutil

    from taskspace.lm.models import ModelError, load_model

    folder = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_dir / "step300", folder, ignore=shutil.ignore_patterns("tokenizer*"))
    with pytest.raises(ModelError, match=rf"the tokenizer of {folder} turns text into no tokens: its tokenizer files"):
        load_model(str(folder))


def test_weights_that_become_infinite_are_named_as_such(tiny_lm, blimp, tmp_path):
    from conftest import refused_tuning

    refused_tuning(tiny_lm, blimp, tmp_path, 1e39, 1, r"after 1 steps at lr 1e\+39: it produced non-finite \(inf/NaN\)")


def _params(blimp, **changes) -> dict:
    from conftest import pipeline_params

    p = pipeline_params(blimp)
    for key, value in changes.items():
        section, _, name = key.partition("__")
        p[section] = {**p[section], name: value} if name else value
    from taskspace.runs import expand_runs

    return {**p, "runs": expand_runs(p["models"])}


def test_settings_errors_name_the_key_where_it_was_typed(blimp):
    from taskspace.errors import ConfigError
    from taskspace.pipeline.settings import Settings

    tiny = {"spec": "data/tiny/tiny", "revisions": ["step30"], "ftgd": {"lr": 0.01}}
    with pytest.raises(ConfigError, match=r"unknown key 'ftgd.sparsty' — did you mean 'ftgd.sparsity'"):
        Settings.from_dict(_params(blimp, ftgd__sparsty=0.1, models={"tiny": tiny}))
    with pytest.raises(ConfigError, match=r"^models.tiny.ftgd.lr = -1 is invalid"):
        Settings.from_dict(_params(blimp, models={"tiny": {**tiny, "ftgd": {"lr": -1}}}))
    with pytest.raises(ConfigError, match=r"unknown key 'models.tiny.ftgd.sparsty'"):
        Settings.from_dict(_params(blimp, models={"tiny": {**tiny, "ftgd": {"sparsty": 0.1}}}))


def test_a_yaml_error_in_params_names_its_line(tmp_path):
    params, text = one_line_about(
        tmp_path / "params.yaml", "data:\n  n_train: 16\n  tasks: [a, b\nftgd: {}\n", "check", "--params"
    )
    assert f"{params}:4:" in text and "not valid YAML" in text


def test_cli_errors_name_the_option_typed(blimp):
    text = one_line(*cli("score", "--tasks", "adjunct_island", "--n", "0"))
    assert "--n = 0 is invalid" in text and "data." not in text
    text = one_line(*cli("score", "--tasks", "adjunct_island", "--n", "5000"))
    assert "lower --n-train or --n" in text
    text = one_line(*cli("ftgd", "--tasks", "adjunct_island", "--n-train", "-1"))
    assert "--n-train = -1 is invalid" in text
    text = one_line(*cli("ftgd", "--tasks", "adjunct_island", "--lr", "-1"))
    assert "--lr = -1.0 is invalid" in text


# ---- 7. nothing silently accepted ----------------------------------------------------------------------------


def test_ftgd_command_refuses_a_collapsed_tuning(tiny_dir, tmp_path):
    out = tmp_path / "out"
    args = ["--model", str(tiny_dir), "--revision", "step300", "--tasks", "anaphor_gender_agreement,adjunct_island",
            "--n-train", "16", "--n-eval", "8", "--steps", "5", "--batch-size", "8", "--device", "cpu"]  # fmt: skip
    text = one_line(*cli("ftgd", *args, "--lr", "1000", "--out", str(out)))
    assert "ftgd tuning collapsed the model after" in text and "lr 1000.0" in text and "lower --lr" in text
    assert not out.exists() or not list(out.iterdir())


def test_a_revision_is_a_name_never_a_path(tiny_dir, blimp):
    from taskspace.errors import ConfigError
    from taskspace.pipeline.settings import Settings

    text = one_line(*cli("score", "--model", str(tiny_dir / "step300"), "--revision", "../step100", "--tasks",
                         "adjunct_island", "--n", "2"))  # fmt: skip
    assert "--revision = '../step100' is invalid" in text and "no path" in text
    bad = {"tiny": {"spec": "data/tiny/tiny", "revisions": ["../tiny/step30"]}}
    with pytest.raises(ConfigError, match=r"models.tiny.revisions = '../tiny/step30' is invalid"):
        Settings.from_dict(_params(blimp, models=bad))


def test_a_hidden_jsonl_file_is_not_a_task(blimp, tmp_path):
    import shutil

    from taskspace.blimp import data

    shutil.copy(blimp / "adjunct_island.jsonl", tmp_path)
    (tmp_path / ".adjunct_island.jsonl").write_text("{not json\n")  # an editor's or sync tool's leftover
    assert list(data.available_tasks(tmp_path)) == ["adjunct_island"]
    assert data.select_tasks(tmp_path) == ["adjunct_island"]


def test_check_refuses_a_tiny_revision_that_will_not_be_built(blimp, tmp_path, monkeypatch):
    from taskspace.errors import ConfigError
    from taskspace.pipeline.settings import Settings, preflight

    monkeypatch.chdir(tmp_path)
    models = {"tiny": {"spec": "data/tiny/tiny", "revisions": ["step30", "step45"]}}  # steps 60, save_every 30
    s = Settings.from_dict(_params(blimp, models=models))
    with pytest.raises(ConfigError, match=r"'step45' will not exist: tiny_models.tiny .* builds step0, step30, step60"):
        preflight(s)


# ---- 8. slow failures fail fast ---------------------------------------------------------------------------------


def test_an_unreachable_hub_fails_in_seconds(tmp_path):
    """Without HF_HUB_OFFLINE, a path typo that looks like a hub id, with the hub unreachable (nothing listens on
    its port): one line in seconds, not a minute of retries."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env |= {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    t0 = time.perf_counter()
    res = subprocess.run([*TASKSPACE, "score", "--model", "modls/pythia-14m", "--tasks", "adjunct_island", "--n", "2"],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    took = time.perf_counter() - t0
    text = one_line(res.returncode, res.stdout + res.stderr)
    assert "cannot load 'modls/pythia-14m' from the hub (and there is no local folder modls/pythia-14m)" in text
    assert took < 30, f"{took:.0f} s"
