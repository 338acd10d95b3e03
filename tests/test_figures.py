"""Figures are paper-ready: no two texts overlap (block names, tick labels, colour bar, titles), every text lies
inside the figure, fonts stay readable at all 67 BLiMP tasks, and axes say what a space's rows and columns are."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from taskspace.blimp.meta import PARADIGMS  # noqa: E402
from taskspace.report import export as ex  # noqa: E402

SIX = ["anaphor_gender_agreement", "anaphor_number_agreement", "adjunct_island", "wh_island",
       "determiner_noun_agreement_with_adj_irregular_1", "distractor_agreement_relational_noun"]  # fmt: skip
ALL = sorted(PARADIGMS)  # 67 tasks in 13 phenomena
GROUPS = {t: p for t, (p, _) in PARADIGMS.items()}


def space(tasks: list[str], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = np.array([GROUPS[t] for t in tasks])
    return (g[:, None] == g[None, :]) * 0.05 + rng.normal(scale=0.02, size=(len(tasks), len(tasks)))


def drawn(fig, monkeypatch, save: bool) -> tuple[list[Text], list, object, list]:
    """Every text drawn, visible and non-empty, and its box as drawn (a tick label outside the axis's range is not
    drawn); the page and every axes' box (heatmaps, colour bars) as drawn. On the canvas, or (`save`) as
    `figure_bytes` writes a file: 150 dpi, cropped to its texts (the last of savefig's draws is the file's)."""
    seen: dict[int, object] = {}
    page: list = []
    draw = Text.draw

    def recording(self, renderer):
        out = draw(self, renderer)
        seen[id(self)] = self.get_window_extent(renderer).frozen()
        page[:] = [self.figure.bbox.frozen(), [ax.get_window_extent(renderer).frozen() for ax in fig.axes]]
        return out

    with monkeypatch.context() as m:
        m.setattr(Text, "draw", recording)
        if save:
            fig.savefig(io.BytesIO(), format="png", dpi=150, bbox_inches="tight")
        else:
            fig.canvas.draw()
    texts = [t for t in fig.findobj(Text) if id(t) in seen and t.get_visible() and t.get_text().strip()]
    return texts, [seen[id(t)] for t in texts], page[0], page[1]


def assert_laid_out(fig, monkeypatch, min_size: float = 6.0) -> list[Text]:
    """No two texts overlap (touching within 1 px is allowed), none lies over a heatmap or colour bar, every one
    lies inside the figure and is at least `min_size` pt: drawn on the canvas, and as saved."""
    for save in (False, True):
        texts, boxes, bbox, axes_boxes = drawn(fig, monkeypatch, save)
        names = [t.get_text() for t in texts]
        outside = [s for s, b in zip(names, boxes, strict=True)
                   if b.x0 < bbox.x0 - 1 or b.y0 < bbox.y0 - 1 or b.x1 > bbox.x1 + 1 or b.y1 > bbox.y1 + 1]  # fmt: skip
        covering = [s for s, b in zip(names, boxes, strict=True) for a in axes_boxes if overlap(b, a)]
        pairs = [(names[i], names[j]) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
                 if overlap(boxes[i], boxes[j])]  # fmt: skip
        small = sorted({t.get_fontsize() for t in texts if t.get_fontsize() < min_size})
        problems = [f"{len(pairs)} overlapping texts, e.g. {pairs[:4]}" if pairs else "",
                    f"{len(covering)} texts over a heatmap or colour bar, e.g. {covering[:4]}" if covering else "",
                    f"{len(outside)} texts outside the figure, e.g. {outside[:4]}" if outside else "",
                    f"font sizes below {min_size} pt: {small}" if small else ""]  # fmt: skip
        assert not any(problems), ("saved: " if save else "canvas: ") + "; ".join(p for p in problems if p)
    return texts


def overlap(a, b) -> bool:
    """Two boxes share more than 1 px both ways."""
    return min(a.x1, b.x1) - max(a.x0, b.x0) > 1 and min(a.y1, b.y1) - max(a.y0, b.y0) > 1


def shown(texts: list[Text]) -> set[str]:
    return {t.get_text() for t in texts}


@pytest.mark.parametrize("tasks", [SIX, ALL], ids=["6 tasks", "67 tasks"])
def test_space_figure_texts_never_overlap_and_stay_inside(tasks, monkeypatch):
    marked = np.abs(space(tasks, 1)) > 0.03
    fig = ex.space_figure(tasks, space(tasks), GROUPS, "transfer", "accuracy", "tiny@step60#abcd", marked)
    try:
        texts = shown(assert_laid_out(fig, monkeypatch))
    finally:
        ex._pyplot().close(fig)
    assert {"tuned on", "evaluated on"} <= texts and {GROUPS[t] for t in tasks} <= texts  # every block named
    assert set(tasks) <= texts  # every task named, at 67 too
    assert any(t.startswith("accuracy") for t in texts)  # the colour bar's unit


@pytest.mark.parametrize("tasks", [SIX, ALL], ids=["6 tasks", "67 tasks"])
def test_compare_figure_texts_never_overlap_and_every_panel_is_titled(tasks, monkeypatch):
    fig = ex.compare_figure(tasks, space(tasks, 0), space(tasks, 1), GROUPS, "transfer", "accuracy",
                            ("tiny@step300", "tiny@step30"))  # fmt: skip
    try:
        texts = shown(assert_laid_out(fig, monkeypatch))
    finally:
        ex._pyplot().close(fig)
    assert {"tiny@step300", "tiny@step30", "tiny@step300 − tiny@step30"} <= texts
    assert {GROUPS[t] for t in tasks} <= texts and {"tuned on", "evaluated on"} <= texts
    assert (set(tasks) <= texts) == (len(tasks) <= ex.NAMED_TASKS)  # past that, the phenomenon blocks are named
    assert any(t.startswith("difference") for t in texts)


@pytest.mark.parametrize("kind", ["gradient", "sharing"])
def test_symmetric_spaces_say_task_on_both_axes(kind, monkeypatch):
    for fig in (ex.space_figure(SIX, space(SIX), GROUPS, kind, "accuracy", "run"),
                ex.compare_figure(SIX, space(SIX), space(SIX, 2), GROUPS, kind, "accuracy", ("a", "b"))):  # fmt: skip
        try:
            texts = assert_laid_out(fig, monkeypatch)
            labels = [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes if ax.get_images()]
            assert labels and all(lab == ("task", "task") for lab in labels)
            assert not {"tuned on", "evaluated on"} & shown(texts)
        finally:
            ex._pyplot().close(fig)


def test_transfer_kinds_say_tuned_on_and_evaluated_on(monkeypatch):
    fig = ex.space_figure(ALL, space(ALL), GROUPS, "transfer_margin", "accuracy", "run")
    try:
        assert_laid_out(fig, monkeypatch)
        (ax,) = [ax for ax in fig.axes if ax.get_images()]
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("evaluated on", "tuned on")
    finally:
        ex._pyplot().close(fig)


def test_figures_are_written_in_every_format(tmp_path):
    for suffix in ex.FIGURE_SUFFIXES:
        fig = ex.compare_figure(SIX, space(SIX), space(SIX, 1), GROUPS, "gradient", "accuracy", ("a", "b"))
        assert ex.save_figure(fig, tmp_path / f"cmp{suffix}").stat().st_size > 1000
