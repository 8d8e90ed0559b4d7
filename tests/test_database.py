"""SQLite's one write lock, as two processes' engines meet it: a transaction holds it from its start, so one
that reads and then writes never fails because another committed in between; the others wait their turn;
a unit of work that only reads never waits for a writer. PostgreSQL's pool: a connection the server dropped
while it sat idle is replaced before use."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from core.settings import Settings
from db import engine as engine_module
from db import sqlite
from db.engine import Database
from db.migrate import upgrade
from db.models import User


@pytest.fixture
async def engines(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'locks.db'}"
    upgrade(url)
    first, second = (Database.from_settings(Settings(database_url=url)) for _ in range(2))
    yield first, second
    await first.dispose()
    await second.dispose()


def a_user() -> User:
    return User(email=f"{uuid.uuid4().hex[:10]}@example.com", password_hash="-")


async def users(db: Database) -> int:
    async with db.reading() as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def test_a_transaction_that_reads_then_writes_waits_for_no_one_and_makes_others_wait(engines):
    first, second = engines

    async def write(db: Database) -> None:
        async with db.session() as session:
            session.add(a_user())

    async with first.session() as session:
        before = await session.scalar(select(func.count()).select_from(User))  # it reads first
        other = asyncio.create_task(write(second))  # another process's writer: it waits for this one
        await asyncio.sleep(0.3)
        assert not other.done()
        assert await users(second) == before  # a reader does not wait, and sees what was committed
        session.add(a_user())  # then it writes: no "database is locked"
    await other
    assert await users(second) == before + 2


async def test_a_session_inside_another_is_refused_rather_than_left_waiting_for_itself(engines):
    first, _ = engines
    async with first.session():
        with pytest.raises(RuntimeError, match="inside another"):
            async with first.session():
                pass
        async with first.reading() as reading:  # reading needs no lock: it may nest
            await reading.scalar(select(func.count()).select_from(User))


async def test_each_statement_is_one_call_on_the_connections_thread(engines, monkeypatch):
    """Through SQLAlchemy: rows, row counts and the rows an INSERT returns are as the driver gives them, each
    statement one call on aiosqlite's thread (its own cursors make four)."""
    calls = []
    call = sqlite.Connection.call

    async def counted(self, function, *args):
        calls.append(args[0])
        return await call(self, function, *args)

    monkeypatch.setattr(sqlite.Connection, "call", counted)
    first, _ = engines
    emails = [f"{uuid.uuid4().hex[:10]}@example.com" for _ in range(3)]
    async with first.session() as session:
        connection = await session.connection()
        calls.clear()
        inserted = await connection.execute(
            insert(User).returning(User.email), [{"email": e, "password_hash": "-"} for e in emails[:1]]
        )
        assert inserted.scalars().all() == emails[:1] and len(calls) == 1
        await connection.execute(insert(User), [{"email": e, "password_hash": "-"} for e in emails[1:]])
        changed = await connection.execute(update(User).where(User.email.in_(emails)).values(password_hash="x"))
        assert changed.rowcount == 3
        rows = await connection.execute(select(User.email).where(User.email.in_(emails)).order_by(User.email))
        assert rows.scalars().all() == sorted(emails) and len(calls) == 4


async def backend_pid(db: Database) -> int:
    async with db.reading() as session:
        return int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)


def admin(url: str) -> psycopg.Connection:
    """A plain connection to the server of ``url``, outside its schema and its pool."""
    return psycopg.connect(url.replace("+psycopg", "").split("?")[0], autocommit=True)


def drop_connection(url: str, pid: int) -> None:
    """What a restarted server or a dropped network does to a pooled connection."""
    with admin(url) as connection:
        assert connection.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)


async def test_a_postgres_connection_dropped_while_idle_is_replaced_before_use(postgres_url, monkeypatch):
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # every connection idle long enough
    db = Database.from_settings(Settings(database_url=postgres_url))
    try:
        first = await backend_pid(db)
        drop_connection(postgres_url, first)
        assert await backend_pid(db) not in (0, first)
    finally:
        await db.dispose()


async def test_a_postgres_connection_dropped_just_after_use_fails_one_unit_of_work_only(postgres_url, monkeypatch):
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 3600.0)  # every connection trusted
    db = Database.from_settings(Settings(database_url=postgres_url))
    try:
        first = await backend_pid(db)
        drop_connection(postgres_url, first)
        with pytest.raises(DBAPIError) as failed:
            await backend_pid(db)
        assert failed.value.connection_invalidated
        assert await backend_pid(db) not in (0, first)
    finally:
        await db.dispose()


def test_postgres_compresses_backtest_results_with_lz4(postgres_url):
    """pglz cost the server about five times lz4's CPU for each stored result."""
    schema = postgres_url.split("search_path%3D")[1]
    with admin(postgres_url) as connection:
        settings = "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        if connection.execute(settings).fetchone() != (True,):
            pytest.skip("this PostgreSQL was built without lz4: results keep its default compression")
        method = connection.execute(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'result'",
            (f'"{schema}".backtests',),
        ).fetchone()
    assert method == ("l",)
