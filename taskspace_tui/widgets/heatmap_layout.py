"""What the heatmap widget draws with, apart from drawing: the colour scales, how names and values are shortened
to fit, and the layout that splits the widget's width and height between row labels and cells. Pure functions
over sizes, so the sizing rules can be read (and tested) without a terminal."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style

# viridis at 10 stops (sequential spaces) and a blue–white–red ramp (spaces with a sign, e.g. transfer)
VIRIDIS = [
    (68, 1, 84),
    (72, 40, 120),
    (62, 74, 137),
    (49, 104, 142),
    (38, 130, 142),
    (31, 158, 137),
    (53, 183, 121),
    (109, 205, 89),
    (180, 222, 44),
    (253, 231, 37),
]
DIVERGING = [
    (33, 102, 172),
    (103, 169, 207),
    (209, 229, 240),
    (247, 247, 247),
    (253, 219, 199),
    (239, 138, 98),
    (178, 24, 43),
]
EMPTY = Color.from_rgb(40, 40, 40)  # NaN cells
SEPARATOR = Color.from_rgb(0, 0, 0)  # gaps between phenomenon blocks
CURSOR = Color.from_rgb(255, 0, 255)
FADED = (48, 48, 48)  # what an unmarked cell is blended towards
MAX_CELL_WIDTH = 12  # columns: beyond this a small space just floats in empty room
MAX_ROW_LINES = 3  # terminal lines per matrix row, likewise
MIN_CELL_WIDTH = 5  # what the labels leave each cell (room for a value like +0.4) when they cannot have it all
HEADER = 2  # lines above the cells: phenomenon names, then the columns' numbers (or the cursor's column)


def shorten(name: str, width: int) -> str:
    """Keep both ends of a task name (paradigms differ at the end: `…_1`, `…_2`)."""
    if len(name) <= width:
        return name
    if width <= 1:
        return name[:width]
    head = (width - 1) // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head) :]


def abbreviate(name: str, width: int) -> str:
    """A phenomenon name in `width` columns: whole, else cut with `…` (its start tells blocks apart best), else
    its initials (`determiner_noun_agreement` → `dna`) when even four columns are too many."""
    if len(name) <= width:
        return name
    if width >= 4:
        return name[: width - 1] + "…"
    return "".join(p[:1] for p in re.split(r"[_\-\s]+", name) if p)[:width]


def format_value(x: float, width: int, signed: bool) -> str | None:
    """A cell's value in at most `width` characters, with as many decimals (3 to 1) as fit; signed in a space with
    a sign, so that a column of values reads at a glance. None when it does not fit (or is not a number)."""
    if not np.isfinite(x):
        return None
    for digits in (3, 2, 1):
        s = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
        if len(s) <= width:
            return s
    return None


def ramp(stops: list[tuple[int, int, int]], t: float) -> Color:
    """Colour at t ∈ [0, 1] along a list of RGB stops (linear interpolation)."""
    t = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    f = t - i
    a, b = stops[i], stops[i + 1]
    return Color.from_rgb(*(round(a[k] + (b[k] - a[k]) * f) for k in range(3)))


@dataclass(frozen=True)
class Scale:
    """Value → colour: diverging around 0 when values have both signs, else viridis over [lo, hi]."""

    lo: float
    hi: float
    diverging: bool

    @classmethod
    def of(cls, m: np.ndarray) -> Scale:
        v = m[np.isfinite(m)]
        if v.size == 0:
            return cls(0.0, 1.0, False)
        lo, hi = float(v.min()), float(v.max())
        if lo < 0 < hi:
            bound = max(-lo, hi)
            return cls(-bound, bound, True)
        return cls(lo, hi if hi > lo else lo + 1e-12, False)

    def color(self, x: float) -> Color:
        if not np.isfinite(x):
            return EMPTY
        t = (x - self.lo) / (self.hi - self.lo)
        return ramp(DIVERGING if self.diverging else VIRIDIS, t)


def fade(c: Color, amount: float = 0.65) -> Color:
    r, g, b = c.get_truecolor()
    return Color.from_rgb(*(int(x + (f - x) * amount) for x, f in zip((r, g, b), FADED)))


def contrast(c: Color | None) -> Color:
    """Black on light cells, white on dark ones."""
    r, g, b = c.get_truecolor() if c else (0, 0, 0)
    return Color.from_rgb(0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else Color.from_rgb(255, 255, 255)


def legend(scale: Scale, width: int = 14) -> list[Segment]:
    """A colour bar with its end values, for the side panel."""
    bar = [
        Segment("█", Style(color=scale.color(scale.lo + (scale.hi - scale.lo) * k / (width - 1)))) for k in range(width)
    ]
    return [Segment(f"{scale.lo:+.3g} "), *bar, Segment(f" {scale.hi:+.3g}")]


@dataclass
class Layout:
    """Where each matrix row and column goes. Every row has whole terminal lines of its own (so each can carry its
    label and its cells their values); a gap column, and the upper half of a block's first line, separate the
    phenomenon blocks."""

    cols: list[int | None] = field(default_factory=list)  # layout x → matrix column (None: separator gap)
    lines: list[int] = field(default_factory=list)  # layout line → matrix row
    gap_above: set[int] = field(default_factory=set)  # lines whose upper half is a block separator
    text_at: dict[int, int] = field(default_factory=dict)  # layout line → the row labelled (and valued) there
    start: dict[int, int] = field(default_factory=dict)  # matrix column → its first layout x
    gutter: int = 1  # columns left of the cells: the row label (if named) and the cursor's ▸
    cell_width: int = 1
    numbered: bool = False  # columns carry numbers, and row labels the same numbers


def plan(t: int, groups: list[str], labels: list[str], width: int, height: int, named: bool = True) -> Layout:
    """Split `width` × `height` (the cells' lines, under the header) between labels and cells. Labels get their
    full length when the cells keep at least MIN_CELL_WIDTH columns each (or when half the width is enough for
    them), else half the width, shortened with `…`; columns are numbered when a cell is wide enough for its
    number, and the row labels then carry the same numbers."""
    if t == 0:
        return Layout()
    seps = {k for k in range(1, t) if groups and groups[k] != groups[k - 1]}
    digits = len(str(t))
    longest = max(map(len, labels), default=0) if named else 0

    def split(numbered: bool) -> tuple[int, int]:
        need = longest + (digits + 1 if numbered else 0) + 1 if longest else 1
        gutter = min(need, max(width // 2, width - MIN_CELL_WIDTH * t - len(seps), 1))
        cw = max(1, min(MAX_CELL_WIDTH, (width - gutter - len(seps)) // t))
        return gutter, cw

    gutter, cw = split(True)
    numbered = cw >= digits + 1
    if not numbered:
        gutter, cw = split(False)
    lpr = max(1, min(MAX_ROW_LINES, height // t))
    out = Layout(gutter=gutter, cell_width=cw, numbered=numbered)
    for k in range(t):
        if k in seps:
            out.cols.append(None)
            out.gap_above.add(len(out.lines))
        out.start[k] = len(out.cols)
        out.cols += [k] * cw
        first = len(out.lines)
        out.lines += [k] * lpr
        out.text_at[first + (lpr // 2 if lpr > 1 else 0)] = k  # below the separator's half line when there is room
    return out
