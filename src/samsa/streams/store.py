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
from typing import Any

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


class KeyValueStore:
    """The state of one store for one input partition."""

    def __init__(self, spec: StoreSpec, partition: int) -> None:
        self.spec = spec
        self.partition = partition
        self._committed: dict[bytes, bytes] = {}
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
        merged = dict(self._committed)
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
        for key, data in self._pending.items():
            if data is None:
                self._committed.pop(key, None)
            else:
                self._committed[key] = data
        self._pending.clear()

    def rollback(self) -> None:
        self._pending.clear()
        self._undo.clear()

    def restore(self, key: bytes, data: bytes | None) -> None:
        """Apply one changelog record (compacted semantics: the latest value wins)."""
        if data is None:
            self._committed.pop(key, None)
        else:
            self._committed[key] = data

    def __len__(self) -> int:
        return sum(1 for _ in self.items())
