"""`taskspace` command line: each verb is a thin shell over the library, used by people and DVC stages."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from taskspace import data
from taskspace.shapes import SHAPES

console = Console(stderr=True)
out_console = Console()


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def friendly_errors(fn):
    """Known bad input (data, model, index) ends in one line and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from taskspace.models import ModelError

        try:
            return fn(*args, **kwargs)
        except (data.DataError, ModelError, FileNotFoundError, ValueError, RuntimeError) as e:
            console.print(f"[red]error:[/red] {e}", soft_wrap=True, highlight=False)
            sys.exit(2)

    return wrapper


def option_group(*opts):
    """One decorator applying several click options in the order listed."""

    def apply(fn):
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return apply


def model_options(fn):
    return option_group(
        click.option(
            "--model",
            "model_spec",
            default="smollm2",
            show_default=True,
            help="hub id, local folder, GGUF file, or 'smollm2' (offline, bundled)",
        ),
        click.option("--revision", default=None, help="hub revision (Pythia: stepN) or local sub-folder"),
        click.option("--prefix", default=None, help="prefix token (default: <|endoftext|>, else BOS)"),
        click.option("--device", default=None, help="cuda / cpu (default: cuda if available)"),
        click.option("--dtype", default=None, help="float32 / bfloat16 (default: bf16 on GPU, fp32 on CPU)"),
        click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model (pays on a GPU)"),
    )(fn)


def data_options(fn):
    return option_group(
        click.option("--blimp", default=None, help="BLiMP JSONL folder, or 'hub' [default: shared folder]"),
        click.option("--tasks", default="", help="comma-separated paradigms"),
        click.option("--phenomena", default="", help="comma-separated phenomena (linguistics_term)"),
        click.option("--fields", default="", help="comma-separated fields"),
        click.option("--seed", default=0, show_default=True, help="split seed"),
    )(fn)


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def load_tasks(kw: dict) -> tuple[str, list[str]]:
    """Consume the data options: (source, selected task names)."""
    source = kw.pop("blimp") or data.default_source()
    names = data.select_tasks(source, _csv(kw.pop("tasks")), _csv(kw.pop("phenomena")), _csv(kw.pop("fields")))
    return source, names


def load_split(kw: dict):
    """Consume the data options and n_train/n_eval: (source, names, (train, eval))."""
    source, names = load_tasks(kw)
    pairs = data.load_blimp(source, names)
    return source, names, data.split_pairs(pairs, kw.pop("n_train"), kw.pop("n_eval"), kw.pop("seed"))


def load_lm(kw: dict):
    """Consume the model options and load the model (with a spinner: GGUF conversion can take ~20 s)."""
    from taskspace.models import load_model

    spec, revision = kw.pop("model_spec"), kw.pop("revision")
    with console.status(f"loading {spec}{f'@{revision}' if revision else ''}"):
        return load_model(
            spec,
            revision=revision,
            device=kw.pop("device"),
            dtype=kw.pop("dtype"),
            prefix=kw.pop("prefix"),
            compile=kw.pop("compile_model"),
        )


def accuracy_table(rows: list[dict], title: str) -> Table:
    t = Table(title=title)
    for col in ("task", "pairs", "accuracy", "mean margin", "ties"):
        t.add_column(col, justify="left" if col == "task" else "right", overflow="fold")
    for r in rows:
        t.add_row(r["task"], str(r["n"]), f"{r['accuracy']:.3f}", f"{r['mean_margin']:+.3f}", str(r["ties"]))
    return t


@click.group()
@click.version_option(package_name="taskspace")
def main() -> None:
    """Linguistic task spaces over BLiMP: score, fine-tune (FTGD), probe, analyse, index, explore."""


