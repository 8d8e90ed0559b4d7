"""Real parts for every test: Temporal servers from the installed binaries, PostgreSQL and SQLite, an SMTP
server, and the API through httpx against the real app.

PostgreSQL (``QUANTPOLY_TEST_POSTGRES_URL``, default the local ``test`` database) is used whenever it is
reachable; under CI=true it is mandatory and an unreachable server fails the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import psycopg
import pytest
import pytest_asyncio
from aiosmtpd.controller import Controller
from click.testing import CliRunner, Result
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from core.logging import FORMAT, RedactingFilter
from core.settings import Settings, get_settings
from core.temporal import DATA_CONVERTER, SEARCH_ATTRIBUTES
from db.engine import Database
from db.migrate import upgrade
from worker import build_worker

BIN = Path(sys.executable).parent
CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get("QUANTPOLY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# One log per process of the suite (pytest-xdist runs two); each is scanned by its own process.
LOG_FILE = (
    Path(__file__).parent.parent / "var" / "test-logs" / f"suite-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.log"
)

# Every secret a test uses is noted here; the log scan at the end of the session looks for each.
SECRETS: set[str] = set()


def secret(value: str) -> str:
    SECRETS.add(value)
    return value


def data(response: httpx.Response, status: int = 200):
    """The ``data`` of a successful envelope, after checking the status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True
    return body.get("data")


def error(response: httpx.Response, status: int) -> dict:
    """The ``error`` of a failed envelope, after checking the status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    return body["error"]


_SECRET_FIELDS = ("password", "newPassword", "currentPassword", "token")


async def _note_request_secrets(request: httpx.Request) -> None:
    """Every password and token a test sends is looked for in the logs, wrapped in secret() or not."""
    if request.headers.get("content-type", "").startswith("application/json") and "content-length" in request.headers:
        try:
            body = json.loads(request.content)
        except ValueError:  # a test sending a body the API must refuse
            return
        if isinstance(body, dict):
            SECRETS.update(str(body[f]) for f in _SECRET_FIELDS if body.get(f))
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if credential:
        SECRETS.add(credential)


async def _note_response_secrets(response: httpx.Response) -> None:
    await response.aread()
    if response.headers.get("content-type", "").startswith("application/json"):
        data = response.json().get("data")
        if isinstance(data, dict) and isinstance(data.get("token"), str):
            SECRETS.add(data["token"])


def _postgres_reachable() -> bool:
    try:
        psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), connect_timeout=3).close()
        return True
    except psycopg.Error:
        return False


def _backends() -> list[str]:
    return ["sqlite", "postgres"] if CI or _postgres_reachable() else ["sqlite"]


# --- logging: everything the suite logs, redacted as in production, scanned at the end ------------------


@pytest.fixture(scope="session", autouse=True)
def log_scan():
    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(LOG_FILE, mode="w", encoding="utf-8")
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for noisy in ("aiosqlite", "asyncio", "hpack", "httpcore", "aiosmtpd", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.INFO)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
    yield
    root.removeHandler(handler)
    handler.close()
    leaked = leaked_secrets(LOG_FILE.read_text(encoding="utf-8"), SECRETS)
    assert not leaked, f"{len(leaked)} secret(s) reached the log {LOG_FILE}"


# The characters of the suite's tokens and passwords. A secret made of them can only appear inside a run of
# them, so it is looked for in the log's distinct runs (a few megabytes) rather than in the whole log (a
# hundred megabytes, a tenth of a second for each of a thousand secrets).
_SECRET_CHARS = r"A-Za-z0-9_\-.~+/=!@#$%^&*"
_RUNS = re.compile(f"[{_SECRET_CHARS}]{{8,}}")
_PLAIN = re.compile(f"[{_SECRET_CHARS}]+")


def leaked_secrets(text: str, secrets: set[str]) -> list[str]:
    """The secrets (of 8 characters or more) that appear in ``text``."""
    runs = "\n".join(set(_RUNS.findall(text)))
    return sorted(s for s in secrets if len(s) >= 8 and (s in runs if _PLAIN.fullmatch(s) else s in text))


# --- databases -------------------------------------------------------------------------------------------


@pytest.fixture(params=_backends())
def database_url(request, tmp_path) -> AsyncIterator[str]:
    """A migrated, empty database: a SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        upgrade(url)
        yield url
        return
    yield from _postgres_schema()


