"""DvcRunner without Textual: real subprocesses stand in for dvc (lines streamed in order, the exit status kept,
one command at a time, cancel reaching the command's children)."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskspace_tui.runner import DvcRunner, PipelineRun, RunnerBusy

PYTHON = [sys.executable, "-c"]
SLEEPER = "import time; print('started', flush=True); time.sleep(60)"
PARENT = (  # a command that starts a child of its own (as dvc starts a stage) and waits for it
    "import subprocess, sys\n"
    f"child = subprocess.Popen([sys.executable, '-c', {SLEEPER!r}], stdout=subprocess.DEVNULL)\n"
    "print(child.pid, flush=True)\n"
    "child.wait()\n"
)


def alive(pid: int) -> bool:
    """Running (a zombie no one has reaped yet counts as gone)."""
    if Path("/proc/self/stat").exists():  # Linux: the state letter after the command's name
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def drain(runner: DvcRunner, seconds: float = 30.0) -> list[str]:
    async def collect():
        return [line async for line in runner.lines()]

    return await asyncio.wait_for(collect(), seconds)


def kill_left_over(*pids: int | None) -> None:
    for pid in pids:
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)


async def test_lines_stream_in_order_and_the_exit_status_is_kept(tmp_path):
    runner = DvcRunner(tmp_path, PYTHON)
    assert not runner.busy and runner.returncode is None
    code = (
        "import os, sys\n"
        "print('one', flush=True)\n"
        "print('progress 10%\\rprogress 100%', flush=True)\n"  # a progress bar's redraws: its last state
        "print('to stderr', file=sys.stderr, flush=True)\n"
        "print('analytics', os.environ['DVC_NO_ANALYTICS'], 'cwd', os.getcwd(), flush=True)\n"
        "sys.exit(3)\n"
    )
    await runner.start([code])
    assert runner.busy and runner.pid is not None
    lines = await drain(runner)
    assert lines == ["one", "progress 100%", "to stderr", f"analytics 1 cwd {tmp_path.resolve()}"]
    assert runner.returncode == 3 and not runner.busy and runner.pid is None


async def test_one_command_at_a_time(tmp_path):
    runner = DvcRunner(tmp_path, PYTHON)
    await runner.start([SLEEPER])
    pid = runner.pid
    try:
        with pytest.raises(RunnerBusy, match="already running"):
            await runner.start(["print('second')"])
        assert runner.pid == pid and runner.busy  # the first one is untouched
        assert runner.cancel()
        await drain(runner)
        assert not runner.busy and runner.returncode not in (None, 0)
        await runner.start(["print('next')"])  # free again once it has exited
        assert await drain(runner) == ["next"] and runner.returncode == 0
    finally:
        kill_left_over(pid)


async def test_cancel_stops_the_command_and_its_children(tmp_path):
    runner = DvcRunner(tmp_path, PYTHON)
    await runner.start([PARENT])
    parent, child = runner.pid, None
    try:
        lines = runner.lines()
        child = int(await asyncio.wait_for(lines.__anext__(), 30))
        assert alive(parent) and alive(child) and os.getpgid(child) == parent  # one group, led by the command
        assert runner.cancel()
        rest = await asyncio.wait_for(_rest(lines), 30)
        assert runner.returncode == -signal.SIGINT, rest  # interrupted, as DVC is: it stops cleanly on SIGINT
        assert not runner.busy and not runner.cancel()  # nothing left to cancel
        assert gone(parent) and gone(child)  # the child the command started went with it
    finally:
        kill_left_over(child, parent)


async def _rest(lines) -> list[str]:
    return [line async for line in lines]


async def test_a_command_that_cannot_start_leaves_the_runner_free(tmp_path):
    runner = DvcRunner(tmp_path, [str(tmp_path / "no-such-dvc")])
    with pytest.raises(OSError):
        await runner.start(["repro"])
    assert not runner.busy and runner.returncode is None and not runner.cancel()


async def test_output_keeps_stdout_and_stderr_apart(tmp_path):
    runner = DvcRunner(tmp_path, PYTHON)
    res = await asyncio.wait_for(
        runner.output("import sys; print('{}'); print('lock held', file=sys.stderr); sys.exit(1)"), 30
    )
    assert (res.rc, res.out.strip(), res.err.strip()) == (1, "{}", "lock held")
    assert not runner.busy and runner.returncode is None  # a query is not the pipeline command


def ignoring(*signals: signal.Signals):
    """A subprocess's preexec: these signals ignored, as a shell's background job (`cmd &`) ignores SIGINT."""

    def apply() -> None:
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)

    return apply


IN_BACKGROUND = (  # the app in a process that ignores SIGINT: start PARENT, cancel it, say how it ended
    "import asyncio, json, signal, sys, time\n"
    "from taskspace_tui.runner import DvcRunner\n"
    "async def main():\n"
    "    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN\n"
    "    runner = DvcRunner(sys.argv[1], [sys.executable, '-c'], grace=60)  # no SIGTERM within the test's wait\n"
    "    await runner.start([sys.argv[2]])\n"
    "    lines = runner.lines()\n"
    "    child = int(await lines.__anext__())\n"
    "    print(runner.pid, child, flush=True)\n"
    "    start = time.monotonic()\n"
    "    assert runner.cancel()\n"
    "    rest = [line async for line in lines]\n"
    "    print(json.dumps({'rc': runner.returncode, 'seconds': time.monotonic() - start, 'rest': rest}), flush=True)\n"
    "asyncio.run(main())\n"
)


def test_cancel_works_from_an_app_started_in_the_background(tmp_path):
    """An app started from a background shell ignores SIGINT, and so would the commands it starts: they get SIGINT's
    default action back, so cancel's SIGINT stops the command and its children at once (no SIGTERM needed)."""
    app = subprocess.Popen([sys.executable, "-c", IN_BACKGROUND, str(tmp_path), PARENT], stdout=subprocess.PIPE,
                           text=True, preexec_fn=ignoring(signal.SIGINT))  # fmt: skip
    try:
        out, _ = app.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        app.kill()
        out, _ = app.communicate()
    pids = [int(p) for p in out.splitlines()[0].split()] if out.strip() else []
    try:
        assert app.returncode == 0 and len(pids) == 2, out
        ended = json.loads(out.splitlines()[1])
        assert ended["rc"] == -signal.SIGINT and ended["seconds"] < 5, ended
        assert all(gone(pid) for pid in pids)  # the command and the child it started
    finally:
        kill_left_over(*pids)