@main.command()
@model_options
@data_options
@click.option("--n", "n_eval", default=100, show_default=True, help="pairs per task (seeded eval split)")
@click.option("--n-train", default=0, show_default=True, help="pairs held out first as the train split")
@click.option("--batch-size", default=128, show_default=True, help="sentences per forward pass")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="write per-pair margins (Parquet)")
@friendly_errors
def score(batch_size, out, **kw):
    """Score minimal pairs: per-task accuracy (good > bad) and per-pair margins."""
    import time

    from taskspace.io import write_parquet
    from taskspace.scoring import score_pairs, task_accuracy

    source, _, (_, pairs) = load_split(kw)
    lm = load_lm(kw)
    t0 = time.perf_counter()
    with progress_bar() as bar:
        job = bar.add_task("scoring sentences", total=2 * pairs.num_rows)
        scores = score_pairs(lm, pairs, batch_size, lambda k: bar.advance(job, k))
    secs = time.perf_counter() - t0
    rows = task_accuracy(scores)
    out_console.print(accuracy_table(rows, f"{lm.name}{f'@{lm.revision}' if lm.revision else ''} (prefix {lm.prefix})"))
    console.print(f"{2 * pairs.num_rows} sentences in {secs:.1f} s ({2 * pairs.num_rows / secs:.1f} sentences/s)")
    if out:
        meta = {k: str(v) for k, v in lm.meta().items()}
        write_parquet(scores.replace_schema_metadata({**meta, "source": str(source)}), out)
        console.print(f"wrote {out}")


@main.command("make-tiny")
@data_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--steps", default=300, show_default=True, help="LM training steps (0: random weights, step0 only)")
@click.option("--save-every", default=100, show_default=True)
@click.option(
    "--shape",
    default="tiny",
    show_default=True,
    type=click.Choice(SHAPES),
    help="tiny (0.4M) or a Pythia size's real dimensions and vocabulary",
)
@click.option("--n-train", default=500, show_default=True, help="train pairs per task (their good sentences)")
@click.option("--n-eval", default=200, show_default=True, help="eval pairs per task, never trained on")
@friendly_errors
def make_tiny(out, steps, save_every, shape, **kw):
    """Build a GPT-NeoX with a checkpoint series (OUT/step0 …), the offline stand-in for Pythia."""
    from taskspace import tiny

    seed = kw["seed"]
    source, _, (train, _) = load_split(kw)
    vocab_pairs = data.load_blimp(source, data.select_tasks(source))
    vocab, sentences = tiny.sentences_for_tiny(vocab_pairs, train)
    with progress_bar() as bar:
        job = bar.add_task("training tiny LM", total=steps)
        saved = tiny.build_tiny(
            out,
            vocab,
            sentences,
            steps=steps,
            save_every=save_every,
            seed=seed,
            shape=shape,
            progress=lambda k: bar.advance(job, k),
        )
    console.print(f"saved {', '.join(saved)} under {out}")


def ftgd_options(fn):
    from taskspace.ftgd import FTGDConfig

    d = FTGDConfig()
    return option_group(
        click.option("--objective", default=d.objective, show_default=True, help="differential / margin / lm"),
        click.option("--margin", default=d.margin, show_default=True, help="hinge margin (objective margin)"),
        click.option("--sparsity", default=d.sparsity, show_default=True, help="fraction updated (1.0 = dense)"),
        click.option("--lr", default=d.lr, show_default=True),
        click.option("--steps", default=d.steps, show_default=True),
        click.option("--batch-size", default=d.batch_size, show_default=True, help="pairs per step"),
        click.option("--ftgd-seed", default=d.seed, show_default=True),
        click.option("--early-stop/--no-early-stop", default=d.early_stop, show_default=True),
        click.option(
            "--params",
            "param_group",
            default=d.params,
            show_default=True,
            help="all / embeddings / attention / mlp / layer:N",
        ),
        click.option("--n-train", default=500, show_default=True, help="train pairs per task"),
        click.option("--n-eval", default=200, show_default=True, help="eval pairs per task"),
    )(fn)


def make_ftgd_config(kw: dict):
    from taskspace.ftgd import FTGDConfig

    return FTGDConfig(
        objective=kw.pop("objective"),
        margin=kw.pop("margin"),
        sparsity=kw.pop("sparsity"),
        lr=kw.pop("lr"),
        steps=kw.pop("steps"),
        batch_size=kw.pop("batch_size"),
        seed=kw.pop("ftgd_seed"),
        early_stop=kw.pop("early_stop"),
        params=kw.pop("param_group"),
    )


def matrix_table(tasks: list[str], m, title: str) -> Table:
    t = Table(title=title)
    t.add_column("tuned on ↓ / eval →", overflow="fold")
    for j in range(len(tasks)):
        t.add_column(str(j), justify="right")
    for i, name in enumerate(tasks):
        t.add_row(f"{i} {name}", *(f"{v:+.3f}" for v in m[i]))
    return t


