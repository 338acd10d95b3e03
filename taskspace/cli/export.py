"""`taskspace export`: a run's space, a comparison of two runs, or its stability over checkpoints, as a figure
(PNG/SVG/PDF), the cells as CSV, or a run report (Markdown/HTML) — read from the index, rendered off-screen."""

from __future__ import annotations

from pathlib import Path

import click

from taskspace.cli.common import friendly_errors, say
from taskspace.runs import INDEX_DB

DB = str(INDEX_DB)
OUT_HELP = "file to write; its suffix picks the format: .png .svg .pdf (figure), .csv (cells), .md .html (report)"


@click.command()
@click.argument("run")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help=OUT_HELP)
@click.option("--kind", default="transfer", show_default=True, help="which space (see `taskspace tui` help)")
@click.option("--compare", "other", default=None, help="another run: A, B on one scale and A − B (figures)")
@click.option("--stability", is_flag=True, help="the space over the run's checkpoints (figures)")
@click.option("--db", default=DB, show_default=True, type=click.Path(path_type=Path), help="the DuckDB index to read")
@friendly_errors
def export(run, out, kind, other, stability, db):
    """Export RUN (model@revision, its index key model@revision#hash, or a run_id) from the index."""
    from taskspace.errors import ConfigError
    from taskspace.index import Index
    from taskspace.report import export as ex

    suffix = out.suffix.lower()
    if suffix not in (*ex.FIGURE_SUFFIXES, ".csv", ".md", ".html"):
        raise ConfigError(f"--out {out}: use .png, .svg, .pdf, .csv, .md or .html")
    if (other or stability) and suffix not in ex.FIGURE_SUFFIXES:
        raise ConfigError(f"--out {out}: --compare and --stability make figures; use .png, .svg or .pdf")
    idx = Index(db)
    try:
        try:
            a = idx.find_run(run)
            b = idx.find_run(other) if other else None
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if kind not in idx.kinds(a["run_id"]):
            raise ConfigError(f"{a['label']} has no {kind} space (has: {', '.join(idx.kinds(a['run_id']))})")
        metric, groups = idx.metric(a["run_id"]), {t["task"]: t["phenomenon"] for t in idx.tasks()}
        tasks, m = idx.matrix(a["run_id"], kind)
        if stability:
            rows = idx.stability(a["run_id"], kind)
            if len(rows) < 2:
                raise ConfigError(
                    f"{a['label']}: --stability needs a checkpoint series, and {a['model']} has "
                    f"{'one' if rows else 'no'} analysed checkpoint; list several in models.{a['model']}.revisions"
                )
            series = {a["model"]: [{**r, "step": r["step"] if r["step"] is not None else r["position"]} for r in rows]}
            ex.save_figure(ex.stability_figure(series, kind, metric), out)
        elif b:
            tasks_b, mb = idx.matrix(b["run_id"], kind)
            order = [tasks_b.index(t) for t in tasks]
            fig = ex.compare_figure(tasks, m, mb[order][:, order], groups, kind, metric, panel_titles(a, b))
            ex.save_figure(fig, out)
        elif suffix in ex.FIGURE_SUFFIXES:
            ex.save_figure(ex.space_figure(tasks, m, groups, kind, metric, a["index_key"]), out)
        elif suffix == ".csv":
            _write(out, ex.space_csv(tasks, m))
        else:
            _report(idx, a, tasks, m, groups, kind, metric, out)
    finally:
        idx.close()
    say(f"wrote {out}")


def _report(idx, run: dict, tasks, m, groups, kind: str, metric: str, out: Path) -> None:
    import numpy as np

    from taskspace.report import export as ex
    from taskspace.report.labels import unit

    q = idx.matrix(run["run_id"], "transfer_q")[1] if kind == "transfer" else None
    q = q if q is not None and q.size else None  # each cell's paired test, where the run has them
    off = [(tasks[i], tasks[j], float(m[i, j])) + ((float(q[i, j]),) if q is not None else ())
           for i in range(len(tasks)) for j in range(len(tasks)) if i != j]  # fmt: skip
    top = sorted((t for t in off if np.isfinite(t[2])), key=lambda t: -t[2])[:10]
    marked = q < 0.05 if q is not None else None
    fig = ex.space_figure(tasks, m, groups, kind, metric, run["index_key"], marked)
    figure = report_figure(out)
    text = ex.report_markdown(run, idx.analysis(run["run_id"]), top, unit(kind, metric), figure.name)
    if out.suffix.lower() == ".html":
        _write(out, ex.report_html(text, ex.figure_bytes(fig)))  # inlined: no file beside it, none touched
    else:
        ex.save_figure(fig, figure)
        _write(out, text)
        say(f"wrote {figure} (the report's figure)")


def report_figure(out: Path) -> Path:
    """A Markdown report's heatmap: named after the report and the kind of file it is (`x.md` → `x.heatmap.png`),
    so a file the user wrote beside it (`x.png`) is never overwritten."""
    return out.with_name(f"{out.stem}.heatmap.png")


def panel_titles(a: dict, b: dict) -> tuple[str, str]:
    """The compare figure's panel titles: the runs' labels, with the experiment (else the settings hash) where
    both are the same checkpoint under two settings."""
    if a["label"] != b["label"]:
        return a["label"], b["label"]
    return tuple(f"{r['label']} ({r.get('experiment') or '#' + r['params_hash'][:8]})" for r in (a, b))


def _write(path: Path, text: str) -> None:
    from taskspace.io import atomic_write

    atomic_write(path, lambda f: f.write_text(text))
