"""The CLI's commands through click's CliRunner: they build validated configs, call the library, print tables."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from taskspace.cli import main

TASKS = "regular_plural_subject_verb_agreement_1,anaphor_gender_agreement,anaphor_number_agreement"


def run(*args: str):
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def probed(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe")
    code, text = run(
        "probe", "--model", str(tiny_dir), "--revision", "step300", "--tasks", TASKS, "--n-train", "16",
        "--n-eval", "20", "--steps", "3", "--lr", "1e-3", "--metric", "margin", "--out", str(out),
    )  # fmt: skip
    assert code == 0, text
    return out, text


def test_probe_writes_spaces_and_prints_the_transfer_table(probed):
    out, text = probed
    assert "transfer (margin: eval2 − eval1)" in text
    with np.load(out / "matrices.npz") as z:
        assert z["transfer"].shape == (3, 3)


def test_analyze_fits_the_probed_spaces(probed, tmp_path):
    out, _ = probed
    code, text = run("analyze", "--probe", str(out), "--permutations", "50", "--out", str(tmp_path))
    assert code == 0, text
    assert "fit to the phenomenon hypothesis space" in text and "Mantel p" in text
    result = json.loads((tmp_path / "analysis.json").read_text())
    assert set(result["runs"][str(out)]) == {"transfer", "transfer_norm", "gradient", "sharing"}


def test_ftgd_compare_tunes_three_ways(tiny_dir, tmp_path):
    code, text = run(
        "ftgd", "--model", str(tiny_dir), "--revision", "step300", "--tasks", "anaphor_gender_agreement",
        "--n-train", "16", "--n-eval", "20", "--steps", "3", "--lr", "1e-3", "--compare", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, text
    report = json.loads((tmp_path / "anaphor_gender_agreement.ftgd.json").read_text())
    assert set(report["variants"]) == {"ftgd", "dense", "lm"}
    assert report["variants"]["dense"]["n_changed"] > report["variants"]["ftgd"]["n_changed"]
    assert (tmp_path / "anaphor_gender_agreement.delta.safetensors").exists()


@pytest.mark.parametrize(
    "args, message, exit_code",
    [
        # exit 1: the library's one-line answer (friendly_errors); it was 2 for every error before the CLI
        # conventions kept 2 for click's usage errors alone
        (["ftgd", "--lr", "-1"], "--lr = -1.0 is invalid", 1),
        (["ftgd", "--steps", "0"], "--steps = 0 is invalid", 1),
        (["probe", "--n-train", "0", "--out", "x"], "--n-train = 0 is invalid: tuning needs at least 1 train pair", 1),
        (["score", "--batch-size", "0"], "--batch-size 0: use an integer ≥ 1", 1),
        (["score", "--out", "scores.csv"], "scores are written as Parquet", 1),
        (["score", "--n", "-5"], "--n = -5 is invalid", 1),
        (["score", "--tasks", "adjunct_islands"], "did you mean adjunct_island", 1),
        # exit 2: --metric is a click.Choice over config.METRICS now, so click refuses it as a usage error
        (["probe", "--metric", "acc", "--out", "x"], "Invalid value for '--metric': 'acc' is not one of", 2),
    ],
)
def test_bad_options_end_in_one_line_before_any_model_loads(args, message, exit_code):
    code, text = run(*args)
    assert code == exit_code and message in text and "Traceback" not in text
    assert "loading" not in text  # refused before the model is loaded


def test_plan_counts_a_params_file_without_calibrating(tmp_path, monkeypatch):

    from taskspace.pipeline.settings import compose_params

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    compose_params(["profile=offline"], tmp_path / "params.yaml", str(root / "conf"))
    code, text = run("plan", "--no-calibrate", "--json")
    assert code == 0, text
    plan = json.loads(text[text.index("{") :])
    runs = {r["run"]: r for r in plan["runs"]}
    assert set(runs) == {"tiny-step100", "tiny-step200", "tiny-step300", "smollm2-main"}
    w = runs["smollm2-main"]["workload"]
    assert (w["tasks"], w["eval_sentences"], w["eval2_sentences"]) == (6, 2 * 6 * 50, 6 * 2 * 6 * 50)
    assert runs["smollm2-main"]["shape"]["n_params"] == 134_515_008 and runs["smollm2-main"]["seconds"] is None
    code, text = run("plan", "--no-calibrate")
    assert code == 0 and "total (4)" in text


def test_score_metrics_and_index_speak_json_and_csv(tiny_dir, tmp_path):
    """--format json / csv put the results alone on stdout, for scripts (messages stay on stderr)."""
    import csv
    import io

    from synthetic import build_synthetic_index

    res = CliRunner().invoke(main, ["score", "--model", str(tiny_dir), "--revision", "step300", "--tasks", TASKS,
                                    "--n", "10", "--format", "json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert sorted(r["task"] for r in rows) == sorted(TASKS.split(",")) and all(0 <= r["accuracy"] <= 1 for r in rows)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"tiny@step30": {"transfer_mantel_r": 0.25, "transfer_mantel_p": 0.04}}))
    res = CliRunner().invoke(main, ["metrics", "--file", str(metrics), "--format", "csv"])
    assert list(csv.DictReader(io.StringIO(res.stdout))) == [
        {"run": "tiny@step30", "transfer_mantel_r": "0.25", "transfer_mantel_p": "0.04"}
    ]
    db = build_synthetic_index(tmp_path / "idx", {"tiny": ["step30"]}, TASKS.split(","))
    res = CliRunner().invoke(main, ["index", "--db", str(db), "--counts", "--format", "json"])
    counts = {r["table"]: r["rows"] for r in json.loads(res.stdout)}
    assert counts["runs"] == 1 and counts["similarities"] > 0


def test_exps_shows_only_what_differs_between_measured_experiments():
    """A baseline of another profile (other models, no metrics) does not flood the table with its settings."""
    from taskspace.pipeline.experiments import exp_rows, short

    def entry(params: dict, metrics: dict | None) -> dict:
        m = {"data/analyze/metrics.json": {"data": metrics}} if metrics else {}
        return {"params": {"params.yaml": {"data": params}}, "metrics": m}

    base = {"ftgd": {"lr": 1e-4, "steps": 100}, "models": {"pythia-70m": {"spec": "x"}}, "runs": {"a": 1}}
    offline = {"ftgd": {"lr": 1e-4, "steps": 10}, "models": {"smollm2": {"spec": "smollm2"}}, "runs": {"b": 2}}
    variant = {**offline, "ftgd": {"lr": 3e-4, "steps": 10}}
    lr3 = {"name": "lr3", "data": entry(variant, {"smollm2@main": {"self_transfer": 2.0}})}
    shown = [
        {"rev": "workspace", "data": entry(offline, {"smollm2@main": {"transfer_mantel_r": 0.5}})},
        {"rev": "a" * 40, "name": "main", "data": entry(base, None), "experiments": [{"revs": [lr3]}]},
    ]
    differ, rows = exp_rows(shown)
    assert differ == ["ftgd.lr"]  # not ftgd.steps (the unmeasured baseline's), not models.* or runs.*
    assert [(r["experiment"], r["run"], r["ftgd.lr"]) for r in rows] == [
        ("workspace", "smollm2@main", 1e-4), ("main", "(not computed)", 1e-4), ("lr3", "smollm2@main", 3e-4)
    ]  # fmt: skip
    assert rows[0]["transfer_mantel_r"] == 0.5 and rows[2]["self_transfer"] == 2.0
    assert short(list(range(30))) == "[30 items]" and short("x" * 30).endswith("…")


def test_exps_shows_per_model_overrides_and_whole_experiment_names():
    """A model's own `ftgd:` override is a setting that differs (`models.tiny.ftgd.lr`), compared only between
    experiments that have that model; which models and revisions exist stays in the run label; a long experiment
    name is printed whole, and every line fits 80 columns."""
    from rich.console import Console

    from taskspace.cli.tables import exps_table
    from taskspace.pipeline.experiments import HEADLINE, exp_rows

    def entry(params: dict, runs: list[str]) -> dict:
        values = dict(zip(HEADLINE, (0.41, 0.003, 0.012, 0.8, 0.2, 0.01)))
        metrics = {"data/analyze/metrics.json": {"data": {run: values for run in runs}}}
        return {"params": {"params.yaml": {"data": params}}, "metrics": metrics}

    tiny = {"spec": "data/tiny/tiny", "revisions": ["step30", "step300"]}
    base = {"ftgd": {"lr": 1e-4, "steps": 10}, "models": {"tiny": tiny, "smollm2": {"spec": "smollm2"}}}
    tuned = {**base, "models": {**base["models"], "tiny": {**tiny, "ftgd": {"lr": 1e-3}}}}
    # another experiment's model with an override of its own: no other experiment has it, so nothing to compare
    other = {**base, "models": {"pythia": {"spec": "EleutherAI/pythia-70m", "revisions": ["step1000"],
                                           "ftgd": {"lr": 5e-5}}}}  # fmt: skip
    long_name = "offline-20250612-143210-tiny-lr-sweep-final"
    shown = [
        {"rev": "workspace", "data": entry(base, ["tiny@step30", "smollm2@main"])},
        {"rev": "b" * 40, "name": "main", "experiments": [
            {"revs": [{"name": long_name, "data": entry(tuned, ["tiny@step30", "smollm2@main"])}]},
            {"revs": [{"name": "pythia-only", "data": entry(other, ["pythia-70m@step1000"])}]},
        ]},
    ]  # fmt: skip
    differ, rows = exp_rows(shown)
    assert differ == ["models.tiny.ftgd.lr"]  # not models.pythia.*, not spec or revisions (the run label says them)
    by_name = {r["experiment"]: r["models.tiny.ftgd.lr"] for r in rows}
    assert by_name == {"workspace": None, long_name: 1e-3, "pythia-only": None}
    console = Console(width=80, record=True)
    console.print(exps_table(rows, differ))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    lines = text.splitlines()
    named = next(line for line in lines if long_name in line)  # whole, on a line of its own with its settings
    assert "models.tiny.ftgd.lr 0.001" in named and "…" not in text
    runs_below = lines[lines.index(named) + 1 : lines.index(named) + 3]
    assert [line.split()[0] for line in runs_below] == ["tiny@step30", "smollm2@main"]
    assert "+0.41" in runs_below[0] and "+0.010" in runs_below[0]  # every headline metric, Δloss the last


# ---- CLI conventions: -h, choices, help on every option, the hidden stage group, exit codes, completion ----------


def commands(cmd: click.Command = main, path: tuple[str, ...] = ()):
    """(path, command) for `taskspace` and every command under it, the `stage` and `resume` groups included."""
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from commands(sub, (*path, name))


COMMANDS = [path for path, _ in commands()]


def test_the_walk_reaches_the_groups():
    assert {("stage", "probe"), ("stage", "dvc-yaml"), ("resume", "export"), ("resume", "import")} <= set(COMMANDS)
    assert {("score",), ("export",), ("tui",)} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "taskspace")
def test_h_is_help_everywhere(path):
    code, text = run(*path, "-h")
    assert code == 0 and text.startswith("Usage: ") and "-h, --help" in text, text


def test_every_option_has_help_and_every_argument_is_described():
    missing = []
    for path, cmd in commands():
        where = " ".join(("taskspace", *path))
        for p in cmd.params:
            if isinstance(p, click.Option) and not (p.help or "").strip():
                missing.append(f"{where} {p.opts[0]}")
            if isinstance(p, click.Argument):  # click arguments take no help=: the docstring names them
                assert p.human_readable_name in (cmd.help or ""), f"{where}: {p.human_readable_name} undescribed"
    assert not missing, missing


def test_closed_sets_are_choices_over_the_library_tuples():
    from taskspace.cli.common import DTYPE_NAMES, FORMATS
    from taskspace.config import COMPUTE_DTYPES, METRICS, OBJECTIVES
    from taskspace.lm.shapes import SHAPES
    from taskspace.pipeline.gpus import GPUS

    def choices(path: tuple[str, ...], flag: str) -> tuple[str, ...] | None:
        cmd = dict(commands())[path]
        opt = next(p for p in cmd.params if flag in p.opts)
        return tuple(opt.type.choices) if isinstance(opt.type, click.Choice) else None

    assert DTYPE_NAMES == ("float32", "bfloat16", "float16") == tuple(v for v in COMPUTE_DTYPES.values() if v)
    expected = {
        (("ftgd",), "--objective"): OBJECTIVES,
        (("probe",), "--objective"): OBJECTIVES,
        (("probe",), "--metric"): METRICS,
        (("score",), "--dtype"): DTYPE_NAMES,
        (("plan",), "--dtype"): DTYPE_NAMES,
        (("plan",), "--gpu"): tuple(GPUS),
        (("make-tiny",), "--shape"): SHAPES,
        (("score",), "--format"): FORMATS,
        (("metrics",), "--format"): FORMATS,
        (("index",), "--format"): FORMATS,
        (("exps",), "--format"): FORMATS,
    }
    for (path, flag), values in expected.items():
        assert choices(path, flag) == tuple(values), (path, flag)
    # validated later by the library with its own message (cuda:1, a layer:N group, a grouping FILE): free text
    for path, flag in ((("score",), "--device"), (("plan",), "--device"), (("ftgd",), "--params"),
                       (("analyze",), "--grouping")):  # fmt: skip
        assert choices(path, flag) is None, (path, flag)


def test_the_stage_group_is_hidden_but_works(tmp_path):
    def listed(*args: str) -> list[str]:
        code, text = run(*args, "--help")
        assert code == 0, text
        return [line.split()[0] for line in text.split("Commands:\n", 1)[1].splitlines() if line.startswith("  ")]

    assert "resume" in listed() and "stage" not in listed()  # internal: dvc.yaml calls it
    assert {"prepare", "tiny", "eval", "ftgd", "probe", "analyze", "runs", "dvc-yaml"} == set(listed("stage"))
    code, text = run("stage", "dvc-yaml", "--out", str(tmp_path / "dvc.yaml"))
    assert code == 0 and "stages:" in (tmp_path / "dvc.yaml").read_text()


def taskspace_script() -> str:
    script = Path(sys.executable).parent / "taskspace"
    found = str(script) if script.exists() else shutil.which("taskspace")
    assert found, "no `taskspace` console script: scripts/setup.sh installs it (pip install -e .)"
    return found


def test_an_explained_error_exits_1_and_a_usage_error_2():
    res = subprocess.run([taskspace_script(), "metrics", "--file", "/nonexistent.json"], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith("error: /nonexistent.json not found") and "Traceback" not in res.stderr
    code, text = run("metrics", "--file", "/nonexistent.json")
    assert code == 1 and text.count("error:") == 1
    for args, message in [
        (["score", "--nope"], "--nope"),
        (["probe", "--objective", "hinge", "--out", "x"], "Invalid value for '--objective'"),
        (["plan", "--gpu", "v100"], "Invalid value for '--gpu'"),
        (["index", "--format", "xml"], "Invalid value for '--format'"),
        (["export", "--out", "x.png"], "Missing argument 'RUN'"),
        (["resume", "import"], "Missing argument 'BUNDLE'"),
        (["nope"], "No such command 'nope'"),
    ]:
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, (args, res.output)


def test_shell_completion_is_clicks():
    env = {**os.environ, "_TASKSPACE_COMPLETE": "bash_source"}
    res = subprocess.run([taskspace_script()], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "_taskspace_completion" in res.stdout and "complete " in res.stdout, res.stderr
    env = {**os.environ, "_TASKSPACE_COMPLETE": "bash_complete", "COMP_WORDS": "taskspace probe --metric ",
           "COMP_CWORD": "3"}  # fmt: skip
    res = subprocess.run([taskspace_script()], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.split() == ["plain,accuracy", "plain,margin"], res.stdout
