"""A task-space heatmap drawn with upper-half blocks: two matrix rows per terminal row, one column per char,
so a 67×67 space fits in 67×34 cells. A cell cursor moves with the arrow keys; phenomenon separators are drawn
as gaps between blocks; when rows are tall enough to tell apart, a gutter names each row's task. The widget
only draws; the screen owns the data and listens to CursorMoved."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

# viridis at 9 stops (sequential spaces) and a blue–white–red ramp (spaces with a sign, e.g. transfer)
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
LABEL_WIDTH = 24  # at most, for the row-label gutter
MAX_CELL = (12, 8)  # columns, half-rows: beyond this a small space just floats in empty room


def shorten(name: str, width: int) -> str:
    """Keep both ends of a task name (paradigms differ at the end: `…_1`, `…_2`)."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head) :]


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


class Heatmap(Widget, can_focus=True):
    """T×T matrix with a cell cursor (row = tuned/first task, column = evaluated/second task)."""

    BINDINGS = [
        Binding("up", "move(-1, 0)", "up", show=False),
        Binding("down", "move(1, 0)", "down", show=False),
        Binding("left", "move(0, -1)", "left", show=False),
        Binding("right", "move(0, 1)", "right", show=False),
    ]
    cursor: reactive[tuple[int, int]] = reactive((0, 0))

    class CursorMoved(Message):
        def __init__(self, heatmap: Heatmap, row: int, col: int) -> None:
            super().__init__()
            self.heatmap, self.row, self.col = heatmap, row, col

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.matrix = np.zeros((0, 0))
        self.groups: list[str] = []
        self.labels: list[str] = []
        self.scale = Scale(0, 1, False)
        self._cols: list[int | None] = []  # screen x → matrix column (None: separator gap)
        self._rows: list[int | None] = []  # half-row → matrix row
        self._gutter = 0  # columns of row labels left of the cells
        self._label_at: dict[int, int] = {}  # terminal line → the row labelled there

    def set_data(
        self, matrix: np.ndarray, groups: list[str], scale: Scale | None = None, labels: list[str] | None = None
    ) -> None:
        """Show a matrix already in display order; groups mark where separators go, labels name the rows."""
        self.matrix = np.asarray(matrix, dtype=float)
        self.groups = list(groups)
        self.labels = list(labels or [])
        self.scale = scale or Scale.of(self.matrix)
        r, c = self.cursor
        t = len(self.matrix)
        self.cursor = (min(r, max(t - 1, 0)), min(c, max(t - 1, 0)))
        self._layout()
        self.refresh()

    def _layout(self) -> None:
        t = len(self.matrix)
        width, height = max(self.size.width, 1), max(self.size.height, 1)
        seps = [k for k in range(1, t) if self.groups and self.groups[k] != self.groups[k - 1]]
        ch = max(1, min(MAX_CELL[1], (2 * height - len(seps)) // max(t, 1)))
        # a row can carry its label only when it has a terminal line of its own (≥ 2 half-rows)
        gutter = min(LABEL_WIDTH, max(map(len, self.labels)) + 1) if self.labels and ch >= 2 else 0
        if gutter and (width - gutter - len(seps)) // max(t, 1) < 2:
            gutter = 0  # the cells need the room more than the labels do
        cw = max(1, min(MAX_CELL[0], (width - gutter - len(seps)) // max(t, 1)))
        self._gutter = gutter
        self._cols, self._rows = [], []
        for k in range(t):
            if k in seps:
                self._cols.append(None)
                self._rows.append(None)
            self._cols += [k] * cw
            self._rows += [k] * ch
        first: dict[int, int] = {}  # matrix row → its first half-row
        for i, r in enumerate(self._rows):
            if r is not None:
                first.setdefault(r, i)
        self._label_at = {(i + 1) // 2: r for r, i in first.items()}  # ch ≥ 2: that line's top half is row r

    def on_resize(self) -> None:
        self._layout()
        self.refresh()  # redraw at the new size at once, not at the next key

    @property
    def fits(self) -> bool:
        """Whether every cell is on screen (else the screen suggests zooming to a phenomenon)."""
        return self._gutter + len(self._cols) <= self.size.width and len(self._rows) <= 2 * self.size.height

    def render_line(self, y: int) -> Strip:
        if not len(self.matrix):
            return Strip.blank(self.size.width)
        top = self._rows[2 * y] if 2 * y < len(self._rows) else -1
        bottom = self._rows[2 * y + 1] if 2 * y + 1 < len(self._rows) else -1
        if top == -1:
            return Strip.blank(self.size.width)
        cr, cc = self.cursor
        segments = [Segment(self._label(y, cr))] if self._gutter else []
        segments += [
            Segment("▀", Style(color=self._cell(top, col, cr, cc), bgcolor=self._cell(bottom, col, cr, cc)))
            for col in self._cols[: max(self.size.width - self._gutter, 0)]
        ]
        return Strip(segments).extend_cell_length(self.size.width)

    def _label(self, y: int, cursor_row: int) -> str:
        """A row's task name on the first terminal line whose upper half shows that row, else blanks."""
        row = self._label_at.get(y)
        text = shorten(self.labels[row], self._gutter - 1) if row is not None and row < len(self.labels) else ""
        return f"{text:>{self._gutter - 1}}{'▸' if row == cursor_row else ' '}"

    def _cell(self, row: int | None, col: int | None, cr: int, cc: int) -> Color | None:
        if row == -1:
            return None  # below the matrix: terminal background
        if row is None or col is None:
            return SEPARATOR
        if row == cr and col == cc:
            return CURSOR
        return self.scale.color(self.matrix[row, col])

    def action_move(self, dr: int, dc: int) -> None:
        t = len(self.matrix)
        if t:
            r, c = self.cursor
            self.cursor = ((r + dr) % t, (c + dc) % t)

    def watch_cursor(self, cursor: tuple[int, int]) -> None:
        self.refresh()
        self.post_message(self.CursorMoved(self, *cursor))

    def on_click(self, event) -> None:
        x = event.x - self._gutter
        if 2 * event.y < len(self._rows) and 0 <= x < len(self._cols):
            row, col = self._rows[2 * event.y], self._cols[x]
            if row is not None and col is not None:
                self.cursor = (row, col)

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, (len(self._rows) + 1) // 2)


def legend(scale: Scale, width: int = 14) -> list[Segment]:
    """A colour bar with its end values, for the side panel."""
    bar = [
        Segment("█", Style(color=scale.color(scale.lo + (scale.hi - scale.lo) * k / (width - 1)))) for k in range(width)
    ]
    return [Segment(f"{scale.lo:+.3g} "), *bar, Segment(f" {scale.hi:+.3g}")]
