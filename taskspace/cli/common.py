"""What every command shares: consoles, progress bars, one-line errors, and the option groups that build the
library's config objects (so the CLI validates exactly as params.yaml does)."""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import sys

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from taskspace.blimp import data
from taskspace.config import (
    COMPUTE_DTYPES,
    METRICS,
    OBJECTIVES,
    DataConfig,
    FTGDConfig,
    ProbeConfig,
    check_revision,
)
from taskspace.errors import ConfigError, TaskspaceError

console = Console(stderr=True)  # messages and progress
out_console = Console()  # results (tables), so `> file` keeps only them

# Exit codes: 0 done; 1 an error the command explains in one line (data, settings, state, disk: `friendly_errors`);
# 2 a usage error click reports (unknown option, a value outside its choices, a missing argument).
EXIT_ERROR = 1
FORMATS = ("table", "json", "csv")
# the torch dtypes a model loads in (params.yaml's compute.dtype names them fp32 / bf16 / fp16)
DTYPE_NAMES = tuple(name for name in COMPUTE_DTYPES.values() if name)


def say(msg: str) -> None:
    console.print(msg, highlight=False)


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


def format_option(fn):
    """--format table|json|csv: results as a rich table (people) or as JSON / CSV on stdout (scripts)."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table for reading; json or csv on stdout for scripts",
    )(fn)


def emit(rows: list[dict], fmt: str, table) -> None:
    """Results in the chosen format: `table()` builds the rich table only when it is wanted."""
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1, default=str))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(buf.getvalue(), nl=False)
    else:
        out_console.print(table())


def friendly_errors(fn):
    """A TaskspaceError (bad input or state) or an OS error (disk full, read-only folder) ends in one line and
    exit code 1 (EXIT_ERROR), never a traceback; click's usage errors keep their exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TaskspaceError as e:
            console.print(f"[red]error:[/red] {e}", soft_wrap=True, highlight=False)
            sys.exit(EXIT_ERROR)
        except OSError as e:
            where = f" ({e.filename})" if e.filename else ""
            console.print(f"[red]error:[/red] {e.strerror or e}{where}{os_fix(e)}", soft_wrap=True, highlight=False)
            sys.exit(EXIT_ERROR)

    return wrapper


def os_fix(e: OSError) -> str:
    """What to do about an OS error, for its one line: a full disk, a file size limit, no permission."""
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return ": free space on that disk (or write elsewhere) and rerun; nothing half-written was kept"
    if e.errno == errno.EFBIG:
        return ": the file outgrew this process's file-size limit (ulimit -f) or the filesystem's; raise it and rerun"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ": that path is not writable (or readable) by you; fix its permissions or choose another path"
    return ""


def check_writable(folder) -> None:
    """Refuse an output folder that cannot be written, before any work is done for it."""
    import os
    from pathlib import Path

    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise ConfigError(f"{existing} is a file, not a folder: choose another --out")
    if not os.access(existing, os.W_OK):
        raise ConfigError(f"{existing.resolve()} is not writable: choose another --out")


def option_group(*opts):
    """One decorator applying several click options in the order listed."""

    def apply(fn):
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return apply


# ---- models ---------------------------------------------------------------------------------------------

model_options = option_group(
    click.option(
        "--model",
        "model_spec",
        default="smollm2",
        show_default=True,
        help="hub id, local folder, GGUF file, 'smollm2' or 'gemma3-270m' (offline, bundled)",
    ),
    click.option("--revision", default=None, help="hub revision (Pythia: stepN) or local sub-folder"),
    click.option("--prefix", default=None, help="prefix token (default: <|endoftext|>, else BOS)"),
    click.option("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)"),
    click.option(
        "--dtype",
        default=None,
        type=click.Choice(DTYPE_NAMES),
        help="precision of the weights (default: bfloat16 on GPU, float32 on CPU)",
    ),
    click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model (pays on a GPU)"),
)


def load_lm(kw: dict):
    """Consume the model options and load the model (with a spinner: GGUF conversion can take ~20 s)."""
    from taskspace.lm.models import load_model

    spec, revision = kw.pop("model_spec"), kw.pop("revision")
    if revision is not None:
        check_revision(revision, "--revision")
    with console.status(f"loading {spec}{f'@{revision}' if revision else ''}"):
        return load_model(
            spec,
            revision=revision,
            device=kw.pop("device"),
            dtype=kw.pop("dtype"),
            prefix=kw.pop("prefix"),
            compile=kw.pop("compile_model"),
        )


# ---- data -----------------------------------------------------------------------------------------------

data_options = option_group(
    click.option("--blimp", default=None, help="BLiMP JSONL folder, or 'hub' [default: shared folder]"),
    click.option("--tasks", default="", help="comma-separated paradigms"),
    click.option("--phenomena", default="", help="comma-separated phenomena (linguistics_term)"),
    click.option("--fields", default="", help="comma-separated fields"),
    click.option("--seed", default=0, show_default=True, help="split seed"),
)


