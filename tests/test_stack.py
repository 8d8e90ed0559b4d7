"""The supervisor behind `quantpoly up`, with real child processes."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from cli.stack import Backoff, ChildNotReady, ChildSpec, Supervisor

# Generous: the machine may be busy, and a wrong supervisor must fail, not hang.
TIMEOUT = 20.0

CRASH_SOON = "import time; time.sleep(0.05); raise SystemExit(3)"


def writes_pid_then_runs(pid_file: Path) -> str:
    return f"import os, pathlib, time; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); time.sleep(600)"


def records_sigterm(name: str, log_file: Path, ready_file: Path) -> str:
    """Runs until SIGTERM, then appends its name to `log_file`, so the test sees the order of stopping."""
    return (
        "import pathlib, signal, sys, time\n"
        "def stop(*_):\n"
        f"    open({str(log_file)!r}, 'a').write({name!r} + '\\n')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        f"pathlib.Path({str(ready_file)!r}).touch()\n"
        "time.sleep(600)\n"
    )


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def poll_until(supervisor: Supervisor, condition, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the supervisor did not get there in time"
        supervisor.poll()
        time.sleep(0.01)


def wait_for_file(path: Path, timeout: float = TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path.name} was never written"
        time.sleep(0.01)
    return path.read_text()


@pytest.fixture
def supervisors():
    """Every supervisor a test makes is stopped afterwards, so a failing test leaves no child behind."""
    made: list[Supervisor] = []

    def make(specs, **options) -> Supervisor:
        made.append(Supervisor(specs, **options))
        return made[-1]

    yield make
    for supervisor in made:
        supervisor.stop()


def test_crashed_child_is_restarted_with_growing_delays_while_healthy_child_keeps_its_pid(supervisors, tmp_path):
    pid_file = tmp_path / "healthy.pid"
    reports: list[tuple[float, str]] = []
    specs = [ChildSpec("healthy", python(writes_pid_then_runs(pid_file))), ChildSpec("crasher", python(CRASH_SOON))]
    supervisor = supervisors(
        specs,
        backoff=Backoff(base=0.1, cap=10, reset_after=60),
        report=lambda line: reports.append((time.monotonic(), line)),
    )
    supervisor.start()
    healthy_pid = int(wait_for_file(pid_file))

    def reported(prefix: str) -> list[tuple[float, str]]:
        return [(at, line) for at, line in reports if line.startswith(prefix)]

    poll_until(supervisor, lambda: len(reported("crasher restarted")) >= 3)

    crashes, restarts = reported("crasher exited")[:3], reported("crasher restarted")[:3]
    assert all("exit code 3" in line for _, line in crashes)
    delays = [float(line.split("restarting it in ")[1].split(" s")[0]) for _, line in crashes]
    assert delays == [0.1, 0.2, 0.4]
    # Each restart waited its delay: a lower bound only (a busy machine may be slower), less a little for the
    # moment between noticing the crash and reporting it.
    for (crashed_at, _), (restarted_at, _), delay in zip(crashes, restarts, delays, strict=True):
        assert restarted_at - crashed_at >= delay - 0.02
    assert supervisor.pid_of("healthy") == healthy_pid and alive(healthy_pid)
    assert pid_file.read_text() == str(healthy_pid)

    supervisor.stop()
    assert all(child.process.poll() is not None for child in supervisor.children)
    assert not alive(healthy_pid)


def test_stop_ends_every_child_in_reverse_start_order(supervisors, tmp_path):
    log_file = tmp_path / "stopped.log"

    def spec(name: str) -> ChildSpec:
        # Ready once its SIGTERM handler is installed, so stopping it is always recorded.
        ready_file = tmp_path / f"{name}.ready"
        return ChildSpec(name, python(records_sigterm(name, log_file, ready_file)), ready=ready_file.exists)

    supervisor = supervisors([spec(name) for name in ("temporal", "worker", "api")])
    supervisor.start()
    supervisor.stop()
    assert log_file.read_text().split() == ["api", "worker", "temporal"]
    assert all(child.process.poll() is not None for child in supervisor.children)


def test_child_ignoring_sigterm_is_killed_after_the_stop_timeout(supervisors, tmp_path):
    ready_file = tmp_path / "ready"
    stubborn = (
        "import pathlib, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pathlib.Path({str(ready_file)!r}).write_text('ok')\n"
        "time.sleep(600)\n"
    )
    lines: list[str] = []
    supervisor = supervisors([ChildSpec("stubborn", python(stubborn))], stop_timeout=0.3, report=lines.append)
    supervisor.start()
    wait_for_file(ready_file)
    supervisor.stop()
    assert supervisor.children[0].process.returncode == -9
    assert lines == ["stubborn did not stop in time; killing it"]


def test_start_waits_for_readiness_and_fails_fast_when_the_child_dies_first(supervisors, tmp_path):
    ready_file, seen_file = tmp_path / "first.ready", tmp_path / "second.saw"
    becomes_ready = f"import pathlib, time; time.sleep(0.2); pathlib.Path({str(ready_file)!r}).touch(); time.sleep(600)"
    records_first_ready = (
        "import pathlib, time\n"
        f"first_ready = pathlib.Path({str(ready_file)!r}).exists()\n"
        f"pathlib.Path({str(seen_file)!r}).write_text(str(first_ready))\n"
        "time.sleep(600)\n"
    )
    first = ChildSpec("first", python(becomes_ready), ready=ready_file.exists, ready_timeout=TIMEOUT)
    supervisors([first, ChildSpec("second", python(records_first_ready))]).start()
    assert wait_for_file(seen_file) == "True"

    dying = ChildSpec("dying", python(CRASH_SOON), ready=lambda: False, ready_timeout=TIMEOUT)
    with pytest.raises(ChildNotReady, match=r"dying exited \(exit code 3\) before it was ready"):
        supervisors([dying]).start()


def test_no_restart_after_stop(supervisors):
    lines: list[str] = []
    supervisor = supervisors(
        [ChildSpec("crasher", python(CRASH_SOON))], backoff=Backoff(base=0.05), report=lines.append
    )
    supervisor.start()
    poll_until(supervisor, lambda: supervisor.children[0].restart_at is not None)
    supervisor.stop()
    time.sleep(0.1)
    supervisor.poll()
    assert supervisor.pid_of("crasher") is None
    assert not any("restarted" in line for line in lines)


def test_run_restarts_a_killed_child_until_told_to_stop(supervisors, tmp_path):
    pid_file = tmp_path / "worker.pid"
    lines: list[str] = []
    spec = ChildSpec("worker", python(writes_pid_then_runs(pid_file)))
    supervisor = supervisors([spec], backoff=Backoff(base=0.05), report=lines.append)
    supervisor.start()
    first_pid = int(wait_for_file(pid_file))
    pid_file.unlink()
    done = threading.Event()
    thread = threading.Thread(target=supervisor.run, args=(done.is_set, 0.02), daemon=True)
    thread.start()
    try:
        os.kill(first_pid, 9)
        second_pid = int(wait_for_file(pid_file))
    finally:
        done.set()
        thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert second_pid != first_pid and supervisor.pid_of("worker") == second_pid
    assert lines[0].startswith("worker exited with exit code -9 (SIGKILL); restarting it in 0.05 s")


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_healthy_run():
    backoff = Backoff(base=1, cap=30, reset_after=60)
    assert [backoff.delay(crashes) for crashes in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.crashes_counting(previous_crashes=5, uptime=2) == 6
    assert backoff.crashes_counting(previous_crashes=5, uptime=60) == 1