@main.command()
@model_options
@data_options
@ftgd_options
@click.option("--compare/--no-compare", default=False, help="also dense differential and plain LM tuning")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="folder for delta + report")
@friendly_errors
def ftgd(compare, out, **kw):
    """Fine-tune on one task with FTGD; report own-task gain and the LM-loss change on other tasks."""
    import dataclasses

    from taskspace.ftgd import EncodedPairs, finetune, lm_loss
    from taskspace.io import write_json
    from taskspace.scoring import score_pairs, task_accuracy

    cfg = make_ftgd_config(kw)
    _, names, (train, ev) = load_split(kw)
    task = names[0]
    lm = load_lm(kw)
    rows = train.filter(train["task"].to_numpy(zero_copy_only=False) == task)
    pairs = EncodedPairs.of(lm, rows["good"].to_pylist(), rows["bad"].to_pylist())
    own = ev.filter(ev["task"].to_numpy(zero_copy_only=False) == task)
    # held-out grammatical sentences of the *other* tasks, never tuned on
    other = ev.filter(ev["task"].to_numpy(zero_copy_only=False) != task)["good"].to_pylist() or own["good"].to_pylist()
    variants = [("ftgd", cfg)]
    if compare:
        variants += [
            ("dense", dataclasses.replace(cfg, sparsity=1.0)),
            ("lm", dataclasses.replace(cfg, sparsity=1.0, objective="lm")),
        ]
    base_acc = task_accuracy(score_pairs(lm, own))[0]
    base_loss = lm_loss(lm, other)
    report = {"task": task, "model": lm.meta(), "before": {**base_acc, "lm_loss_other": base_loss}, "variants": {}}
    table = Table(title=f"{task}: own-task gain vs LM loss on other tasks' grammatical sentences")
    for col in (
        "tuning",
        "steps",
        "s/step",
        "changed",
        "accuracy",
        "margin",
        "LM loss (others)",
    ):
        table.add_column(col, justify="right")
    for label, vcfg in variants:
        with progress_bar() as bar:
            job = bar.add_task(f"{label} tuning", total=vcfg.steps)
            res = finetune(lm, pairs, vcfg, progress=lambda k, job=job: bar.advance(job, k))
        res.delta.apply(lm.model)
        try:
            acc = task_accuracy(score_pairs(lm, own))[0]
            loss = lm_loss(lm, other)
        finally:
            res.delta.remove(lm.model)
        report["variants"][label] = {
            "config": res.config,
            "after": {**acc, "lm_loss_other": loss},
            "n_changed": res.delta.n_changed,
            "history": res.history,
        }
        table.add_row(
            label,
            str(len(res.history)),
            f"{sum(h['seconds'] for h in res.history) / max(len(res.history), 1):.2f}",
            _count(res.delta.n_changed),
            f"{base_acc['accuracy']:.2f}→{acc['accuracy']:.2f}",
            f"{base_acc['mean_margin']:+.1f}→{acc['mean_margin']:+.1f}",
            f"{base_loss:.2f}→{loss:.2f}",
        )
        if out and label == "ftgd":
            res.delta.meta["task"] = task
            res.delta.save(Path(out) / f"{task}.delta.safetensors")
    out_console.print(table)
    if out:
        write_json(report, Path(out) / f"{task}.ftgd.json")
        console.print(f"wrote {out}")


def probe_options(fn):
    from taskspace.probing import ProbeConfig

    d = ProbeConfig()
    return option_group(
        click.option("--metric", default=d.metric, show_default=True, help="transfer on accuracy / margin"),
        click.option("--grad-params", default=d.grad_params, show_default=True, help="group for gradient sim."),
        click.option(
            "--grad-projection",
            default=d.grad_projection,
            show_default=True,
            help="k: count-sketch size (exact when the gradient has ≤ k entries); 0 = exact",
        ),
        click.option("--eval-batch-size", default=d.eval_batch_size, show_default=True),
    )(fn)


