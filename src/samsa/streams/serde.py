"""Serialisation of keys and values: bytes (as is), str (UTF-8) and JSON.

A serde turns a Python value into the bytes of a Kafka record and back. `None` is always
`None` on the wire (a null key, or a tombstone value), whatever the serde.
"""

from __future__ import annotations

import json
from typing import Any, Protocol


class Serde(Protocol):
    name: str

    def serialize(self, value: Any) -> bytes | None: ...

    def deserialize(self, data: bytes | None) -> Any: ...


class BytesSerde:
    name = "bytes"

    def serialize(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"the bytes serde needs bytes, got {type(value).__name__}")
        return bytes(value)

    def deserialize(self, data: bytes | None) -> Any:
        return data


class StrSerde:
    name = "str"

    def serialize(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError(f"the str serde needs str, got {type(value).__name__}")
        return value.encode()

    def deserialize(self, data: bytes | None) -> Any:
        return None if data is None else data.decode()


class JsonSerde:
    name = "json"

    def serialize(self, value: Any) -> bytes | None:
        if value is None:
            return None
        # sort_keys: equal values give equal bytes, so changelog keys compare as the values do.
        return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()

    def deserialize(self, data: bytes | None) -> Any:
        return None if data is None else json.loads(data)


BYTES: Serde = BytesSerde()
STR: Serde = StrSerde()
JSON: Serde = JsonSerde()
_BY_NAME: dict[str, Serde] = {s.name: s for s in (BYTES, STR, JSON)}


def resolve(serde: Serde | str) -> Serde:
    """A serde, or its name ("bytes", "str", "json")."""
    if isinstance(serde, str):
        try:
            return _BY_NAME[serde]
        except KeyError:
            raise ValueError(
                f"unknown serde {serde!r}; expected one of {sorted(_BY_NAME)}"
            ) from None
    return serde
