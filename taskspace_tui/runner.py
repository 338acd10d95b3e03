"""DVC as a process: one pipeline command at a time in a project, its output line by line, cancelled as a whole
process group; and one-shot queries (`dvc status`) with what their answer means for each stage.

The command is detached from the start (its own session, stdin from /dev/null, output into a log file under
`.taskspace/pipeline/` that the runner tails): so it can outlive the TUI when asked to, and no closed pipe or
terminal hangup kills it halfway through a stage.

No Textual here: the pipeline screen is a shell over a `DvcRunner`, and tests drive one with real subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


def dvc_command() -> list[str]:
    """`dvc` from the same environment as this app (works in the project's .venv without activating it)."""
    exe = Path(sys.executable).parent / "dvc"
    return [str(exe)] if exe.exists() else ["dvc"]


@dataclass(frozen=True)
class DvcResult:
    rc: int
    out: str
    err: str


def stage_states(names: list[str], status: DvcResult, running: bool) -> list[tuple[str, str]]:
    """Each stage's state from `dvc status --json`; when that fails, say why instead of "up to date" (DVC holds
    its lock while a pipeline runs, here or in another terminal)."""
    if status.rc != 0:
        busy = running or "lock" in status.err.lower()
        why = "DVC is busy (a pipeline is running)" if busy else f"unknown: {first_line(status.err)}"
        return [(name, why) for name in names]
    try:
        changed = json.loads(status.out or "{}")
    except json.JSONDecodeError:
        return [(name, "unknown: unreadable dvc status") for name in names]
    return [(name, "changed" if name in changed else "up to date") for name in names]


def group_stages(states: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One row per stage, a `foreach` stage's items (`eval@run`…) folded into one (`eval@… (12)`) whose state
    counts its items' states; so the whole pipeline, analyze and index included, fits a small terminal."""
    groups: dict[str, list[str]] = {}
    for name, state in states:
        groups.setdefault(name.split("@", 1)[0] + ("@…" if "@" in name else ""), []).append(state)
    rows = []
    for name, items in groups.items():
        if not name.endswith("@…"):
            rows += [(name, state) for state in items]
            continue
        counts = {state: items.count(state) for state in dict.fromkeys(items)}
        state = next(iter(counts)) if len(counts) == 1 else ", ".join(f"{n} {s}" for s, n in counts.items())
        rows.append((f"{name} ({len(items)})", state))
    return rows


def first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:80] if lines else "dvc status failed"


LOGS = Path(".taskspace") / "pipeline"  # in the project: each pipeline command's output (git- and DVC-ignored)
POLL_SECONDS = 0.05  # how often the log is read while the command runs

BUSY = "a dvc command is already running (DVC runs one per project)"

# `dvc exp run -n NAME` makes the git ref refs/exps/…/NAME and refuses a NAME git's check-ref-format refuses (or
# with a "/", which DVC keeps for itself), and one the baseline has already; a leading "-" would read as an option
REF_BAD_CHARS = " ~^:?*[\\/"
NAMING = "names are git refs: letters, digits, - _ . and no spaces"


def exp_name_problem(name: str, taken: Iterable[str] = ()) -> str | None:
    """Why `dvc exp run -n NAME` would refuse NAME, as one line for the form (None: it would take it)."""
    if not name:
        return None
    bad = [c for c in dict.fromkeys(name) if c in REF_BAD_CHARS or ord(c) < 0o40 or ord(c) == 0o177]
    why = (
        ("has a space" if " " in bad else f"has {', '.join(repr(c) for c in bad)}") if bad
        else f"starts with {name[0]!r}" if name.startswith((".", "-"))
        else "ends with '.' or '.lock'" if name.endswith((".", ".lock"))
        else "has '..'" if ".." in name
        else "has '@{'" if "@{" in name
        else None
    )  # fmt: skip
    if why:
        return f"experiment name {name!r} {why}: DVC refuses it ({NAMING})"
    if name in set(taken):
        return f"an experiment named {name!r} exists already: choose another name (or `dvc exp remove {name}`)"
    return None


class RunnerBusy(RuntimeError):
    """A second command while one runs (DVC runs one pipeline command per project)."""


def default_sigint() -> None:
    """In the child before exec: SIGINT's default action. A process started from a background shell (`cmd &`)
    inherits SIGINT ignored, and so would every command it starts: cancel's SIGINT would then do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class DvcRunner:
    """`start(args)` launches `dvc <args>` in the project, in a session of its own, its output (stdout and stderr)
    going to `log_path`; `lines()` yields that output until it exits; `cancel()` sends SIGINT to its whole process
    group (DVC stops cleanly, stages resume next time), then SIGTERM and SIGKILL to what is left of it `grace`
    seconds apart. `busy` while it runs; `returncode` once it has exited (negative: killed by that signal). Nothing
    stops it when this process exits. `command` replaces `dvc` (tests run plain Python)."""

    def __init__(self, project: str | Path, command: Sequence[str] | None = None, grace: float = 10.0) -> None:
        self.project = Path(project)
        self.command = list(command) if command is not None else dvc_command()
        self.grace = grace
        self.args: list[str] = []
        self.log_path: Path | None = None  # the running or last command's output
        self._proc: subprocess.Popen | None = None

    @property
    def busy(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The last command's exit status; None before the first and while one runs."""
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self) -> int | None:
        """The running command's pid, which is also its process group's id."""
        return self._proc.pid if self.busy else None

    def env(self) -> dict[str, str]:
        """This environment's executables first (the stages call `taskspace`), and no DVC analytics."""
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": path}

    def _new_log(self) -> Path:
        """A fresh file for this command's output, `.taskspace/pipeline/<time>-<verb>.log`: never one that a command
        left running by an earlier session still writes."""
        folder = self.project / LOGS
        folder.mkdir(parents=True, exist_ok=True)
        stem = "-".join([time.strftime("%Y%m%d-%H%M%S"), *self.args[:2]])  # 20250612-143210-exp-run
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:60]
        for n in range(1, 1000):
            path = folder / (f"{stem}.log" if n == 1 else f"{stem}-{n}.log")
            try:
                path.touch(exist_ok=False)
                return path
            except FileExistsError:
                continue
        raise OSError(f"no free log file name in {folder}")

    async def start(self, args: Sequence[str]) -> None:
        """Launch the command (raises RunnerBusy while one runs, OSError when it cannot be started)."""
        if self.busy:
            raise RunnerBusy(BUSY)
        self.args = list(args)
        self.log_path = log = self._new_log()
        try:
            with log.open("wb") as out:
                self._proc = subprocess.Popen(
                    [*self.command, *self.args],
                    cwd=self.project,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.env(),
                    start_new_session=True,  # its own process group: cancel reaches the stages it spawns
                    preexec_fn=default_sigint,  # and SIGINT stops them even where this app ignores it
                )
        except OSError:
            log.unlink(missing_ok=True)
            self.log_path = None
            raise

    async def lines(self) -> AsyncIterator[str]:
        """The running command's output, one line at a time (a progress bar's carriage-return redraws: its last
        state), read from its log until it exits; `returncode` is set when this ends."""
        proc, path = self._proc, self.log_path
        if proc is None or path is None:
            return
        with path.open("rb") as log:
            pending = b""
            while True:
                ended = proc.poll() is not None  # before reading: all it wrote is then in the file
                pending += log.read()
                *done, pending = pending.split(b"\n")
                for raw in done:
                    yield raw.decode(errors="replace").split("\r")[-1]
                if ended:
                    break
                await asyncio.sleep(POLL_SECONDS)
        if pending:
            yield pending.decode(errors="replace").split("\r")[-1]

    def cancel(self) -> bool:
        """Interrupt the running command and everything it started; False when nothing runs. What has not exited
        `grace` seconds later (it ignores SIGINT, or hangs while stopping) gets SIGTERM, and SIGKILL after as long."""
        if not self.busy:
            return False
        try:
            os.killpg(self._proc.pid, signal.SIGINT)
        except ProcessLookupError:  # it exited meanwhile
            return False
        asyncio.get_running_loop().call_later(self.grace, self._escalate, self._proc.pid, signal.SIGTERM)
        return True

    def _escalate(self, group: int, sig: signal.Signals) -> None:
        """`sig` to what is left of a cancelled command's process group (nothing when all of it has exited)."""
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):  # all of it exited (or its id is now another user's group)
            return
        if sig == signal.SIGTERM:
            asyncio.get_running_loop().call_later(self.grace, self._escalate, group, signal.SIGKILL)

    async def output(self, *args: str) -> DvcResult:
        """A short query (`dvc status --json`), its stdout and stderr apart; it may run beside a long command."""
        proc = await asyncio.create_subprocess_exec(
            *self.command,
            *args,
            cwd=self.project,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(),
        )
        out, err = await proc.communicate()
        return DvcResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


