"""Commands on the project: the DVC stage bodies, the plan, the index, metrics and the TUI."""

from __future__ import annotations

import time
from pathlib import Path

import click

from taskspace.cli.common import DTYPE_NAMES, console, emit, format_option, friendly_errors, out_console, say
from taskspace.cli.tables import calibration_line, counts_table, exps_table, metrics_table, plan_table, transfer_line
from taskspace.pipeline.gpus import DEFAULT_GPU, GPUS
from taskspace.runs import ANALYSIS_FILE, INDEX_DB, METRICS_FILE

PARAMS = click.option(
    "--params",
    default="params.yaml",
    show_default=True,
    type=click.Path(path_type=Path),
    help="the pipeline's settings file",
)
DB_HELP = "the DuckDB index file"


@click.command()
@PARAMS
@friendly_errors
def check(params):
    """Check params.yaml before any work: settings, runs, tasks and pair counts, models, writable outputs."""
    from taskspace.io import write_json
    from taskspace.pipeline.dvcfile import CHECKED
    from taskspace.pipeline.settings import Settings
    from taskspace.pipeline.stages import stage_check

    summary = stage_check(Settings.load(params))
    write_json({"checked": True}, CHECKED)  # constant: the stages after it depend on it, not on its content
    say(f"{params}: {summary}")


@click.group(hidden=True)  # internal: dvc.yaml calls it; `taskspace stage --help` still lists its commands
def stage() -> None:
    """Pipeline stage bodies (called by dvc.yaml; read params.yaml in the current folder)."""


def _timed(name: str, fn) -> None:
    t0 = time.perf_counter()
    fn()
    say(f"stage {name} done in {time.perf_counter() - t0:.1f} s")


@stage.command("prepare")
@PARAMS
@friendly_errors
def stage_prepare(params):
    """Seeded train/eval splits of the selected tasks."""
    from taskspace.pipeline import stages as pipeline
    from taskspace.pipeline.settings import Settings

    s = Settings.load(params)
    _timed("prepare", lambda: pipeline.stage_prepare(s, say=say))


@stage.command("tiny")
@PARAMS
@click.option("--name", required=True, help="a key under `tiny_models`")
@friendly_errors
def stage_tiny(params, name):
    """Build a tiny (or Pythia-shaped) model with its checkpoint series."""
    from taskspace.pipeline import stages as pipeline
    from taskspace.pipeline.settings import Settings

    s = Settings.load(params)
    _timed(f"tiny@{name}", lambda: pipeline.stage_tiny(s, name, say=say))


def _run_stage(name: str):
    @PARAMS
    @click.option("--model", required=True, help="a key under `models` in params.yaml")
    @click.option("--revision", required=True, help="one of its revisions")
    @friendly_errors
    def run(params, model, revision):
        from taskspace.pipeline import stages as pipeline
        from taskspace.pipeline.settings import Settings

        s = Settings.load(params)  # every setting checked before any model is loaded or output touched
        run = s.run(model, revision)
        body = getattr(pipeline, f"stage_{name}")
        _timed(f"{name}@{run.stage_key}", lambda: body(s, run, say=say))

    return stage.command(name, help=f"The {name} stage of one run (model × revision).")(run)


for _name in ("eval", "ftgd", "probe"):
    _run_stage(_name)


@stage.command("analyze")
@PARAMS
@friendly_errors
def stage_analyze(params):
    """Fit, compare and follow every run's spaces: analysis.json, metrics.json, plots."""
    from taskspace.pipeline import stages as pipeline
    from taskspace.pipeline.settings import Settings

    s = Settings.load(params)
    _timed("analyze", lambda: pipeline.stage_analyze(s, say=say))


@stage.command("runs")
@PARAMS
@friendly_errors
def stage_runs(params):
    """Rewrite `runs` (one entry per model × revision) from `models`, after editing params.yaml by hand."""
    from taskspace.pipeline.settings import write_runs

    runs = write_runs(params)
    say(f"{params}: {len(runs)} runs: {', '.join(runs)}")


@stage.command("dvc-yaml")
@click.option("--out", default="dvc.yaml", show_default=True, type=click.Path(path_type=Path), help="file to write")
@friendly_errors
def stage_dvc_yaml(out):
    """Write dvc.yaml from the stage definitions (taskspace/pipeline/dvcfile.py: STAGES)."""
    from taskspace.io import write_text
    from taskspace.pipeline.dvcfile import dvc_yaml_text

    write_text(out, dvc_yaml_text())
    say(f"wrote {out}")


