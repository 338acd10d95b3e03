"""What the screens share: their keys (each screen's own, plus the back key) and, for data screens, loading from
the index in a worker and showing failures as a message."""

from __future__ import annotations

from typing import ClassVar

from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from taskspace.errors import TaskspaceError
from taskspace_tui.keys import BACK, Key, bindings


class KeyedScreen(Screen):
    """A screen that declares its keys once, in `KEYS` (`NAME` titles them in help and the palette); its bindings
    are made from them, followed by the back key (escape) unless `BACK` is false (the first screen)."""

    NAME: ClassVar[str] = ""
    KEYS: ClassVar[list[Key]] = []
    BACK: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs) -> None:
        if "KEYS" in cls.__dict__:  # before Textual merges the class's BINDINGS
            cls.BINDINGS = bindings(cls.KEYS + ([BACK] if cls.BACK else []))
        super().__init_subclass__(**kwargs)


class DataScreen(KeyedScreen):
    """Subclasses implement `fetch(index)` (runs in a thread, returns the screen's data as one dataclass) and
    `show(data)` (on the UI thread). A TaskspaceError from fetch (missing index, locked, no matrices…) is shown
    as its one-line message; anything else with its type."""

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        self.run_worker(self._fetch, thread=True, exclusive=True, group="load", exit_on_error=False)

    def _fetch(self):
        index = self.app.open_index()
        try:
            return self.fetch(index)
        finally:
            index.close()

    def fetch(self, index):  # pragma: no cover - abstract
        raise NotImplementedError

    def show(self, data) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "load":
            return
        if event.state == WorkerState.SUCCESS:
            self.show(event.worker.result)
        elif event.state == WorkerState.ERROR:
            err = event.worker.error
            msg = str(err) if isinstance(err, TaskspaceError) else f"{type(err).__name__}: {err}"
            self.show_message(msg)

    def show_message(self, msg: str) -> None:
        """Empty and bad states: one clear line instead of the data, never a traceback."""
        for w in self.query(".message"):
            w.update(msg)
            w.display = True
            return
        self.notify(msg, severity="error")


def message_box(id: str = "message") -> Static:
    box = Static("", id=id, classes="message")
    box.display = False
    return box
