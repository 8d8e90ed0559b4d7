"""Async engine and session factory, one per process."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import ConnectArgsType
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from core.settings import Settings
from db import sqlite


def sync_url(url: str) -> str:
    """The same database through a synchronous driver (for Alembic)."""
    return url.replace("sqlite+aiosqlite://", "sqlite://", 1)


def _ensure_sqlite_dir(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the API read while the worker writes; busy_timeout waits out the other process's transaction.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # Transactions are begun by _begin_immediate, not by the driver.
    dbapi_connection.isolation_level = None


# Execution option of the connection of a unit of work that only reads (Database.reading).
READ_ONLY = "quantpoly_read_only"


def _begin(connection) -> None:
    # A transaction that may write takes SQLite's write lock when it begins. Begun deferred, one that read and
    # then wrote failed at once ("database is locked", SQLITE_BUSY_SNAPSHOT) whenever another connection had
    # committed in between; begun immediate, it waits for the lock as busy_timeout allows, and reads what it
    # writes on. One that only reads begins deferred: in WAL mode it reads beside the writer.
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def json_text(value: Any) -> str:
    """A JSON column's text, as the engine writes it."""
    # JSON columns hold whole results (a backtest's equity curve and trades): orjson writes them about ten
    # times faster than the standard library, which still writes what orjson refuses (integers beyond 64
    # bits in a user's free-form preferences).
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:
        return json.dumps(value)


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.db_url
    json_options: dict[str, Any] = {"json_serializer": json_text, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        # SQLAlchemy's aiosqlite dialect over connections that make one trip to their thread per statement,
        # opened with the arguments the dialect reads from the URL (read before the first connection).
        arguments: ConnectArgsType
        engine = create_async_engine(url, async_creator=lambda: sqlite.Connection(*arguments), **json_options)
        arguments = engine.sync_engine.dialect.create_connect_args(engine.url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _begin)
        return engine
    engine = create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        # psycopg prepares a statement on a connection once it has run it 5 times there; spread over a pool
        # of 20 connections, most executions came before that, each parsed and planned again by the server.
        # Prepared at first use, a statement is planned once per connection.
        connect_args={"prepare_threshold": 0},
        **json_options,
    )
    _ping_when_idle(engine)
    return engine


# A connection the pool hands out within this long of its last use is trusted; one idle longer is pinged.
PING_AFTER_IDLE_SECONDS = 1.0
_LAST_USED = "quantpoly_last_used"


def _ping_when_idle(engine: AsyncEngine) -> None:
    """pool_pre_ping's check, for connections idle a while only. Under load every checkout finds a connection
    used a moment ago, and pinging each cost every unit of work a round trip. One that fails anyway (the
    server restarted within that moment) fails its unit of work, and SQLAlchemy then drops the pool's
    connections that are older than the failure."""

    def used(_dbapi_connection: Any, record: Any, *_: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_LAST_USED, 0.0) < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            disconnected = exc.DisconnectionError(str(error))
            disconnected.invalidate_pool = True  # the server restarted, most likely: every connection is stale
            raise disconnected from error

    event.listen(engine.sync_engine, "connect", used)
    event.listen(engine.sync_engine, "checkin", used)
    event.listen(engine.sync_engine, "checkout", checked_out)


# The databases whose ``session()`` a task is inside: on SQLite a session of the same database opened inside
# another would wait for the write lock its own task holds.
_in_session: ContextVar[frozenset[int]] = ContextVar("in_session", default=frozenset())


class Database:
    """The engine and its session factory; ``session()`` is one unit of work (commit on success)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._sqlite = engine.dialect.name == "sqlite"
        # A unit of work that only reads: see reading().
        self._read_only: dict[str, Any] = {READ_ONLY: True} if self._sqlite else {"isolation_level": "AUTOCOMMIT"}
        self._writers: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(create_engine(settings))

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        if not self._sqlite:
            async with self._unit_of_work() as session:
                yield session
            return
        inside = _in_session.get()
        if id(self) in inside:
            raise RuntimeError("a session inside another: on SQLite it would wait for its own write lock")
        # SQLite has one writer at a time: this process's transactions queue here, first come first served,
        # rather than in SQLite's busy handler, which polls with sleeps and lets a late comer win.
        marker = _in_session.set(inside | {id(self)})
        try:
            async with self._writer_lock(), self._unit_of_work() as session:
                yield session
        finally:
            _in_session.reset(marker)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A unit of work that only reads (it never commits a write): on SQLite it neither queues for nor
        takes the write lock, so reads (every request's session check, a page polling a job) never wait for
        writers. On PostgreSQL it reads in autocommit: at READ COMMITTED each statement takes its own snapshot
        inside a transaction too, so BEGIN and COMMIT would only add two round trips to every request."""
        async with self.sessions() as session:
            async with session.begin():
                await session.connection(execution_options=self._read_only)
                yield session

    @asynccontextmanager
    async def _unit_of_work(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            async with session.begin():
                yield session

    def _writer_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._writers is None or self._writers[0] is not loop:
            self._writers = loop, asyncio.Lock()
        return self._writers[1]

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            # Never behind a writer; on PostgreSQL outside a transaction, whose rollback would also drop the
            # statements psycopg prepared on the connection.
            reading = await connection.execution_options(**self._read_only)
            await reading.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


async def serialize(session: AsyncSession, key: str) -> bool:
    """Hold a lock named ``key`` until the session's transaction ends, so that check-then-write sequences on
    the same key (a count against a limit, then an insert) run one at a time across processes. True when it
    took a lock now: what the transaction read before may have changed while it waited."""
    if session.get_bind().dialect.name != "postgresql":
        return False  # on SQLite every transaction holds the one write lock from its start (BEGIN IMMEDIATE)
    await (await session.connection()).execute(_ADVISORY_LOCK, {"key": key})
    return True
