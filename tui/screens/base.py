"""What every data screen shares: loading from the index in a worker and showing failures as a message."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from taskspace.errors import TaskspaceError


class DataScreen(Screen):
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
