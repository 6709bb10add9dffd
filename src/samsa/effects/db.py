"""A tiny database edge shared by the dedup store, the offsets-in-the-database sink and the
payment gateway: SQLite (the embedded default, a file) or PostgreSQL (psycopg 3).

Statements are written once, with `?` placeholders and SQL that both engines accept
(`INSERT ... ON CONFLICT ... DO UPDATE ... WHERE`, `RETURNING`; SQLite >= 3.35). Each thread
gets its own connection: sqlite3 connections must not cross threads, and separate psycopg
connections let threads run transactions concurrently instead of queueing on one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

SQLITE_BUSY_TIMEOUT_S = 30.0

Row = tuple[Any, ...]


class Tx(Protocol):
    """One open database transaction. Placeholders are `?` for both engines."""

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run a statement; return the number of rows it changed."""
        ...

    def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None: ...

    def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]: ...


class Database(Protocol):
    url: str

    def transaction(self) -> AbstractContextManager[Tx]:
        """A context manager yielding a `Tx`; commits on a clean exit, rolls back on an
        exception (which then propagates)."""
        ...

    def close(self) -> None: ...


class _SQLiteTx:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._connection.execute(sql, tuple(params)).rowcount

    def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        row = self._connection.execute(sql, tuple(params)).fetchone()
        return None if row is None else tuple(row)

    def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return [tuple(row) for row in self._connection.execute(sql, tuple(params)).fetchall()]


class SQLiteDatabase:
    """A SQLite file in WAL mode. Every transaction starts with BEGIN IMMEDIATE, taking the
    write lock up front: a read-then-write (a claim) is then atomic across threads *and*
    processes, and never fails half-way with SQLITE_BUSY on upgrade."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path,
                timeout=SQLITE_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            connection.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a process crash (kill -9), which is the
            # failure the toolkit is about; FULL would also survive power loss, at an fsync each.
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield _SQLiteTx(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()


class _PostgresTx:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        self._cursor.execute(self._sql(sql), tuple(params))
        return int(self._cursor.rowcount)

    def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        self._cursor.execute(self._sql(sql), tuple(params))
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        self._cursor.execute(self._sql(sql), tuple(params))
        return [tuple(row) for row in self._cursor.fetchall()]


class PostgresDatabase:
    """PostgreSQL through psycopg 3, READ COMMITTED (the default): every statement the toolkit
    relies on for atomicity is a single `INSERT ... ON CONFLICT` or a guarded `UPDATE`, which
    PostgreSQL makes atomic under row locks at that level."""

    def __init__(self, url: str, schema: str | None = None) -> None:
        import psycopg  # imported here: only PostgreSQL deployments need it

        if schema is not None and not schema.replace("_", "").isalnum():
            raise ValueError(f"a schema name must be letters, digits and _: {schema!r}")
        self._psycopg = psycopg
        self.url = url
        self.schema = schema
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            connection = self._psycopg.connect(self.url)
            if self.schema is not None:
                # A private schema: the demo's runs (and tests) never see each other's tables.
                connection.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                connection.execute(f"SET search_path TO {self.schema}")
                connection.commit()
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        connection = self._connection()
        with connection.transaction(), connection.cursor() as cursor:
            yield _PostgresTx(cursor)

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()


def postgres_problem(url: str, timeout_s: int = 5) -> str | None:
    """Why `url` does not reach PostgreSQL (a malformed URL, no server, refused login), or
    None if it does: checked once before a command starts threads that would each fail."""
    try:
        import psycopg
    except ImportError:
        return "needs psycopg (pip install 'psycopg[binary]')"
    try:
        psycopg.connect(url, connect_timeout=timeout_s).close()
    except psycopg.Error as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def open_database(url: str, schema: str | None = None) -> SQLiteDatabase | PostgresDatabase:
    """`postgresql://...` (or `postgres://`) opens PostgreSQL (in `schema`, if given);
    `sqlite:///PATH` or a bare path opens SQLite."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url, schema)
    if url.startswith("sqlite:///"):
        return SQLiteDatabase(url.removeprefix("sqlite:///"))
    return SQLiteDatabase(url)