@main.command()
@model_options
@data_options
@ftgd_options
@probe_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@friendly_errors
def probe(metric, grad_params, grad_projection, eval_batch_size, out, **kw):
    """Task spaces: eval1, FTGD per task, eval2 → transfer, gradient-similarity and parameter-sharing matrices."""
    from taskspace.probing import ProbeConfig
    from taskspace.probing import probe as run_probe

    cfg = make_ftgd_config(kw)
    pcfg = ProbeConfig(
        metric=metric, grad_params=grad_params, grad_projection=grad_projection, eval_batch_size=eval_batch_size
    )
    _, names, (train, ev) = load_split(kw)
    lm = load_lm(kw)
    with progress_bar() as bar:
        job = bar.add_task("eval1", total=1 + 2 * len(names))  # eval1, then FTGD and eval2 per task

        def step(stage: str, i: int, n: int) -> None:
            bar.update(job, advance=1, description=f"{stage} {i}/{n}" if n > 1 else stage)

        res = run_probe(lm, train, ev, out, cfg, pcfg, progress=step)
    out_console.print(matrix_table(res["tasks"], res["transfer"], f"transfer ({metric}: eval2 − eval1)"))
    console.print(f"wrote {out}/matrices.npz, probe.json, eval1.parquet, tasks/*/")


@main.group()
def stage() -> None:
    """Pipeline stage bodies (called by dvc.yaml; read params.yaml in the current folder)."""


def _stage_cmd(name: str, per_model: bool):
    def run(model=None, revision=None, params="params.yaml"):
        import time

        from taskspace import pipeline

        t0 = time.perf_counter()
        p = pipeline.load_params(params)
        pipeline.check_runs(p)
        fn = getattr(pipeline, f"stage_{name}")
        say = lambda msg: console.print(msg, highlight=False)  # noqa: E731
        fn(p, model, revision, say=say) if per_model else fn(p, say=say)
        entry = f"@{pipeline.run_key(model, revision)}" if revision else f"@{model}" if model else ""
        say(f"stage {name}{entry} done in {time.perf_counter() - t0:.1f} s")

    opts = [click.option("--params", default="params.yaml", show_default=True)]
    if per_model:
        opts.append(click.option("--model", required=True, help="a key under `models` in params.yaml"))
        opts.append(click.option("--revision", default=None, help="one of its revisions (default: each in turn)"))
    for opt in opts:
        run = opt(run)
    return stage.command(name, help=f"The {name} stage.")(friendly_errors(run))


for _name, _per_model in (("prepare", False), ("eval", True), ("ftgd", True), ("probe", True), ("analyze", False)):
    _stage_cmd(_name, _per_model)


@stage.command("runs")
@click.option("--params", default="params.yaml", show_default=True, type=click.Path(path_type=Path))
@friendly_errors
def stage_runs(params):
    """Rewrite `runs` (one entry per model × revision) from `models`, after editing params.yaml by hand."""
    from taskspace import pipeline

    runs = pipeline.write_runs(params)
    console.print(f"{params}: {len(runs)} runs: {', '.join(runs)}", highlight=False)


@main.command()
@click.option("--db", default="data/index/taskspace.duckdb", show_default=True, type=click.Path(path_type=Path))
@click.option("--data-dir", default="data", show_default=True, type=click.Path(path_type=Path))
@click.option("--analysis", "analysis_file", default="data/analyze/analysis.json", show_default=True)
@click.option("--counts", "counts_only", is_flag=True, help="only report the row counts (read-only, writes nothing)")
@friendly_errors
def index(db, data_dir, analysis_file, counts_only):
    """(Re)build the DuckDB index from the stage outputs: adds new runs only, atomically."""
    import time

    from taskspace.index import Index, IndexUnavailable, build_index

    t0 = time.perf_counter()
    try:
        if counts_only:
            idx = Index(db)
            try:
                counts = idx.counts()
            finally:
                idx.close()
        else:
            counts = build_index(db, data_dir, analysis_file)
    except IndexUnavailable as e:
        raise RuntimeError(str(e)) from None
    t = Table(title=f"{db.name} ({time.perf_counter() - t0:.1f} s)", caption=str(db.parent))
    t.add_column("table")
    t.add_column("rows", justify="right")
    for k, v in counts.items():
        t.add_row(k, f"{v:,}")
    out_console.print(t)