@pytest.fixture
def one_database_url(tmp_path) -> Iterator[str]:
    """``database_url`` once, for slow tests of what does not depend on the backend: PostgreSQL where it is
    reachable (always under CI), otherwise SQLite."""
    if "postgres" in _backends():
        yield from _postgres_schema()
        return
    url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    upgrade(url)
    yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """``database_url`` on PostgreSQL only, for what SQLite lacks (a connection pool, a server to lose)."""
    if "postgres" not in _backends():
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL} (required under CI)")
    yield from _postgres_schema()


def _postgres_schema() -> Iterator[str]:
    if not _postgres_reachable():
        pytest.fail(f"PostgreSQL is required under CI but unreachable at {POSTGRES_URL}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin_dsn = POSTGRES_URL.replace("+psycopg", "")
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


# --- Temporal --------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        data_converter=DATA_CONVERTER,
        search_attributes=list(SEARCH_ATTRIBUTES),
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"),
        data_converter=DATA_CONVERTER,
    )
    # The test server knows no search attributes until told, as a real cluster's operator would.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace="default",
            search_attributes={key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES},
        )
    )
    yield env
    await env.shutdown()


# --- mail ------------------------------------------------------------------------------------------------


class _Collector:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@pytest.fixture(scope="session")
def smtp_server():
    collector = _Collector()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    yield controller, collector
    controller.stop()


TOKEN_IN_LINK = re.compile(r"token=([A-Za-z0-9_-]+)")


# --- the stack: app + worker + database + mail -----------------------------------------------------------


@dataclass
class Stack:
    http: httpx.AsyncClient
    settings: Settings
    temporal: Client
    _collector: _Collector
    _seen: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def mails_to(self, address: str) -> list[EmailMessage]:
        return [m for m in self._collector.messages[self._seen :] if m["To"] == address]

    async def wait_for_mail(self, address: str, count: int = 1, timeout: float = 20.0) -> list[EmailMessage]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.mails_to(address)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"expected {count} mail(s) to {address}, got {len(self.mails_to(address))}")
            await asyncio.sleep(0.1)
        return self.mails_to(address)

    async def token_from_mail(self, address: str, index: int = -1) -> str:
        mails = await self.wait_for_mail(address, count=1 if index == -1 else index + 1)
        found = TOKEN_IN_LINK.search(mails[index].get_body(("plain",)).get_content())
        assert found, "no token link in the mail"
        return secret(found.group(1))

    async def register_verified(self, email: str, password: str) -> dict:
        response = await self.http.post("/auth/register", json={"email": email, "password": secret(password)})
        assert response.status_code == 201, response.text
        token = await self.token_from_mail(email)
        assert (await self.http.post("/auth/verify-email", json={"token": token})).status_code == 200
        return response.json()["data"]

    async def new_account(self, password: str) -> tuple[str, dict, dict[str, str]]:
        """A verified account under a fresh address, signed in: (email, user, auth headers)."""
        email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        user = await self.register_verified(email, password)
        return email, user, await self.login(email, password)

    async def login(self, email: str, password: str) -> dict[str, str]:
        response = await self.http.post("/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {secret(response.json()['data']['token'])}"}

    async def cli(self, *args: str, input: str | None = None) -> Result:
        """Run `quantpoly ARGS` in-process against this stack's database and Temporal."""
        from cli.main import cli

        def invoke() -> Result:
            get_settings.cache_clear()
            try:
                return CliRunner().invoke(cli, list(args), input=input, env=self.env, catch_exceptions=False)
            finally:
                get_settings.cache_clear()

        return await asyncio.to_thread(invoke)