@click.command()
@PARAMS
@click.option("--calibrate/--no-calibrate", default=True, show_default=True, help="time a few steps on this device")
@click.option("--device", default=None, help="device to plan for: cpu, cuda or cuda:N (default: cuda if available)")
@click.option(
    "--dtype",
    default=None,
    type=click.Choice(DTYPE_NAMES),
    help="precision to plan for (default: bfloat16 on GPU, float32 on CPU)",
)
@click.option(
    "--gpu",
    type=click.Choice(tuple(GPUS)),
    default=None,
    help=f"with --device cuda and no GPU here: estimate for this GPU from its datasheet (default {DEFAULT_GPU})",
)
@click.option("--json", "as_json", is_flag=True, help="print the plan as JSON")
@friendly_errors
def plan(params, calibrate, device, dtype, gpu, as_json):
    """What the pipeline in params.yaml will cost: passes, FLOPs, disk, memory and time, per run and in total."""
    import dataclasses
    import json

    from taskspace.pipeline import plan as plan_
    from taskspace.pipeline.settings import Settings

    runs, warnings = plan_.plan(Settings.load(params), calibrate, device, dtype, say=say, gpu_name=gpu)
    if as_json:
        click.echo(json.dumps({"runs": [dataclasses.asdict(r) for r in runs], "warnings": warnings}, indent=1))
        return
    out_console.print(plan_table(runs, f"plan for {params}"))
    for r in {r.model: r for r in runs}.values():
        out_console.print(calibration_line(r), highlight=False)
        if line := transfer_line(r, Settings.load(params).probe.transfer):
            out_console.print(line, highlight=False)
    if runs and runs[0].estimate:
        from taskspace.pipeline.gpus import describe

        out_console.print(describe(runs[0].estimate), highlight=False)
    for w in warnings:
        console.print(f"[red]warning:[/red] {w}", highlight=False)


@click.command()
@click.option("--db", default=str(INDEX_DB), show_default=True, type=click.Path(path_type=Path), help=DB_HELP)
@click.option(
    "--data-dir", default="data", show_default=True, type=click.Path(path_type=Path), help="the stage outputs to index"
)
@click.option(
    "--analysis",
    "analysis_file",
    default=str(ANALYSIS_FILE),
    show_default=True,
    help="the analyze stage's analysis.json (fits, comparisons)",
)
@click.option("--counts", "counts_only", is_flag=True, help="only report the row counts (read-only, writes nothing)")
@format_option
@friendly_errors
def index(db, data_dir, analysis_file, counts_only, fmt):
    """(Re)build the DuckDB index from the stage outputs: adds new runs only, atomically."""
    from taskspace.index import Index, build_index

    t0 = time.perf_counter()
    if counts_only:
        idx = Index(db)
        try:
            counts = idx.counts()
        finally:
            idx.close()
    else:
        counts = build_index(db, data_dir, analysis_file, say=say)
    secs = time.perf_counter() - t0
    rows = [{"table": k, "rows": v} for k, v in counts.items()]
    emit(rows, fmt, lambda: counts_table(counts, f"{db.name} ({secs:.1f} s)", str(db.parent)))


@click.command()
@click.option(
    "--file",
    "path",
    default=str(METRICS_FILE),
    show_default=True,
    type=click.Path(path_type=Path),
    help="the analyze stage's metrics.json",
)
@format_option
@friendly_errors
def metrics(path, fmt):
    """The analysis metrics of every run (what `dvc metrics show` lists), one row per run."""
    from taskspace.errors import OutputError
    from taskspace.io import read_json

    if not path.exists():
        raise OutputError(f"{path} not found: run the pipeline first (./scripts/main.sh or `dvc repro`)")
    runs = read_json(path, "restore it with `dvc checkout --relink {path}` or rerun `dvc repro -f analyze`")
    if not isinstance(runs, dict) or not all(isinstance(v, dict) for v in runs.values()):
        raise OutputError(f"{path}: expected one object of metrics per run; rerun `dvc repro -f analyze`")
    emit([{"run": run, **values} for run, values in runs.items()], fmt, lambda: metrics_table(runs, str(path)))


@click.command()
@click.option("--db", default=str(INDEX_DB), show_default=True, help=DB_HELP)
@click.option("--project", default=".", show_default=True, help="the DVC project (for the pipeline screen)")
def tui(db, project):
    """Open the Textual TUI over the index and the DVC project."""
    from taskspace_tui.app import TaskspaceApp

    TaskspaceApp(db=db, project=project).run()


@click.command()
@format_option
@friendly_errors
def exps(fmt):
    """`dvc exp show`, readable: a row per experiment × run, the settings that differ, the headline metrics."""
    import sys

    from taskspace.pipeline.experiments import exp_rows, exp_show

    dvc = Path(sys.executable).parent / "dvc"
    differ, rows = exp_rows(exp_show(str(dvc) if dvc.exists() else "dvc"))
    emit(rows, fmt, lambda: exps_table(rows, differ))


@click.group()
def resume() -> None:
    """Carry finished per-task work (the stash in .taskspace/resume) to another machine, where stages resume."""


@resume.command("export")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--with-deltas", is_flag=True, help="also the deltas and gradients (large; FTGD remakes them)")
@friendly_errors
def resume_export(out, with_deltas):
    """Write every finished task's files into OUT (.tar.gz); run in the project folder."""
    from taskspace.method.resume import REMADE, export

    n, size = export(out, with_deltas=with_deltas)
    left = "" if with_deltas else f"; {' and '.join(REMADE)} left out: FTGD remakes them"
    say(f"{out}: {n} files, {size / 1e6:.2f} MB before compression{left}")


@resume.command("import")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@friendly_errors
def resume_import(bundle):
    """Add BUNDLE's files to this project's stash; `dvc repro` / `dvc exp run` then use every one whose stamp
    still matches (a carried eval2 needs the same delta, which FTGD remakes bit for bit on the same machine kind)."""
    from taskspace.method.resume import ROOT, import_bundle

    added, kept = import_bundle(bundle)
    say(f"{bundle}: {added} files added to {ROOT}" + (f", {kept} already there kept" if kept else ""))
