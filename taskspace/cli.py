"""`taskspace` command line: each verb is a thin shell over the library, used by people and DVC stages."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from taskspace import data

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
        except (data.DataError, ModelError, FileNotFoundError) as e:
            console.print(f"[red]error:[/red] {e}", soft_wrap=True, highlight=False)
            sys.exit(2)

    return wrapper


def model_options(fn):
    for opt in reversed(
        [
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
        ]
    ):
        fn = opt(fn)
    return fn


def data_options(fn):
    for opt in reversed(
        [
            click.option("--blimp", default=None, help="BLiMP JSONL folder, or 'hub' [default: shared folder]"),
            click.option("--tasks", default="", help="comma-separated paradigms"),
            click.option("--phenomena", default="", help="comma-separated phenomena (linguistics_term)"),
            click.option("--fields", default="", help="comma-separated fields"),
            click.option("--seed", default=0, show_default=True, help="split seed"),
        ]
    ):
        fn = opt(fn)
    return fn


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def load_tasks(blimp, tasks, phenomena, fields) -> tuple[str, list[str]]:
    source = blimp or data.default_source()
    return source, data.select_tasks(source, _csv(tasks), _csv(phenomena), _csv(fields))


def load_lm(model_spec, revision, prefix, device, dtype):
    from taskspace.models import load_model

    with console.status(f"loading {model_spec}{f'@{revision}' if revision else ''}"):
        return load_model(model_spec, revision=revision, device=device, dtype=dtype, prefix=prefix)


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
@click.option("--batch-size", default=32, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="write per-pair margins (Parquet)")
@friendly_errors
def score(
    model_spec, revision, prefix, device, dtype, blimp, tasks, phenomena, fields, seed, n_eval, n_train, batch_size, out
):
    """Score minimal pairs: per-task accuracy (good > bad) and per-pair margins."""
    import time

    from taskspace.io import write_parquet
    from taskspace.scoring import score_pairs, task_accuracy

    source, names = load_tasks(blimp, tasks, phenomena, fields)
    pairs = data.load_blimp(source, names)
    _, pairs = data.split_pairs(pairs, n_train, n_eval, seed)
    lm = load_lm(model_spec, revision, prefix, device, dtype)
    t0 = time.perf_counter()
    with progress_bar() as bar:
        job = bar.add_task("scoring sentences", total=2 * pairs.num_rows)
        scores = score_pairs(lm, pairs, batch_size, lambda k: bar.advance(job, k))
    secs = time.perf_counter() - t0
    rows = task_accuracy(scores)
    out_console.print(accuracy_table(rows, f"{lm.name}{f'@{revision}' if revision else ''} (prefix {lm.prefix})"))
    console.print(f"{2 * pairs.num_rows} sentences in {secs:.1f} s ({2 * pairs.num_rows / secs:.1f} sentences/s)")
    if out:
        meta = {k: str(v) for k, v in lm.meta().items()}
        write_parquet(scores.replace_schema_metadata({**meta, "source": str(source)}), out)
        console.print(f"wrote {out}")


@main.command("make-tiny")
@data_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--steps", default=300, show_default=True)
@click.option("--save-every", default=100, show_default=True)
@click.option("--n-train", default=500, show_default=True, help="train pairs per task (their good sentences)")
@click.option("--n-eval", default=200, show_default=True, help="eval pairs per task, never trained on")
@friendly_errors
def make_tiny(blimp, tasks, phenomena, fields, seed, out, steps, save_every, n_train, n_eval):
    """Build the tiny GPT-NeoX with a checkpoint series (OUT/step0 …), the offline stand-in for Pythia."""
    from taskspace import tiny

    source, names = load_tasks(blimp, tasks, phenomena, fields)
    vocab_pairs = data.load_blimp(source, data.select_tasks(source))
    train, _ = data.split_pairs(data.load_blimp(source, names), n_train, n_eval, seed)
    vocab, sentences = tiny.sentences_for_tiny(vocab_pairs, train)
    with progress_bar() as bar:
        job = bar.add_task("training tiny LM", total=steps)
        saved = tiny.build_tiny(
            out, vocab, sentences, steps=steps, save_every=save_every, seed=seed, progress=lambda k: bar.advance(job, k)
        )
    console.print(f"saved {', '.join(saved)} under {out}")