class PipelineRun:
    """The project's pipeline command as the TUI shows it, held by the App so that it outlives the pipeline screen
    (leaving the screen neither orphans nor forgets it): its `DvcRunner`, the output so far (`log`) and how the last
    command ended. `launch(args)` claims the runner at once (a second launch raises RunnerBusy before the first has
    started) and returns the coroutine that runs it; `watch(callback)` tells a screen each new line (`callback(line)`)
    and each change of state (`callback(None)`)."""

    def __init__(self, runner: DvcRunner, max_lines: int = 5000) -> None:
        self.runner = runner
        self.log: deque[str] = deque(maxlen=max_lines)
        self.args: list[str] = []
        self.active = False  # from launch() until the command's output has ended
        self.cancelled = False  # the current or last command was cancelled
        self.rc: int | None = None  # the last command's exit status (-1: it could not start)
        self._watchers: list[Callable[[str | None], None]] = []

    @property
    def busy(self) -> bool:
        return self.active or self.runner.busy

    @property
    def command(self) -> str:
        return " ".join(["dvc", *self.args])

    def watch(self, callback: Callable[[str | None], None]) -> None:
        self._watchers.append(callback)

    def unwatch(self, callback: Callable[[str | None], None]) -> None:
        self._watchers = [w for w in self._watchers if w != callback]

    def _tell(self, line: str | None) -> None:
        if line is not None:
            self.log.append(line)
        for watcher in list(self._watchers):
            watcher(line)

    def launch(self, args: Sequence[str]) -> Coroutine[None, None, int]:
        if self.busy:
            raise RunnerBusy(BUSY)
        self.active, self.cancelled, self.rc, self.args = True, False, None, list(args)
        return self._run()

    async def _run(self) -> int:
        self._tell(f"$ {self.command}")
        rc = -1
        try:
            await self.runner.start(self.args)
            self._tell(None)  # started: DVC now holds its lock
            async for line in self.runner.lines():
                self._tell(line)
            rc = self.runner.returncode if self.runner.returncode is not None else -1
        except Exception as e:  # noqa: BLE001 - said in the log, never a traceback on screen
            self._tell(f"[error: {type(e).__name__}: {e}]")
        finally:
            self.active, self.rc = False, rc
        self._tell(f"[exit {rc}]")
        if self.cancelled:
            self._tell("[cancelled: finished tasks are kept; the next run resumes from them]")
        self._tell(None)
        return rc

    def cancel(self) -> bool:
        """SIGINT to the running command (DvcRunner.cancel); False when nothing runs."""
        if not self.runner.cancel():
            return False
        self.cancelled = True
        self._tell("[cancel requested]")
        self._tell(None)
        return True