@main.command()
@click.option("--params", default="params.yaml", show_default=True, type=click.Path(path_type=Path))
@click.option("--calibrate/--no-calibrate", default=True, show_default=True, help="time a few steps on this device")
@click.option("--device", default=None, help="device to plan for (default: cuda if available)")
@click.option("--dtype", default=None, help="float32 / bfloat16 (default: bf16 on GPU, fp32 on CPU)")
@click.option("--json", "as_json", is_flag=True, help="print the plan as JSON")
@friendly_errors
def plan(params, calibrate, device, dtype, as_json):
    """What the pipeline in params.yaml will cost: passes, FLOPs, disk, memory and time, per run and in total."""
    import dataclasses
    import json

    from taskspace import pipeline
    from taskspace import plan as P

    p = pipeline.load_params(params)
    runs, warnings = P.plan(p, calibrate, device, dtype, say=lambda m: console.print(m, highlight=False))
    if as_json:
        click.echo(json.dumps({"runs": [dataclasses.asdict(r) for r in runs], "warnings": warnings}, indent=1))
        return
    gb = lambda b: f"{b / P.GiB:.2f}"  # noqa: E731
    t = Table(
        title=f"plan for {params}",
        caption="passes: forward/backward · disk: outputs in GiB (the DVC cache keeps a second copy) · "
        "peak memory in GiB on the device (tuning) and the host (eval2's reduction)",
        box=box.SIMPLE_HEAD,
    )
    for col in ("run", "passes", "FLOP", "disk", "device", "host", "time"):
        t.add_column(col, justify="left" if col == "run" else "right", no_wrap=True)
    for r in runs:
        w = r.workload
        t.add_row(
            r.run,
            f"{_short(w.forward_passes)}/{_short(w.backward_passes)}",
            _si(r.flops),
            gb(sum(r.disk.values())),
            gb(P.device_peak(r)),
            gb(r.memory["reduce"]),
            _duration(r.seconds),
        )
    total = [r.seconds for r in runs]
    fwd, bwd = (sum(getattr(r.workload, k) for r in runs) for k in ("forward_passes", "backward_passes"))
    t.add_section()
    t.add_row(
        f"total ({len(runs)})",
        f"{_short(fwd)}/{_short(bwd)}",
        _si(sum(r.flops for r in runs)),
        gb(sum(sum(r.disk.values()) for r in runs)),
        gb(max(P.device_peak(r) for r in runs)),
        gb(max(r.memory["reduce"] for r in runs)),
        _duration(sum(total) if None not in total else None),
    )
    out_console.print(t)
    for r in {r.model: r for r in runs}.values():
        c, line = r.calibration, f"{r.model}: {_count(r.shape.n_params)} parameters ({r.shape.source})"
        if c:
            line += (
                f"; calibrated on {c.device} {c.dtype}, {c.tokenizer} tokenizer: {1 / c.s_sentence:,.0f} "
                f"sentences/s scoring, {c.s_step:.3f} s per FTGD step, {c.s_grad_pair * 1e3:.1f} ms per "
                "differential pair"
            )
        out_console.print(line, highlight=False)
    for w in warnings:
        console.print(f"[red]warning:[/red] {w}", highlight=False)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


METRIC_COLUMNS = {
    "transfer_mantel_r": "transfer r",
    "transfer_mantel_p": "Mantel p",
    "transfer_contrast": "transfer w−b",
    "gradient_mantel_r": "gradient r",
    "sharing_contrast": "sharing w−b",
}


@main.command()
@click.option("--file", "path", default="data/analyze/metrics.json", show_default=True, type=click.Path(path_type=Path))
@friendly_errors
def metrics(path):
    """The analysis metrics of every run (what `dvc metrics show` lists), one row per run."""
    import json

    from taskspace.analysis import format_stat

    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the pipeline first (./scripts/main.sh or `dvc repro`)")
    runs = json.loads(path.read_text())
    t = Table(title=str(path), caption="fit to the hypothesis space — r: Spearman, w−b: within − between")
    t.add_column("run", no_wrap=True)
    for label in METRIC_COLUMNS.values():
        t.add_column(label, justify="right")
    for run, m in runs.items():
        t.add_row(run, *(format_stat(m.get(k), k) for k in METRIC_COLUMNS))
    out_console.print(t)


