"""Rich tables for results, each fitting 80 columns where it can (statistics named and written by
`taskspace.report.labels`)."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from taskspace.report import labels

# the transfer space's figures (metrics.json has gradient and sharing too); "r" for Mantel r, so nine columns fit 80
METRIC = ("transfer_mantel_r", "transfer_mantel_p", "transfer_p_floor", "transfer_contrast", "transfer_reliability",
          "transfer_above_noise", "self_transfer", "lm_loss_rise")  # fmt: skip
METRIC_COLUMNS = {k: labels.short(k) for k in METRIC} | {"transfer_mantel_r": "r"}


def count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n:,}"


def short(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e4 else str(n)


def si(x: float) -> str:
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def accuracy_table(rows: list[dict], title: str) -> Table:
    t = Table(title=title)
    for col in ("task", "pairs", "accuracy", "mean margin", "ties"):
        t.add_column(col, justify="left" if col == "task" else "right", overflow="fold")
    for r in rows:
        t.add_row(r["task"], str(r["n"]), f"{r['accuracy']:.3f}", f"{r['mean_margin']:+.3f}", str(r["ties"]))
    return t


def matrix_table(tasks: list[str], m, title: str) -> Table:
    t = Table(title=title)
    t.add_column("tuned on ↓ / eval →", overflow="fold")
    for j in range(len(tasks)):
        t.add_column(str(j), justify="right")
    for i, name in enumerate(tasks):
        t.add_row(f"{i} {name}", *(f"{v:+.3f}" for v in m[i]))
    return t


def fit_table(fits: dict, title: str) -> Table:
    """One column per task space, one row per statistic: fits 80 columns for the four spaces."""
    t = Table(title=title)
    t.add_column("", no_wrap=True)
    for kind in fits:
        t.add_column(kind, justify="right")
    for key, label in labels.NAMES.items():
        t.add_row(label, *(labels.format_stat(getattr(f, key), key) for f in fits.values()))
    t.add_row("p from", *(labels.p_source(f.p_exact, f.relabellings) for f in fits.values()))
    t.add_row("tasks left out (NaN)", *(str(len(f.excluded)) for f in fits.values()))
    return t


def impact_table(task: str, outcomes) -> Table:
    t = Table(title=f"{task}: own-task gain vs LM loss on other tasks' grammatical sentences")
    for col in ("tuning", "steps", "s/step", "changed", "accuracy", "margin", "LM loss (others)"):
        t.add_column(col, justify="right")
    for o in outcomes:
        t.add_row(
            o.label,
            str(o.steps),
            f"{o.seconds_per_step:.2f}",
            count(o.n_changed),
            f"{o.before['accuracy']:.2f}→{o.after['accuracy']:.2f}",
            f"{o.before['mean_margin']:+.1f}→{o.after['mean_margin']:+.1f}",
            f"{o.lm_loss_before:.2f}→{o.lm_loss_after:.2f}",
        )
    return t


def metrics_table(runs: dict, title: str) -> Table:
    same = [f"{run} = {m['identical_weights_to']}" for run, m in runs.items() if m.get("identical_weights_to")]
    note = f"\nidentical weights (same checkpoint twice): {', '.join(same)}" if same else ""
    t = Table(
        title=title,
        box=box.SIMPLE_HEAD,  # no cell borders, one space between cells: nine columns fit 80 characters uncut
        padding=0,
        caption=labels.caption(METRIC_COLUMNS) + note,
    )
    t.add_column("run", no_wrap=True)
    for label in METRIC_COLUMNS.values():
        t.add_column(label, justify="right", no_wrap=True)
    for run, m in runs.items():
        t.add_row(run, *(labels.format_metric(m.get(k), k) for k in METRIC_COLUMNS))
    return t


def counts_table(counts: dict, title: str, caption: str) -> Table:
    t = Table(title=title, caption=caption)
    t.add_column("table")
    t.add_column("rows", justify="right")
    for k, v in counts.items():
        t.add_row(k, f"{v:,}")
    return t


def plan_table(runs, title: str) -> Table:
    from taskspace.pipeline.plan import GiB, device_peak

    def gb(b: float) -> str:
        return f"{b / GiB:.2f}"

    estimated = bool(runs) and runs[0].estimate is not None
    t = Table(
        title=title,
        caption="passes: forward/backward · disk: outputs in GiB (the DVC cache keeps a second copy) · "
        "peak memory in GiB on the device (tuning) and of the host process"
        + (f" · est. time: an ESTIMATE for {runs[0].estimate.gpu} from its datasheet" if estimated else ""),
        box=box.SIMPLE_HEAD,
    )
    for col in ("run", "passes", "FLOP", "disk", "device", "host", "est. time" if estimated else "time"):
        t.add_column(col, justify="left" if col == "run" else "right", no_wrap=True)
    for r in runs:
        w = r.workload
        t.add_row(
            r.run,
            f"{short(w.forward_passes)}/{short(w.backward_passes)}",
            si(r.flops),
            gb(sum(r.disk.values())),
            gb(device_peak(r)),
            gb(r.memory["host"]),
            duration(r.seconds),
        )
    total = [r.seconds for r in runs]
    fwd, bwd = (sum(getattr(r.workload, k) for r in runs) for k in ("forward_passes", "backward_passes"))
    t.add_section()
    t.add_row(
        f"total ({len(runs)})",
        f"{short(fwd)}/{short(bwd)}",
        si(sum(r.flops for r in runs)),
        gb(sum(sum(r.disk.values()) for r in runs)),
        gb(max(device_peak(r) for r in runs)),
        gb(max(r.memory["host"] for r in runs)),
        duration(sum(total) if None not in total else None),
    )
    return t


def calibration_line(r) -> str:
    c, line = r.calibration, f"{r.model}: {count(r.shape.n_params)} parameters ({r.shape.source})"
    if c:
        line += (
            f"; calibrated on {c.device} {c.dtype}, {c.tokenizer} tokenizer: {1 / c.s_sentence:,.0f} "
            f"sentences/s scoring, {c.s_step:.3f} s per FTGD step, {c.s_grad_pair * 1e3:.1f} ms per differential pair"
        )
    h = getattr(r, "host_calibration", None)
    if h:
        line += (
            f"; host work timed here ({h.tokenizer} tokenizer): {h.s_host_sentence * 1e6:.0f} µs per sentence "
            f"tokenised/packed/collated, {h.s_reduce:.1f} s for the reduction"
        )
    return line


def transfer_line(r, chosen: str) -> str | None:
    """What the run would take with each `probing.transfer` choice (first order: an approximation)."""
    t = getattr(r, "transfer_seconds", None)
    if not t or any(v is None for v in t.values()):
        return None
    names = {"exact": "exact (eval2)", "linear": "first order", "both": "both"}
    parts = [f"{names[m]} {duration(v)}" + (" ← probing.transfer" if m == chosen else "") for m, v in t.items()]
    return f"{r.model}: transfer " + " · ".join(parts)


def exps_table(rows: list[dict], differ: list[str]) -> Group:
    """Experiments × runs: each experiment's name on a line of its own (whole: names are never cut) with the
    settings that differ written out (`models.tiny.ftgd.lr 0.001`), then its runs' headline metrics in columns
    of one width for every experiment, so they line up down the page; 80 columns suffice."""
    from taskspace.pipeline.experiments import HEADLINE, short

    header = {m: labels.short(m) for m in HEADLINE}
    cells = [[str(r.get("run", "")), *(labels.compact(r.get(m), m) for m in HEADLINE)] for r in rows]
    widths = [max(len(c) for c in col) for col in zip(["run", *header.values()], *cells)]

    def runs_table(show_header: bool) -> Table:
        # runs indented under their experiment's line
        t = Table(box=box.SIMPLE_HEAD if show_header else None, show_header=show_header, show_edge=False)
        t.padding = (0, 0, 0, 2)
        for i, col in enumerate(["run", *header.values()]):
            t.add_column(col, justify="left" if i == 0 else "right", no_wrap=True, width=widths[i])
        return t

    parts: list = [Text("experiments: settings that differ, metrics per run", style="italic"), runs_table(True)]
    by_name: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_name.setdefault(str(r.get("experiment", "")), []).append(i)
    for name, idx in by_name.items():
        line = Text(name, style="bold", overflow="fold")
        for k in differ:
            line.append("  ").append(k, style="dim").append(f" {short(rows[idx[0]].get(k))}")
        t = runs_table(False)
        for i in idx:
            t.add_row(*cells[i])
        parts += [line, t]
    unset = any(r.get(k) is None for r in rows for k in differ)
    parts.append(Text(labels.caption(header) + ("; —: not set (a model's entry: the shared setting applies)"
                                                if unset else ""), style="dim"))  # fmt: skip
    return Group(*parts)
