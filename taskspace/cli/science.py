"""Commands on models and data directly: score, make-tiny, ftgd, probe, analyze."""

from __future__ import annotations

from pathlib import Path

import click

from taskspace.blimp import data
from taskspace.cli.common import (
    check_writable,
    console,
    data_config,
    data_options,
    emit,
    format_option,
    friendly_errors,
    ftgd_config,
    ftgd_options,
    load_lm,
    load_split,
    model_options,
    out_console,
    probe_config,
    probe_options,
    progress_bar,
)
from taskspace.cli.tables import accuracy_table, fit_table, impact_table, matrix_table
from taskspace.errors import ConfigError
from taskspace.lm.shapes import SHAPES


@click.command()
@model_options
@data_options
@click.option("--n", "n_eval", default=100, show_default=True, help="pairs per task (seeded eval split)")
@click.option("--n-train", default=0, show_default=True, help="pairs held out first as the train split")
@click.option("--batch-size", default=128, show_default=True, help="sentences per forward pass")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="write per-pair margins (Parquet)")
@format_option
@friendly_errors
def score(n_eval, n_train, batch_size, out, fmt, **kw):
    """Score minimal pairs: per-task accuracy (good > bad) and per-pair margins."""
    import time

    from taskspace.io import write_parquet
    from taskspace.lm.scoring import score_pairs, task_accuracy

    if out and out.suffix.lower() not in (".parquet", ".pq"):
        raise ConfigError(f"--out {out}: scores are written as Parquet; name the file *.parquet")
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: use an integer ≥ 1")
    if out:
        check_writable(out.parent)  # before the scoring, not after it
    cfg = data_config(kw, n_train, n_eval, n_eval_flag="--n")
    _, (_, pairs) = load_split(cfg, ("--n-train", "--n"))
    lm = load_lm(kw)
    t0 = time.perf_counter()
    with progress_bar() as bar:
        job = bar.add_task("scoring sentences", total=2 * pairs.num_rows)
        scores = score_pairs(lm, pairs, batch_size, lambda k: bar.advance(job, k))
    secs = time.perf_counter() - t0
    rows = task_accuracy(scores)
    title = f"{lm.name}{f'@{lm.revision}' if lm.revision else ''} (prefix {lm.prefix})"
    emit(rows, fmt, lambda: accuracy_table(rows, title))
    console.print(f"{2 * pairs.num_rows} sentences in {secs:.1f} s ({2 * pairs.num_rows / secs:.1f} sentences/s)")
    if out:
        meta = {k: str(v) for k, v in lm.meta().items()}
        write_parquet(scores.replace_schema_metadata({**meta, "source": cfg.source}), out)
        console.print(f"wrote {out}")


@click.command("make-tiny")
@data_options
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="folder for OUT/step0, OUT/step100 …"
)
@click.option("--steps", default=300, show_default=True, help="LM training steps (0: random weights, step0 only)")
@click.option("--save-every", default=100, show_default=True, help="save a checkpoint (OUT/stepN) every N steps")
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
def make_tiny(out, steps, save_every, shape, n_train, n_eval, **kw):
    """Build a GPT-NeoX with a checkpoint series (OUT/step0 …), the offline stand-in for Pythia."""
    import pyarrow as pa

    from taskspace.lm import tiny

    cfg = data_config(kw, n_train, n_eval)
    _, (train, ev) = load_split(cfg)
    vocab, sentences = tiny.sentences_for_tiny(pa.concat_tables([train, ev]), train)
    with progress_bar() as bar:
        job = bar.add_task("training", total=steps)
        saved = tiny.build_tiny(
            out,
            vocab,
            sentences,
            steps=steps,
            save_every=save_every,
            seed=cfg.seed,
            shape=shape,
            progress=lambda k: bar.advance(job, k),
        )
    console.print(f"saved {', '.join(saved)} under {out}")


@click.command()
@model_options
@data_options
@ftgd_options
@click.option("--compare/--no-compare", default=False, help="also dense differential and plain LM tuning")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="folder for delta + report")
@friendly_errors
def ftgd(compare, out, n_train, n_eval, **kw):
    """Fine-tune on one task with FTGD; report own-task gain and the LM-loss change on other tasks."""
    from taskspace.io import write_json
    from taskspace.method import impact
    from taskspace.method.ftgd import EncodedPairs

    cfg = ftgd_config(kw)
    dcfg = data_config(kw, n_train, n_eval).require_train("--n-train")
    if out:
        check_writable(out)
    names, (train, ev) = load_split(dcfg)
    task = names[0]
    lm = load_lm(kw)
    rows = train.filter(train["task"].to_numpy(zero_copy_only=False) == task)
    pairs = EncodedPairs.of(lm, rows["good"].to_pylist(), rows["bad"].to_pylist())
    own = ev.filter(ev["task"].to_numpy(zero_copy_only=False) == task)
    # held-out grammatical sentences of the *other* tasks, never tuned on
    other = ev.filter(ev["task"].to_numpy(zero_copy_only=False) != task)["good"].to_pylist() or own["good"].to_pylist()
    configs = impact.variants(cfg, compare)
    with progress_bar() as bar:
        jobs = {label: bar.add_task(f"{label} tuning", total=c.steps) for label, c in configs}
        outcomes = impact.compare_tuning(lm, pairs, own, other, configs, lambda label, k: bar.advance(jobs[label], k))
    out_console.print(impact_table(task, outcomes))
    if out:
        delta = outcomes[0].delta
        delta.meta["task"] = task
        delta.save(Path(out) / f"{task}.delta.safetensors")
        write_json(impact.report(task, lm.meta(), outcomes), Path(out) / f"{task}.ftgd.json")
        console.print(f"wrote {out}")