def _csv(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


DATA_FLAGS = {"data.n_train": "--n-train", "data.n_eval": "--n-eval", "data.seed": "--seed", "data.tasks": "--tasks",
              "data.phenomena": "--phenomena", "data.fields": "--fields"}  # fmt: skip


def as_flags(flags: dict[str, str]):
    """Build a config from options: a refused value is named by the option typed (`--n = 0`), not by the
    params.yaml key the same check serves (`data.n_eval = 0`)."""

    @contextlib.contextmanager
    def renamed():
        try:
            yield
        except ConfigError as e:
            text = str(e)
            for key, flag in flags.items():
                if text.startswith(f"{key} = "):
                    raise ConfigError(f"{flag} = {text.removeprefix(f'{key} = ')}") from None
            raise

    return renamed()


def data_config(kw: dict, n_train: int, n_eval: int, n_eval_flag: str = "--n-eval") -> DataConfig:
    """Consume the data options into a DataConfig (validated as params.yaml's `data` is, named by the options)."""
    with as_flags({**DATA_FLAGS, "data.n_eval": n_eval_flag}):
        return DataConfig(
            source=kw.pop("blimp") or data.default_source(),
            tasks=_csv(kw.pop("tasks")),
            phenomena=_csv(kw.pop("phenomena")),
            fields=_csv(kw.pop("fields")),
            n_train=n_train,
            n_eval=n_eval,
            seed=kw.pop("seed"),
        )


def load_split(cfg: DataConfig, flags: tuple[str, str] = ("--n-train", "--n-eval")):
    """(selected task names, (train, eval)) for a data config; too few pairs is named by the options `flags`."""
    names = data.select_tasks(cfg.source, cfg.tasks, cfg.phenomena, cfg.fields)
    pairs = data.load_blimp(cfg.source, names)
    return names, data.split_pairs(pairs, cfg.n_train, cfg.n_eval, cfg.seed, flags)


# ---- FTGD and probing -----------------------------------------------------------------------------------

_F, _P = FTGDConfig(), ProbeConfig()
ftgd_options = option_group(
    click.option(
        "--objective",
        default=_F.objective,
        show_default=True,
        type=click.Choice(OBJECTIVES),
        help="differential: raise logp(good) − logp(bad); margin: a hinge on it (--margin); lm: plain LM loss on good",
    ),
    click.option("--margin", default=_F.margin, show_default=True, help="hinge margin (--objective margin)"),
    click.option("--sparsity", default=_F.sparsity, show_default=True, help="fraction updated (1.0 = dense)"),
    click.option("--lr", default=_F.lr, show_default=True, help="learning rate (AdamW)"),
    click.option("--steps", default=_F.steps, show_default=True, help="tuning steps per task"),
    click.option("--batch-size", default=_F.batch_size, show_default=True, help="pairs per step"),
    click.option("--ftgd-seed", default=_F.seed, show_default=True, help="seed of the batches drawn for tuning"),
    click.option(
        "--early-stop/--no-early-stop",
        default=_F.early_stop,
        show_default=True,
        help=f"stop once {_F.patience} steps in a row get every pair of their batch right (not with --objective lm)",
    ),
    click.option(
        "--params",
        "param_group",
        default=_F.params,
        show_default=True,
        help="parameters tuned: all / embeddings / attention / mlp / layer:N",
    ),
    click.option("--n-train", default=500, show_default=True, help="train pairs per task"),
    click.option("--n-eval", default=200, show_default=True, help="eval pairs per task"),
)


FTGD_FLAGS = {f"ftgd.{k}": f"--{k.replace('_', '-')}" for k in ("objective", "margin", "sparsity", "lr", "steps",
                                                                  "batch_size", "early_stop")}  # fmt: skip


def ftgd_config(kw: dict) -> FTGDConfig:
    """Consume the FTGD options into an FTGDConfig (validated as params.yaml's `ftgd` is, named by the options)."""
    with as_flags({**FTGD_FLAGS, "ftgd.seed": "--ftgd-seed", "ftgd.params": "--params"}):
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


probe_options = option_group(
    click.option(
        "--metric",
        default=_P.metric,
        show_default=True,
        type=click.Choice(METRICS),
        help="what transfer measures: accuracy or mean margin",
    ),
    click.option(
        "--grad-params",
        default=_P.grad_params,
        show_default=True,
        help="parameter group for gradient similarity: all / embeddings / attention / mlp / layer:N",
    ),
    click.option(
        "--grad-projection",
        default=_P.grad_projection,
        show_default=True,
        help="k: count-sketch size (exact when the gradient has ≤ k entries); 0 = exact",
    ),
    click.option("--eval-batch-size", default=_P.eval_batch_size, show_default=True, help="sentences per forward pass"),
)


PROBE_FLAGS = {f"probing.{k}": f"--{k.replace('_', '-')}" for k in ("metric", "grad_params", "grad_projection",
                                                                     "eval_batch_size")}  # fmt: skip


def probe_config(kw: dict) -> ProbeConfig:
    """Consume the probing options into a ProbeConfig (validated as params.yaml's `probing` is, named by the
    options)."""
    with as_flags(PROBE_FLAGS):
        return ProbeConfig(
            metric=kw.pop("metric"),
            grad_params=kw.pop("grad_params"),
            grad_projection=kw.pop("grad_projection"),
            eval_batch_size=kw.pop("eval_batch_size"),
        )
