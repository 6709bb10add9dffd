"""Local state on disk (Kafka Streams' state.dir): each store partition in an SQLite database,
and per task (input partition) a checkpoint of the changelog offsets its stores reflect.

Theory of operation. `<state_dir>/<application_id>-<instance_id>/<partition>/` holds one
`<store>.sqlite3` per store and `checkpoint.json` ({changelog topic: offset}). A store writes
to its database only what a successful commit made current (`KeyValueStore.commit`), so the
database never holds uncommitted writes; it may lag the changelog (a crash between the Kafka
commit and the database's), never lead it. A checkpoint says: every changelog record before
this offset is in the database. It is written after a successful commit, with the
changelog's end at that moment (nothing but this instance writes its changelog partition; a
fenced instance cannot); at a clean close and hand-over always, and while running every
`checkpoint_interval_records` changelog records, as Kafka Streams does. Restoring then reads
only the changelog from the checkpoint on.

Under exactly_once a task's checkpoint is deleted once it has been read, as Kafka Streams does:
only a clean close writes it back, so after an unclean stop (kill -9) no checkpoint is found and
the local state is discarded and restored from the whole changelog, never trusted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator

CHECKPOINT = "checkpoint.json"


class SqliteTable:
    """The committed key -> value bytes of one store partition, in an SQLite database."""

    def __init__(self, path: str) -> None:
        # isolation_level=None: transactions are explicit (apply). synchronous=OFF: a lost
        # write after a power cut is caught up from the changelog, as any lag is.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL)")

    def get(self, key: bytes) -> bytes | None:
        row = self._db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.execute("SELECT k, v FROM kv ORDER BY k"):
            yield bytes(key), bytes(value)

    def apply(self, changes: dict[bytes, bytes | None]) -> None:
        if not changes:
            return
        deleted = [(k,) for k, v in changes.items() if v is None]
        written = [(k, v) for k, v in changes.items() if v is not None]
        self._db.execute("BEGIN")
        try:
            self._db.executemany("DELETE FROM kv WHERE k = ?", deleted)
            self._db.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", written)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM kv").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class TaskDirectory:
    """The directory of one task (input partition) of one instance."""

    def __init__(self, state_dir: str, owner: str, partition: int) -> None:
        self.path = os.path.join(state_dir, owner, str(partition))

    def open(self, store: str) -> SqliteTable:
        os.makedirs(self.path, exist_ok=True)
        return SqliteTable(os.path.join(self.path, f"{store}.sqlite3"))

    def read_checkpoint(self) -> dict[str, int]:
        try:
            with open(os.path.join(self.path, CHECKPOINT)) as f:
                found = json.load(f)
        except (FileNotFoundError, ValueError):
            return {}
        return {str(topic): int(offset) for topic, offset in found.items()}

    def write_checkpoint(self, offsets: dict[str, int]) -> None:
        os.makedirs(self.path, exist_ok=True)
        final = os.path.join(self.path, CHECKPOINT)
        with open(final + ".tmp", "w") as f:
            json.dump(offsets, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(final + ".tmp", final)  # a reader sees the old checkpoint or the new one

    def delete_checkpoint(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(self.path, CHECKPOINT))

    def wipe(self) -> None:
        """Discard the task's local state (it is restored from the changelog)."""
        shutil.rmtree(self.path, ignore_errors=True)
