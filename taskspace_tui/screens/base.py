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


def trust_lines(kind: str, s: dict[str, float], transfer: dict[str, float], brief: bool = False) -> list[str]:
    """How far a space can be trusted: its reliability over replicates and, for transfer, the control's noise
    floor and the low-impact figures; or which setting would measure them (brief: n/a, and no low impact)."""
    if s.get("reliability_sb") is not None:
        lines = [f"reliability: {s['reliability_sb']:.2f} (split-half {s.get('reliability', float('nan')):.2f})"]
    else:
        lines = ["reliability: n/a" + ("" if brief else " (one replicate; set probing.ftgd_seeds)")]
    if kind != "transfer":
        return lines
    if transfer.get("noise_floor") is not None:
        above, cells = int(transfer.get("cells_above_noise") or 0), int(transfer.get("cells") or 0)
        lines.append(f"noise floor: {transfer['noise_floor']:.4f}; {above} of {cells} cells above")
    else:
        lines.append("noise floor: n/a" + ("" if brief else " (no control; set probing.control)"))
    if not brief and transfer.get("self_transfer") is not None and transfer.get("lm_loss_rise") is not None:
        lines.append(f"own-task gain {transfer['self_transfer']:+.3f}, LM-loss rise {transfer['lm_loss_rise']:+.3f}")
    return lines