@click.command()
@model_options
@data_options
@ftgd_options
@probe_options
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="folder for matrices.npz, probe.json, eval1.parquet and tasks/*/",
)
@friendly_errors
def probe(out, n_train, n_eval, **kw):
    """Task spaces: eval1, FTGD per task, eval2 → transfer, gradient-similarity and parameter-sharing matrices."""
    from taskspace.method.probing import probe as run_probe

    cfg, pcfg = ftgd_config(kw), probe_config(kw)
    check_writable(out)
    names, (train, ev) = load_split(data_config(kw, n_train, n_eval).require_train("--n-train"))
    lm = load_lm(kw)
    with progress_bar() as bar:
        job = bar.add_task("eval1", total=1 + 2 * len(names))  # eval1, then FTGD and eval2 per task

        def step(stage: str, i: int, n: int) -> None:
            bar.update(job, advance=1, description=f"{stage} {i}/{n}" if n > 1 else stage)

        res = run_probe(lm, train, ev, out, cfg, pcfg, progress=step)
    out_console.print(matrix_table(res["tasks"], res["transfer"], f"transfer ({pcfg.metric}: eval2 − eval1)"))
    console.print(f"wrote {out}/matrices.npz, probe.json, eval1.parquet, tasks/*/")


@click.command()
@click.option(
    "--probe",
    "probes",
    multiple=True,
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="a `taskspace probe` output folder; repeat for a checkpoint series (in order)",
)
@click.option("--blimp", default=None, help="BLiMP source, for task metadata and the lexical control")
@click.option(
    "--grouping",
    default="phenomenon",
    show_default=True,
    help="hypothesis space: phenomenon, paper, field, or a task→group FILE",
)
@click.option(
    "--permutations", default=1000, show_default=True, help="random relabellings per test (all of them when few enough)"
)
@click.option("--seed", default=0, show_default=True, help="seed of the permutations")
@click.option("--both-directions", is_flag=True, help="correlate both directions of transfer, not (T + Tᵀ)/2")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="folder for analysis.json")
@friendly_errors
def analyze(probes, blimp, grouping, permutations, seed, both_directions, out):
    """Fit task spaces to the hypothesis space: Mantel test, within−between contrast, lexical control."""
    from taskspace.blimp.words import task_words
    from taskspace.config import AnalysisConfig
    from taskspace.errors import OutputError
    from taskspace.io import read_json, write_json
    from taskspace.report.labels import comparison_summary
    from taskspace.runs import Layout
    from taskspace.stats import spaces
    from taskspace.stats.grouping import GROUPINGS, check_names, load_grouping

    cfg = AnalysisConfig(grouping=grouping, permutations=permutations, seed=seed, symmetric=not both_directions)
    source = blimp or data.default_source()
    meta = {r["task"]: r for r in data.task_table(data.available_tasks(source)).to_pylist()}
    if grouping not in GROUPINGS:  # a task→group file: every row must name a task of the data
        check_names(load_grouping(grouping), meta)
    runs, sparsity = [], {}
    for d in probes:
        layout = Layout.single(d)
        if not layout.matrices.exists():
            raise OutputError(f"{layout.matrices} missing: run `taskspace probe --out {d}` first")
        runs.append((str(d), spaces.TaskSpaces.load(layout.matrices, str(d))))
        summary = read_json(layout.summary, f"rerun `taskspace probe --out {d}`")
        ftgd_settings = summary.get("ftgd") if isinstance(summary, dict) else None
        if not isinstance(ftgd_settings, dict) or "sparsity" not in ftgd_settings:
            raise OutputError(f"{layout.summary}: no ftgd.sparsity recorded; rerun `taskspace probe --out {d}`")
        sparsity[str(d)] = float(ftgd_settings["sparsity"])
    tasks = sorted({t for _, s in runs for t in s.tasks})
    words = task_words([data.load_blimp(source, tasks)])

    def report(s: spaces.TaskSpaces, fits: dict) -> None:
        out_console.print(matrix_table(s.tasks, s.matrices["transfer"], f"{s.key}: transfer"))
        out_console.print(fit_table(fits, f"{s.key}: fit to the {grouping} hypothesis space"))

    # the folders are one series (a checkpoint series when several are given, in order)
    result = spaces.analyze(
        {"series": runs},
        lambda ts: spaces.groups_of(ts, grouping, meta),
        words,
        lambda _, s: sparsity[s.key],
        cfg,
        report,
    )
    for c in result.comparisons:
        out_console.print(comparison_summary(c))
    if out:
        write_json(result.as_json(), Path(out) / "analysis.json")
        console.print(f"wrote {out}/analysis.json")