@main.command()
@click.option("--db", default="data/index/taskspace.duckdb", show_default=True)
@click.option("--project", default=".", show_default=True, help="the DVC project (for the pipeline screen)")
def tui(db, project):
    """Open the Textual TUI over the index and the DVC project."""
    from tui.app import TaskspaceApp

    TaskspaceApp(db=db, project=project).run()


@main.command()
@click.option(
    "--probe",
    "probes",
    multiple=True,
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="a `taskspace probe` output folder; repeat for a checkpoint series (in order)",
)
@click.option("--blimp", default=None, help="BLiMP source, for task metadata and the lexical control")
@click.option("--grouping", default="phenomenon", show_default=True, help="phenomenon / paper / field / FILE")
@click.option("--permutations", default=1000, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--both-directions", is_flag=True, help="correlate T's off-diagonal both ways, not (T + Tᵀ)/2")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="write analysis.json here")
@friendly_errors
def analyze(probes, blimp, grouping, permutations, seed, both_directions, out):
    """Fit task spaces to the hypothesis space: Mantel test, within−between contrast, lexical control."""
    import json

    from taskspace import analysis as A
    from taskspace.io import write_json
    from taskspace.pipeline import _comparisons, analyze_run, series_stability
    from taskspace.probing import load_matrices

    source = blimp or data.default_source()
    known = data.available_tasks(source)
    series = {"series": []}
    result = {"runs": {}}
    for d in probes:
        if not (d / "matrices.npz").exists():
            raise FileNotFoundError(f"{d}/matrices.npz missing: run `taskspace probe --out {d}` first")
        tasks, mats = load_matrices(d / "matrices.npz")
        summary = json.loads((d / "probe.json").read_text())
        unknown = [t for t in tasks if t not in known]
        if unknown and grouping in ("phenomenon", "paper", "field"):
            raise data.DataError(f"task {unknown[0]} is not in {source}; pass --blimp or a --grouping file")
        if grouping in ("phenomenon", "paper", "field"):
            col = 1 if grouping == "field" else 0
            groups = [known[t][col] for t in tasks]
            groups = [A.paper_phenomenon(g) for g in groups] if grouping == "paper" else groups
        else:
            groups = A.groups_for(tasks, A.load_grouping(grouping))
        pairs = data.load_blimp(source, tasks)
        words = {}
        for t, g, b in zip(*(pairs.column(c).to_pylist() for c in ("task", "good", "bad"))):
            words.setdefault(t, set()).update(A.sentence_words([g, b]))
        kinds = analyze_run(
            tasks, mats, groups, words, float(summary["ftgd"]["sparsity"]), permutations, seed, not both_directions
        )
        result["runs"][str(d)] = kinds
        series["series"].append((str(d), str(d), tasks, mats))
        out_console.print(matrix_table(tasks, mats["transfer"], f"{d}: transfer"))
        out_console.print(fit_table(kinds, f"{d}: fit to the {grouping} hypothesis space"))
    if len(probes) > 1:
        result["comparisons"] = _comparisons(series, permutations, seed)
        result["stability"] = series_stability(series).get("series", {})
        for c in result["comparisons"]:
            r, pval = A.format_stat(c["r"]), A.format_stat(c["p"], "p")
            out_console.print(f"{c['kind']}: {c['a']} vs {c['b']}: r={r} p={pval}")
    if out:
        write_json(result, Path(out) / "analysis.json")
        console.print(f"wrote {out}/analysis.json")


FIT_ROWS = {
    "mantel_r": "Spearman r vs hypothesis",
    "mantel_p": "Mantel p",
    "within": "mean within phenomenon",
    "between": "mean between",
    "contrast": "within − between",
    "contrast_p": "p (within − between)",
    "lexical_r": "r vs lexical overlap",
    "partial_r": "partial r (lexical out)",
}


def fit_table(kinds: dict[str, dict], title: str) -> Table:
    """One column per task space, one row per statistic: fits 80 columns for the four spaces."""
    from taskspace.analysis import format_stat

    t = Table(title=title)
    t.add_column("", no_wrap=True)
    for kind in kinds:
        t.add_column(kind, justify="right")
    for key, label in FIT_ROWS.items():
        t.add_row(label, *(format_stat(s.get(key), key) for s in kinds.values()))
    return t


def _si(x: float) -> str:
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _short(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e4 else str(n)


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n:,}"