TICKER = "import time\nfor i in range(600):\n    print('tick', i, flush=True)\n    time.sleep(0.1)\n"
STARTS_AND_EXITS = (  # the app's process: start TICKER, read its first line, say its pid and log, exit
    "import asyncio, sys\n"
    "from taskspace_tui.runner import DvcRunner\n"
    "async def main():\n"
    "    runner = DvcRunner(sys.argv[1], [sys.executable, '-c'])\n"
    "    await runner.start([sys.argv[2]])\n"
    "    assert await runner.lines().__anext__() == 'tick 0'\n"
    "    print(runner.pid, runner.log_path, flush=True)\n"
    "asyncio.run(main())\n"
)


def test_the_command_outlives_the_process_that_started_it(tmp_path):
    """Output into a log under .taskspace/pipeline/, its own session, stdin from /dev/null: when the app exits, the
    command goes on writing (no closed pipe to die of, no hangup), which the TUI's "leave it running" relies on."""
    app = subprocess.run([sys.executable, "-c", STARTS_AND_EXITS, str(tmp_path), TICKER], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    pid, log = (app.stdout.split() + [None, None])[:2]
    try:
        assert app.returncode == 0 and pid, app.stderr
        log = Path(log)
        assert log.parent == tmp_path / ".taskspace" / "pipeline" and log.name.endswith(".log")
        before = log.read_text().count("tick")
        time.sleep(1.0)
        assert alive(int(pid)) and log.read_text().count("tick") > before  # still running, still writing
    finally:
        if pid:
            try:
                os.killpg(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.parametrize(
    ("ignored", "ended_by"),
    [((signal.SIGINT,), signal.SIGTERM), ((signal.SIGINT, signal.SIGTERM), signal.SIGKILL)],
    ids=["sigint-ignored", "sigint-and-sigterm-ignored"],
)
async def test_cancel_escalates_when_the_command_does_not_stop(tmp_path, ignored, ended_by):
    """A command that ignores SIGINT (or hangs while stopping) gets SIGTERM `grace` seconds after the SIGINT, then
    SIGKILL after as long again."""
    names = ", ".join(f"signal.{s.name}" for s in ignored)
    stubborn = f"import signal, time\nfor s in ({names},): signal.signal(s, signal.SIG_IGN)\n{SLEEPER}"
    runner = DvcRunner(tmp_path, PYTHON, grace=0.5)
    await runner.start([stubborn])
    pid = runner.pid
    try:
        lines = runner.lines()
        assert await asyncio.wait_for(lines.__anext__(), 30) == "started"
        start = time.monotonic()
        assert runner.cancel()
        await asyncio.wait_for(_rest(lines), 30)
        assert runner.returncode == -ended_by and time.monotonic() - start < 10
        assert gone(pid)
    finally:
        kill_left_over(pid)


async def test_pipeline_run_keeps_the_log_and_tells_its_watchers(tmp_path):
    """What the App holds across screens: a launch claims the runner at once (a second one is refused before the
    first has even started), the output is kept for a screen that opens later, a cancel is remembered."""
    run = PipelineRun(DvcRunner(tmp_path, PYTHON))
    heard: list[str | None] = []
    run.watch(heard.append)
    work = asyncio.ensure_future(run.launch([SLEEPER]))
    assert run.busy
    with pytest.raises(RunnerBusy):
        run.launch(["print('second')"])
    pid = None
    try:
        for _ in range(600):
            if "started" in run.log:
                break
            await asyncio.sleep(0.05)
        pid = run.runner.pid
        assert list(run.log)[:2] == [f"$ {run.command}", "started"] and run.command.endswith(SLEEPER)
        run.unwatch(heard.append)
        assert run.cancel() and run.cancelled
        rc = await asyncio.wait_for(work, 30)
        assert rc == run.rc == -signal.SIGINT and not run.busy
        assert list(run.log)[-2] == f"[exit {rc}]" and run.log[-1].startswith("[cancelled: finished tasks are kept")
        assert heard[:3] == [f"$ {run.command}", None, "started"] and "[cancel requested]" not in heard  # unwatched
        work = asyncio.ensure_future(run.launch(["print('next')"]))  # free again; a new command is not cancelled
        assert await asyncio.wait_for(work, 30) == 0 and not run.cancelled
        assert list(run.log)[-2:] == ["next", "[exit 0]"]
    finally:
        kill_left_over(pid)


NAMES = ["lr-sweep", "lr_3e-4", "v1.2", "offline-20250612-143210", "my exp", "a/b", "a..b", "x.", "x.lock", ".x", "@",
         "a@{1}", "a~1", "a^", "a:b", "a?", "a*", "a[1]", "a\\b", "tab\there", "ünïcode"]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_exp_names_are_refused_exactly_where_dvc_refuses_them(name):
    """The form's check agrees with DVC's own (`dvc exp run -n` checks refs/exps/<baseline>/NAME with dulwich's
    git-check-ref-format and refuses any "/"), so a name is refused in one line before anything runs."""
    from dulwich.refs import check_ref_format

    from taskspace_tui.runner import exp_name_problem

    dvc_takes = check_ref_format(f"refs/exps/ab/{'c' * 38}/{name}".encode()) and "/" not in name
    problem = exp_name_problem(name)
    assert (problem is None) == dvc_takes, problem
    assert problem is None or (problem.startswith(f"experiment name {name!r} ") and "\n" not in problem)


def test_an_exp_name_the_baseline_has_is_refused_and_no_name_is_fine():
    from taskspace_tui.runner import exp_name_problem

    assert exp_name_problem("", ["taken"]) is None and exp_name_problem("fresh", ["taken"]) is None
    assert "an experiment named 'taken' exists already" in exp_name_problem("taken", ["taken", "other"])
    assert "starts with '-'" in exp_name_problem("-f")  # git takes it, but the command line would read an option
