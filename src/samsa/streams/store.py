"""Key-value state stores, one per (store, partition), backed by a changelog topic.

A store holds serialised bytes: what the application reads back is always a fresh copy, so
mutating a value in place cannot leak past a rollback. Writes go to `pending` until the runtime
commits; the pending writes are exactly the changelog records of the open commit, so the
runtime writes them in the same transaction as the outputs and the input offsets, and
`rollback()` after an abort puts the store back to what the committed offsets imply.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from samsa.streams.serde import Serde

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """A declared store; its changelog is `<application id>-<name>-changelog`."""

    name: str
    key_serde: Serde
    value_serde: Serde

    def changelog_topic(self, application_id: str) -> str:
        return f"{application_id}-{self.name}-changelog"


class Table(Protocol):
    """Where a store keeps its committed state: memory, or disk (samsa/streams/local.py)."""

    def get(self, key: bytes) -> bytes | None: ...

    def items(self) -> Iterator[tuple[bytes, bytes]]: ...

    def apply(self, changes: dict[bytes, bytes | None]) -> None: ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...


class MemoryTable:
    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted(self._data.items()))

    def apply(self, changes: dict[bytes, bytes | None]) -> None:
        for key, data in changes.items():
            if data is None:
                self._data.pop(key, None)
            else:
                self._data[key] = data

    def __len__(self) -> int:
        return len(self._data)

    def close(self) -> None:
        self._data.clear()


class KeyValueStore:
    """The state of one store for one input partition."""

    def __init__(self, spec: StoreSpec, partition: int, table: Table | None = None) -> None:
        self.spec = spec
        self.partition = partition
        self._committed: Table = MemoryTable() if table is None else table
        self._pending: dict[bytes, bytes | None] = {}
        # The pending entry each key had before the current record wrote it (_MISSING: none),
        # so a record that fails can be undone alone (handlers.py: skip, dead_letter).
        self._undo: dict[bytes, Any] = {}

    def _key(self, key: Any) -> bytes:
        data = self.spec.key_serde.serialize(key)
        if data is None:
            raise ValueError(f"store {self.spec.name!r}: keys cannot be None")
        return data

    def get(self, key: Any, default: Any = None) -> Any:
        data = self._raw(self._key(key))
        return default if data is None else self.spec.value_serde.deserialize(data)

    def put(self, key: Any, value: Any) -> None:
        if value is None:
            self.delete(key)
            return
        self._write(self._key(key), self.spec.value_serde.serialize(value))

    def delete(self, key: Any) -> None:
        self._write(self._key(key), None)

    def _write(self, key: bytes, data: bytes | None) -> None:
        if key not in self._undo:
            self._undo[key] = self._pending.get(key, _MISSING)
        self._pending[key] = data

    def __contains__(self, key: Any) -> bool:
        return self._raw(self._key(key)) is not None

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Every (key, value), pending writes included."""
        merged = dict(self._committed.items())
        for key, data in self._pending.items():
            if data is None:
                merged.pop(key, None)
            else:
                merged[key] = data
        for key, data in sorted(merged.items()):
            yield self.spec.key_serde.deserialize(key), self.spec.value_serde.deserialize(data)

    def _raw(self, key: bytes) -> bytes | None:
        data = self._pending.get(key, _MISSING)
        if data is _MISSING:
            return self._committed.get(key)
        return data  # type: ignore[no-any-return]

    # -- used by the runtime --

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """The changelog records of the open commit: key -> latest value (None: deleted)."""
        return list(self._pending.items())

    def first_change(self) -> tuple[bytes, bytes | None] | None:
        """The oldest pending write, if any (its key's latest value)."""
        return next(iter(self._pending.items()), None)

    def begin_record(self) -> None:
        self._undo.clear()

    def undo_record(self) -> None:
        """Take back the writes of the record since `begin_record()`."""
        for key, data in self._undo.items():
            if data is _MISSING:
                self._pending.pop(key, None)
            else:
                self._pending[key] = data
        self._undo.clear()

    def commit(self) -> None:
        self._committed.apply(self._pending)
        self._pending.clear()

    def rollback(self) -> None:
        self._pending.clear()
        self._undo.clear()

    def restore(self, key: bytes, data: bytes | None) -> None:
        """Apply one changelog record (compacted semantics: the latest value wins)."""
        self._committed.apply({key: data})

    def restore_many(self, changes: dict[bytes, bytes | None]) -> None:
        """Apply consecutive changelog records: key -> the latest of their values."""
        self._committed.apply(changes)

    def close(self) -> None:
        self._committed.close()

    def __len__(self) -> int:
        return sum(1 for _ in self.items())
