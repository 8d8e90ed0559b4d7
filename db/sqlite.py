"""SQLite connections for SQLAlchemy's aiosqlite dialect that make one trip to the connection's thread per
statement.

aiosqlite runs each call on a SQLite connection in a thread of its own; every call is a hand-off between that
thread and the event loop. Through its cursors, SQLAlchemy makes four for each statement (create the cursor,
execute, fetch, close), which cost the event loop far more than SQLite's own work: a job's bookkeeping
transaction of seven statements made about thirty. Here a statement is executed, its rows fetched and its
cursor closed in one call, and the cursor SQLAlchemy holds answers from what that call returned.

Given to ``create_async_engine`` as its ``async_creator``; the dialect and its adapter are SQLAlchemy's own.
Rows are fetched whole: results asked for as a stream (``stream()``, ``yield_per``) arrive all at once.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiosqlite

# What a statement left behind: its description, row count, last row id and rows.
_Executed = tuple[Any, int, int | None, list[Any]]


def _run(connection: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> _Executed:
    """On the connection's thread: the statement, its rows and what its cursor says of it."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, () if parameters is None else parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class Cursor:
    """The part of an aiosqlite cursor that SQLAlchemy's adapter uses, over rows already fetched."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: deque[Any] = deque()

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Cursor:
        self._took(await self._connection.call(_run, sql, parameters, False))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Cursor:
        self._took(await self._connection.call(_run, sql, list(parameters), True))
        return self

    def _took(self, executed: _Executed) -> None:
        self.description, self.rowcount, self.lastrowid, rows = executed
        self._rows = deque(rows)

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = min(len(self._rows), self.arraysize if size is None else size)
        return [self._rows.popleft() for _ in range(count)]

    async def fetchall(self) -> list[Any]:
        rows, self._rows = list(self._rows), deque()
        return rows

    async def close(self) -> None:
        self._rows.clear()


class Connection(aiosqlite.Connection):
    """An aiosqlite connection whose cursors run each statement in one call on its thread."""

    def __init__(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Opens ``sqlite3.connect(*args, **kwargs)``: the arguments SQLAlchemy's dialect reads from a URL."""
        super().__init__(lambda: sqlite3.connect(*args, **kwargs), iter_chunk_size=64)
        self._thread.daemon = True  # as SQLAlchemy makes aiosqlite's: never keeps the process alive

    def cursor(self) -> Cursor:  # type: ignore[override]  # a cursor at once: no call on the thread
        return Cursor(self)

    async def call(self, function: Any, *args: Any) -> Any:
        """``function(sqlite3_connection, *args)``, on the connection's thread."""
        return await self._execute(function, self._conn, *args)
