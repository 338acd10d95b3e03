"""A task-space heatmap that uses the room it has: row labels as long as the task names when the width allows,
phenomenon names over their column blocks, numbered columns keyed to the numbered row labels, and each cell's
value written in it when the cell is wide enough. Every matrix row has whole terminal lines (so every visible row
is labelled, even in a 67-task space that scrolls). The widget only draws; the screen owns the data and listens
to CursorMoved. Sizing rules, colours and formats live in `heatmap_layout`."""

from __future__ import annotations

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from taskspace_tui.widgets.heatmap_layout import (
    CURSOR,
    HEADER,
    SEPARATOR,
    Layout,
    Scale,
    abbreviate,
    contrast,
    fade,
    format_value,
    legend,
    plan,
    shorten,
)

__all__ = ["Heatmap", "Scale", "legend", "shorten"]

TITLES = ("↓ tuned on · evaluated →", "↓ tuned · evaluated →", "↓ tuned · eval →", "↓ · →")  # the longest that fits
DIM = Style(dim=True)
CURSOR_STYLE = Style(color=CURSOR, bold=True)


class Heatmap(Widget, can_focus=True):
    """T×T matrix with a cell cursor (row = tuned/first task, column = evaluated/second task).

    Header line 0: the axis titles over the row gutter, each column block's phenomenon (whole when it fits); line
    1: the columns' numbers (the cursor's highlighted), or, where cells are too narrow for numbers, `▾` over the
    cursor's column with its task's name. `▸` marks the cursor's row; the cursor's cell keeps its colour (its
    value in bold underline, or a `◆`), and the view scrolls to keep it on screen when the space does not fit."""

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
    HEADER = HEADER

    class CursorMoved(Message):
        def __init__(self, heatmap: Heatmap, row: int, col: int) -> None:
            super().__init__()
            self.heatmap, self.row, self.col = heatmap, row, col

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.matrix = np.zeros((0, 0))
        self.groups: list[str] = []
        self.labels: list[str] = []
        self.named = True  # whether the gutter shows the labels (compare: only the leftmost map does)
        self.scale = Scale(0, 1, False)
        self.marked: np.ndarray | None = None  # cells that stand out (q < 0.05 on their own pairs); others faded
        self.grid = Layout()
        self._x0 = 0  # first layout column shown (scrolling)
        self._y0 = 0  # first layout line shown

    def set_data(
        self,
        matrix: np.ndarray,
        groups: list[str],
        scale: Scale | None = None,
        labels: list[str] | None = None,
        marked: np.ndarray | None = None,
        named: bool = True,
    ) -> None:
        """Show a matrix already in display order; groups mark where separators go, labels name the rows (in the
        gutter unless `named` is false: a map beside a labelled one); with `marked` (a boolean matrix), the
        unmarked cells are faded, so the marked ones stand out at any size."""
        self.matrix = np.asarray(matrix, dtype=float)
        self.marked = None if marked is None else np.asarray(marked, dtype=bool)
        self.groups, self.labels, self.named = list(groups), list(labels or []), named
        self.scale = scale or Scale.of(self.matrix)
        r, c = self.cursor
        t = len(self.matrix)
        self.cursor = (min(r, max(t - 1, 0)), min(c, max(t - 1, 0)))
        self._layout()
        self.refresh()

    # -- layout and scrolling ---------------------------------------------------------------------------------
    @property
    def _lines(self) -> int:
        return max(self.size.height - HEADER, 1)

    @property
    def _cols(self) -> list[int | None]:
        return self.grid.cols

    @property
    def _gutter(self) -> int:
        return self.grid.gutter

    def _layout(self) -> None:
        named = self.named and bool(self.labels)
        self.grid = plan(len(self.matrix), self.groups, self.labels, max(self.size.width, 1), self._lines, named)
        self._scroll_to_cursor()

    def _scroll_to_cursor(self) -> None:
        """Move the view the least that shows the cursor's whole cell."""
        r, c = self.cursor
        lay = self.grid
        if c not in lay.start or r not in lay.lines:
            return
        x0, x1 = lay.start[c], lay.start[c] + lay.cell_width - 1
        y0 = lay.lines.index(r)
        y1 = y0 + lay.lines.count(r) - 1
        avail_x, avail_y = max(self.size.width - lay.gutter, 1), self._lines
        if x0 < self._x0:
            self._x0 = x0
        elif x1 >= self._x0 + avail_x:
            self._x0 = x1 - avail_x + 1
        if y0 < self._y0:
            self._y0 = y0
        elif y1 >= self._y0 + avail_y:
            self._y0 = y1 - avail_y + 1
        self._x0 = max(0, min(self._x0, max(len(lay.cols) - avail_x, 0)))
        self._y0 = max(0, min(self._y0, max(len(lay.lines) - avail_y, 0)))

    def on_resize(self) -> None:
        self._layout()
        self.refresh()  # redraw at the new size at once, not at the next key

    @property
    def fits(self) -> bool:
        """Whether every cell is on screen (else the view scrolls, and zooming to a phenomenon enlarges)."""
        lay = self.grid
        return lay.gutter + len(lay.cols) <= self.size.width and len(lay.lines) <= self._lines

    def _visible_cols(self) -> list[int | None]:
        return self.grid.cols[self._x0 : self._x0 + max(self.size.width - self.grid.gutter, 0)]

    def visible_rows(self) -> list[int]:
        """The matrix rows with a line on screen, top to bottom."""
        return list(dict.fromkeys(self.grid.lines[self._y0 : self._y0 + self._lines]))

    # -- drawing ----------------------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        if not len(self.matrix):
            return Strip.blank(self.size.width)
        if y < HEADER:
            return (self._header if y == 0 else self._columns)().extend_cell_length(self.size.width)
        lay, line = self.grid, y - HEADER + self._y0
        if line >= len(lay.lines):
            return Strip.blank(self.size.width)
        row, cr = lay.lines[line], self.cursor[0]
        text_row = lay.text_at.get(line)
        segments = [self._label(text_row, row == cr)]
        values = text_row is not None and lay.cell_width >= 4  # room for a value of at least 3 characters
        gap = line in lay.gap_above
        texts: dict[int, str] = {}  # column → what its cell shows on this line
        for x, col in enumerate(self._visible_cols(), start=self._x0):
            if col is None:
                segments.append(Segment(" ", Style(bgcolor=SEPARATOR)))
                continue
            color = self._cell(row, col)
            if text_row is not None and col not in texts:
                texts[col] = self.cell_text(row, col)
            text, offset = texts.get(col, ""), x - lay.start[col]
            char = text[offset] if offset < len(text) else ""
            if char.strip():
                cursor = (row, col) == self.cursor
                style = Style(color=contrast(color), bgcolor=color, bold=cursor, underline=cursor and values)
                segments.append(Segment(char, style))
            elif gap:
                segments.append(Segment("▀", Style(color=SEPARATOR, bgcolor=color)))
            else:
                segments.append(Segment(" ", Style(bgcolor=color)))
        return Strip(segments).extend_cell_length(self.size.width)

    def cell_text(self, row: int, col: int) -> str:
        """What the cell shows on its row's text line: its value right-aligned (a gap column after it) when the
        cell is wide enough, else `◆` in the middle of the cursor's cell."""
        cw = self.grid.cell_width
        s = format_value(float(self.matrix[row, col]), cw - 1, self.scale.diverging) if cw >= 4 else None
        if s is not None:
            return f"{s:>{cw - 1}} "
        if (row, col) == self.cursor and cw >= 2:
            return " " * ((cw - 1) // 2) + "◆" + " " * (cw - 1 - (cw - 1) // 2)
        return ""

    def _label(self, row: int | None, cursor_row: bool) -> Segment:
        """A row's task name (and number) on its text line; ▸ on each line of the cursor's row."""
        lay = self.grid
        mark = "▸" if cursor_row else " "
        if lay.gutter == 1:
            return Segment(mark, CURSOR_STYLE)
        text = ""
        if row is not None and row < len(self.labels):
            number = f" {row + 1:>{len(str(len(self.matrix)))}}" if lay.numbered else ""
            text = shorten(self.labels[row], lay.gutter - 1 - len(number)) + number
        style = Style(bold=True, color=CURSOR) if cursor_row else Style()
        return Segment(f"{text:>{lay.gutter - 1}}{mark}", style)

    def _header(self) -> Strip:
        """The axis titles over the gutter; each column block's phenomenon over the part of it on screen."""
        g = self.grid.gutter
        cols = self._visible_cols()
        chars = [" "] * len(cols)
        start = 0
        for x in range(1, len(cols) + 1):
            a, b = cols[start], cols[x] if x < len(cols) else None
            if b is None or a is None or self._group(a) != self._group(b):
                if a is not None and self.groups:
                    name = abbreviate(self.groups[a], x - start)
                    chars[start : start + len(name)] = list(name)
                start = x
        title = next((t for t in TITLES if len(t) < g), "")
        left = f"{title:<{g}}"
        return Strip([Segment(left, DIM), Segment("".join(chars), Style(bold=True))])

    def _group(self, col: int) -> str:
        return self.groups[col] if self.groups else ""

    def _columns(self) -> Strip:
        """The columns' numbers (the cursor's on the cursor colour), or ▾ over the cursor's column and its name."""
        lay, cc = self.grid, self.cursor[1]
        cols = self._visible_cols()
        segments = [Segment(" " * lay.gutter)]
        if lay.numbered:
            x = 0
            while x < len(cols):
                col = cols[x]
                if col is None:
                    segments.append(Segment(" "))
                    x += 1
                    continue
                span = lay.start[col] + lay.cell_width - (x + self._x0)  # the part of this cell on screen
                text = f"{col + 1:^{lay.cell_width}}"[-span:]
                segments.append(Segment(text, Style(reverse=True, bold=True, color=CURSOR) if col == cc else DIM))
                x += span
            return Strip(segments)
        at = [x for x, k in enumerate(cols) if k == cc]
        if not at:
            return Strip(segments)
        x = at[len(at) // 2]
        name = self.labels[cc] if cc < len(self.labels) else ""
        room_right, room_left = len(cols) - x - 2, x - 1
        if len(name) <= room_right or room_right >= room_left:
            name = shorten(name, max(room_right, 0))
            segments += [Segment(" " * x), Segment("▾", CURSOR_STYLE), Segment(f" {name}" if name else "", DIM)]
        else:
            name = shorten(name, room_left)
            segments += [Segment(f"{name:>{x - 1}} ", DIM), Segment("▾", CURSOR_STYLE)]
        return Strip(segments)

    def _cell(self, row: int | None, col: int | None) -> Color | None:
        if row is None or col is None:
            return SEPARATOR
        color = self.scale.color(self.matrix[row, col])
        if self.marked is not None and not self.marked[row, col]:
            return fade(color)
        return color

    # -- keys and mouse ---------------------------------------------------------------------------------------
    def action_move(self, dr: int, dc: int) -> None:
        t = len(self.matrix)
        if t:
            r, c = self.cursor
            self.cursor = ((r + dr) % t, (c + dc) % t)

    def action_page(self, direction: int) -> None:
        """A screenful of rows up or down."""
        t = len(self.matrix)
        if t:
            step = max(1, len(set(self.grid.lines[: self._lines])) - 1)
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
        lay = self.grid
        x = event.x - lay.gutter + self._x0
        line = event.y - HEADER + self._y0
        if event.y >= HEADER and 0 <= line < len(lay.lines) and self._x0 <= x < len(lay.cols):
            col = lay.cols[x]
            if col is not None:
                self.cursor = (lay.lines[line], col)

    def get_content_height(self, container, viewport, width: int) -> int:
        return HEADER + max(1, len(self.grid.lines))
