"""Databases for the effects tests: SQLite (a file) and the real PostgreSQL server.

PostgreSQL is at SAMSA_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test). When it
is unreachable the PostgreSQL cases are skipped LOUDLY, or fail under SAMSA_REQUIRE_ALL=1 (CI).
Each test gets a private schema, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from samsa.effects.db import PostgresDatabase, SQLiteDatabase
from samsa.testing.requirements import missing

POSTGRES_URL = os.environ.get("SAMSA_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_or_skip() -> str:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except Exception as exc:
        message = (
            f"POSTGRESQL UNREACHABLE at {POSTGRES_URL} ({exc!r}): the PostgreSQL dedup-store "
            "tests did NOT run"
        )
        missing(message)
    return POSTGRES_URL


class Databases:
    """Opens databases of one kind that share one place (a file, or a schema), as separate
    processes or consumers would."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.path = str(tmp_path / "effects.db")
        self.schema = f"samsa_test_{uuid.uuid4().hex[:10]}"
        self.url = postgres_or_skip() if kind == "postgres" else self.path
        self.opened: list[SQLiteDatabase | PostgresDatabase] = []

    def open(self) -> SQLiteDatabase | PostgresDatabase:
        database: SQLiteDatabase | PostgresDatabase
        if self.kind == "postgres":
            database = PostgresDatabase(self.url, self.schema)
        else:
            database = SQLiteDatabase(self.path)
        self.opened.append(database)
        return database

    def close(self) -> None:
        for database in self.opened:
            database.close()
        if self.kind == "postgres":
            cleanup = PostgresDatabase(self.url)
            with cleanup.transaction() as tx:
                tx.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            cleanup.close()


@pytest.fixture(params=["sqlite", "postgres"])
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    dbs = Databases(request.param, tmp_path)
    try:
        yield dbs
    finally:
        dbs.close()
