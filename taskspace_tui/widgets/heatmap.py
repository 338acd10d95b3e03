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
    """T×T matrix with a cell cursor (row = tuned/first task, column = evaluated/second task).

    Line 0 is a header: the axis titles over the row gutter, the phenomenon names over their column blocks and
    `▾` over the cursor's column; `▸` marks the cursor's row. The cursor's cell keeps its colour (a `◆` on it
    when cells are big enough), and the view scrolls to keep it on screen when the space does not fit."""

    BINDINGS = [
        Binding("up", "move(-1, 0)", "up", show=False),
        Binding("down", "move(1, 0)", "down", show=False),
        Binding("left", "move(0, -1)", "left", show=False),
        Binding("right", "move(0, 1)", "right", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "edge(0)", "first task", show=False),
        Binding("end", "edge(1)", "last task", show=False),
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
        self._cols: list[int | None] = []  # layout x → matrix column (None: separator gap)
        self._rows: list[int | None] = []  # half-row → matrix row
        self._gutter = 0  # columns of row labels (or just the row marker) left of the cells
        self._label_at: dict[int, int] = {}  # layout line → the row labelled there
        self._x0 = 0  # first layout column shown (scrolling)
        self._y0 = 0  # first layout line shown
        self._big = False  # cells of ≥ 2×2 characters: the cursor's cell carries a ◆
        self.marked: np.ndarray | None = None  # cells that stand out (q < 0.05 on their own pairs); others faded

    HEADER = 1  # lines above the cells

    def set_data(
        self,
        matrix: np.ndarray,
        groups: list[str],
        scale: Scale | None = None,
        labels: list[str] | None = None,
        marked: np.ndarray | None = None,
    ) -> None:
        """Show a matrix already in display order; groups mark where separators go, labels name the rows; with
        `marked` (a boolean matrix), the unmarked cells are faded, so the marked ones stand out at any size."""
        self.matrix = np.asarray(matrix, dtype=float)
        self.marked = None if marked is None else np.asarray(marked, dtype=bool)
        self.groups = list(groups)
        self.labels = list(labels or [])
        self.scale = scale or Scale.of(self.matrix)
        r, c = self.cursor
        t = len(self.matrix)
        self.cursor = (min(r, max(t - 1, 0)), min(c, max(t - 1, 0)))
        self._layout()
        self.refresh()

    @property
    def _lines(self) -> int:
        return max(self.size.height - self.HEADER, 1)

    def _layout(self) -> None:
        t = len(self.matrix)
        width, height = max(self.size.width, 1), self._lines
        seps = [k for k in range(1, t) if self.groups and self.groups[k] != self.groups[k - 1]]
        ch = max(1, min(MAX_CELL[1], (2 * height - len(seps)) // max(t, 1)))
        # a row can carry its label only when it has a terminal line of its own (≥ 2 half-rows)
        gutter = min(LABEL_WIDTH, max(map(len, self.labels)) + 1) if self.labels and ch >= 2 else 0
        if gutter and (width - gutter - len(seps)) // max(t, 1) < 2:
            gutter = 0  # the cells need the room more than the labels do
        self._gutter = gutter or 1  # at least the cursor row's marker
        cw = max(1, min(MAX_CELL[0], (width - self._gutter - len(seps)) // max(t, 1)))
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
        self._label_at = {(i + 1) // 2: r for r, i in first.items()} if ch >= 2 else {}
        self._big = ch >= 2 and cw >= 2  # the cursor's cell can carry a mark of its own
        self._scroll_to_cursor()

    def _scroll_to_cursor(self) -> None:
        """Move the view the least that shows the cursor's whole cell."""
        r, c = self.cursor
        xs = [x for x, k in enumerate(self._cols) if k == c]
        ys = [y for y, k in enumerate(self._rows) if k == r]
        if not xs or not ys:
            return
        avail_x, avail_y = max(self.size.width - self._gutter, 1), self._lines
        if xs[0] < self._x0:
            self._x0 = xs[0]
        elif xs[-1] >= self._x0 + avail_x:
            self._x0 = xs[-1] - avail_x + 1
        top, bottom = ys[0] // 2, ys[-1] // 2
        if top < self._y0:
            self._y0 = top
        elif bottom >= self._y0 + avail_y:
            self._y0 = bottom - avail_y + 1
        self._x0 = max(0, min(self._x0, max(len(self._cols) - avail_x, 0)))
        self._y0 = max(0, min(self._y0, max((len(self._rows) + 1) // 2 - avail_y, 0)))

    def on_resize(self) -> None:
        self._layout()
        self.refresh()  # redraw at the new size at once, not at the next key

    @property
    def fits(self) -> bool:
        """Whether every cell is on screen (else the view scrolls, and zooming to a phenomenon enlarges)."""
        return self._gutter + len(self._cols) <= self.size.width and len(self._rows) <= 2 * self._lines

    def _visible_cols(self) -> list[int | None]:
        return self._cols[self._x0 : self._x0 + max(self.size.width - self._gutter, 0)]

    def render_line(self, y: int) -> Strip:
        if not len(self.matrix):
            return Strip.blank(self.size.width)
        if y < self.HEADER:
            return self._header()
        line = y - self.HEADER + self._y0
        top = self._rows[2 * line] if 2 * line < len(self._rows) else -1
        bottom = self._rows[2 * line + 1] if 2 * line + 1 < len(self._rows) else -1
        if top == -1:
            return Strip.blank(self.size.width)
        cr, cc = self.cursor
        segments = [Segment(self._label(line, cr, top, bottom))]
        mark = self._mark() if self._big else None
        for x, col in enumerate(self._visible_cols(), start=self._x0):
            up, down = self._cell(top, col), self._cell(bottom, col)
            if (x, line) == mark:  # one ◆ in the middle of the cursor's cell: the cell keeps its colour
                segments.append(Segment("◆", Style(color=_contrast(up), bgcolor=up)))
            else:
                segments.append(Segment("▀", Style(color=up, bgcolor=down)))
        return Strip(segments).extend_cell_length(self.size.width)

    def _mark(self) -> tuple[int, int] | None:
        """(layout x, layout line) of the middle of the cursor's cell, on a line that shows only that row."""
        r, c = self.cursor
        xs = [x for x, k in enumerate(self._cols) if k == c]
        lines = [y // 2 for y, k in enumerate(self._rows) if k == r and y % 2 == 0 and self._rows[y + 1 : y + 2] == [r]]
        return (xs[len(xs) // 2], lines[len(lines) // 2]) if xs and lines else None

    def _header(self) -> Strip:
        """Axis titles over the gutter; each column block's phenomenon; ▾ over the cursor's column."""
        g = self._gutter
        title = "↓ tuned on  evaluated →"
        left = Segment(f"{title[: g - 1]:>{g - 1}} " if g > 1 else " ", Style(dim=True))
        cols = self._visible_cols()
        chars = [" "] * len(cols)
        start = 0
        for x in range(1, len(cols) + 1):  # a block's name written over its own columns only
            if (
                x == len(cols)
                or cols[x] is None
                or cols[start] is None
                or (self.groups and self.groups[cols[x]] != self.groups[cols[start]])
            ):
                if cols[start] is not None and self.groups:
                    name = self.groups[cols[start]][: x - start - 1]
                    chars[start : start + len(name)] = list(name)
                start = x
        text = "".join(chars)
        segments = [left, Segment(text, Style(dim=True))]
        cc = self.cursor[1]
        if cc in cols:
            at = [x for x, k in enumerate(cols) if k == cc]
            x = at[len(at) // 2]  # over the middle of the cursor's column
            segments = [left, Segment(text[:x], Style(dim=True)), Segment("▾", Style(color=CURSOR, bold=True)),
                        Segment(text[x + 1 :], Style(dim=True))]  # fmt: skip
        return Strip(segments).extend_cell_length(self.size.width)

    def _label(self, line: int, cursor_row: int, top, bottom) -> str:
        """A row's task name on the first line whose upper half shows that row; ▸ on the cursor's row."""
        mark = "▸" if cursor_row in (top, bottom) else " "
        if self._gutter == 1:
            return mark
        row = self._label_at.get(line)
        text = shorten(self.labels[row], self._gutter - 1) if row is not None and row < len(self.labels) else ""
        return f"{text:>{self._gutter - 1}}{mark if row == cursor_row or row is None else ' '}"

    def _cell(self, row: int | None, col: int | None) -> Color | None:
        if row == -1:
            return None  # below the matrix: terminal background
        if row is None or col is None:
            return SEPARATOR
        color = self.scale.color(self.matrix[row, col])
        if self.marked is not None and color is not None and not self.marked[row, col]:
            return _fade(color)
        return color

    def action_move(self, dr: int, dc: int) -> None:
        t = len(self.matrix)
        if t:
            r, c = self.cursor
            self.cursor = ((r + dr) % t, (c + dc) % t)

    def action_page(self, direction: int) -> None:
        """A screenful of rows up or down."""
        t = len(self.matrix)
        if t:
            step = max(1, len({k for k in self._rows[: 2 * self._lines] if k is not None}) - 1)
            r, c = self.cursor
            self.cursor = (min(max(r + direction * step, 0), t - 1), c)

    def action_edge(self, end: int) -> None:
        t = len(self.matrix)
        if t:
            self.cursor = (t - 1 if end else 0, self.cursor[1])

    def watch_cursor(self, cursor: tuple[int, int]) -> None:
        self._scroll_to_cursor()
        self.refresh()
        self.post_message(self.CursorMoved(self, *cursor))

    def on_click(self, event) -> None:
        x = event.x - self._gutter + self._x0
        half = 2 * (event.y - self.HEADER + self._y0)
        if event.y >= self.HEADER and 0 <= half < len(self._rows) and self._x0 <= x < len(self._cols):
            row, col = self._rows[half], self._cols[x]
            if row is not None and col is not None:
                self.cursor = (row, col)

    def get_content_height(self, container, viewport, width: int) -> int:
        return self.HEADER + max(1, (len(self._rows) + 1) // 2)


FADED = (48, 48, 48)  # what an unmarked cell is blended towards


def _fade(c: Color, amount: float = 0.65) -> Color:
    r, g, b = c.get_truecolor()
    return Color.from_rgb(*(int(x + (f - x) * amount) for x, f in zip((r, g, b), FADED)))


def _contrast(c: Color | None) -> Color:
    """Black on light cells, white on dark ones."""
    r, g, b = c.get_truecolor() if c else (0, 0, 0)
    return Color.from_rgb(0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else Color.from_rgb(255, 255, 255)


def legend(scale: Scale, width: int = 14) -> list[Segment]:
    """A colour bar with its end values, for the side panel."""
    bar = [
        Segment("█", Style(color=scale.color(scale.lo + (scale.hi - scale.lo) * k / (width - 1)))) for k in range(width)
    ]
    return [Segment(f"{scale.lo:+.3g} "), *bar, Segment(f" {scale.hi:+.3g}")]