def make_settings(database_url: str, temporal: Client, smtp_port: int, tmp_path: Path, **overrides) -> Settings:
    values = dict(
        environment="test",
        database_url=database_url,
        var_dir=tmp_path / "var",
        temporal_address=temporal.service_client.config.target_host,
        task_queue=f"test-{uuid.uuid4().hex[:8]}",
        mail_backend="smtp",
        smtp_port=smtp_port,
        public_app_url="http://app.test",
        # Cheap hashes keep the suite fast; production uses the argon2id defaults.
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        # No test reaches Alpaca itself: a broker account that the fuzzer asks for is refused at once.
        alpaca_data_url="http://127.0.0.1:9/data",
        alpaca_trading_url="http://127.0.0.1:9/trading",
        alpaca_paper_trading_url="http://127.0.0.1:9/trading",
        alpaca_max_retries=0,
    )
    values.update(overrides)
    return Settings(**values)


def settings_env(settings: Settings) -> dict[str, str]:
    env = {
        "QUANTPOLY_DATABASE_URL": settings.db_url,
        "QUANTPOLY_TEMPORAL_ADDRESS": settings.temporal_address,
        "QUANTPOLY_TASK_QUEUE": settings.task_queue,
        "QUANTPOLY_VAR_DIR": str(settings.var_dir),
        "QUANTPOLY_MAIL_BACKEND": settings.mail_backend,
        "QUANTPOLY_SMTP_PORT": str(settings.smtp_port),
        "QUANTPOLY_PUBLIC_APP_URL": settings.public_app_url,
        "QUANTPOLY_ARGON2_TIME_COST": str(settings.argon2_time_cost),
        "QUANTPOLY_ARGON2_MEMORY_COST": str(settings.argon2_memory_cost),
        "QUANTPOLY_ALPACA_DATA_URL": settings.alpaca_data_url,
        "QUANTPOLY_ALPACA_TRADING_URL": settings.alpaca_trading_url,
        "QUANTPOLY_ALPACA_PAPER_TRADING_URL": settings.alpaca_paper_trading_url,
        "QUANTPOLY_ALPACA_MAX_RETRIES": str(settings.alpaca_max_retries),
        "QUANTPOLY_JOB_HEARTBEAT_TIMEOUT_SECONDS": str(settings.job_heartbeat_timeout_seconds),
        "QUANTPOLY_LOG_LEVEL": "DEBUG",
    }
    return env


async def open_stack(
    database_url: str, temporal: Client, smtp_server, tmp_path: Path, *, with_worker: bool = True, **overrides
) -> AsyncIterator[Stack]:
    controller, collector = smtp_server
    settings = make_settings(database_url, temporal, controller.port, tmp_path, **overrides)
    app = create_app(settings, temporal=temporal)
    db = Database.from_settings(settings)
    worker = build_worker(temporal, settings, db) if with_worker else contextlib.nullcontext()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
    async with worker, app.router.lifespan_context(app):
        hooks = {"request": [_note_request_secrets], "response": [_note_response_secrets]}
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test", event_hooks=hooks) as http:
            yield Stack(
                http=http,
                settings=settings,
                temporal=temporal,
                _collector=collector,
                _seen=len(collector.messages),
                env=settings_env(settings),
            )
    await db.dispose()


@pytest_asyncio.fixture
async def stack(database_url, dev_server, smtp_server, tmp_path) -> AsyncIterator[Stack]:
    async for opened in open_stack(database_url, dev_server.client, smtp_server, tmp_path):
        yield opened


@pytest_asyncio.fixture
async def idle_stack(database_url, dev_server, smtp_server, tmp_path) -> AsyncIterator[Stack]:
    """The API without a worker: jobs wait in Temporal until the test starts one."""
    async for opened in open_stack(database_url, dev_server.client, smtp_server, tmp_path, with_worker=False):
        yield opened
