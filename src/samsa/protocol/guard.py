"""A pre-check of request bytes before kio's native reader sees them.

kio's reader (Rust) reserves room for an array from the count on the wire before reading any
element, so a count near 2^31 in a 60-byte frame aborts the whole process on a failed
allocation. `check` walks the same schema kio will read and rejects a frame in which an array
announces more elements than there are bytes left (every element takes at least one byte), or is
null where the schema does not allow it (kio would hand handlers a None; Kafka rejects those).
Everything else (strings, bytes, values) is left to kio, which bounds-checks those.
"""

from __future__ import annotations

import dataclasses
import struct
import typing
from typing import Any

_FIXED_SIZES = {
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "uint8": 1,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
    "float64": 8,
    "bool": 1,
    "error_code": 2,
    "timedelta_i32": 4,
    "timedelta_i64": 8,
    "datetime_i64": 8,
    "uuid": 16,
}
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_NULL_ENTITY = -1


class Malformed(Exception):
    """The frame cannot be a well-formed instance of the schema."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    kafka_type: str | None  # None for a nested entity
    entity: type[Any] | None
    array: bool
    nullable_array: bool
    nullable_entity: bool
    legacy_string: bool  # RequestHeader.client_id: a legacy string even in flexible headers


_Plan = tuple[tuple[_Field, ...], dict[int, _Field]]
_PLANS: dict[type[Any], _Plan] = {}


def _plan(cls: type[Any]) -> _Plan:
    cached = _PLANS.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    regular: list[_Field] = []
    tagged: dict[int, _Field] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        inner = next((a for a in args if a is not type(None)), hint) if optional else hint
        array = typing.get_origin(inner) is tuple
        element = typing.get_args(inner)[0] if array else inner
        entity = element if dataclasses.is_dataclass(element) else None
        plan = _Field(
            kafka_type=None if entity is not None else str(f.metadata["kafka_type"]),
            entity=entity if isinstance(entity, type) else None,
            array=array,
            nullable_array=array and optional,
            nullable_entity=entity is not None and optional and not array,
            legacy_string=cls.__name__ == "RequestHeader" and f.name == "client_id",
        )
        if "tag" in f.metadata:
            tagged[int(f.metadata["tag"])] = plan
        else:
            regular.append(plan)
    _PLANS[cls] = (tuple(regular), tagged)
    return _PLANS[cls]


class _Cursor:
    __slots__ = ("data", "end", "position")

    def __init__(self, data: bytes | memoryview, position: int, end: int) -> None:
        self.data = data
        self.position = position
        self.end = end

    @property
    def remaining(self) -> int:
        return self.end - self.position

    def skip(self, size: int) -> None:
        if size > self.remaining:
            raise Malformed(f"{size} bytes announced, {self.remaining} left")
        self.position += size

    def int8(self) -> int:
        self.skip(1)
        value = self.data[self.position - 1]
        return value - 256 if value > 127 else value

    def int16(self) -> int:
        self.skip(2)
        return int(_INT16.unpack_from(self.data, self.position - 2)[0])

    def int32(self) -> int:
        self.skip(4)
        return int(_INT32.unpack_from(self.data, self.position - 4)[0])

    def uvarint(self) -> int:
        value = 0
        for shift in range(0, 35, 7):
            self.skip(1)
            byte = self.data[self.position - 1]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise Malformed("varint longer than 5 bytes")


def check(schema: type[Any], data: bytes | memoryview, offset: int = 0) -> int:
    """Walk one `schema` entity from `offset`; the offset after it. Raises `Malformed`."""
    cursor = _Cursor(data, offset, len(data))
    _entity(schema, cursor)
    return cursor.position


def _entity(cls: type[Any], cursor: _Cursor) -> None:
    flexible = bool(cls.__flexible__)
    regular, tagged = _plan(cls)
    for field in regular:
        _field(field, flexible, cursor)
    if not flexible:
        return
    for _ in range(cursor.uvarint()):  # each tag takes at least two bytes: this ends
        tag = cursor.uvarint()
        size = cursor.uvarint()
        start = cursor.position
        cursor.skip(size)
        known = tagged.get(tag)
        if known is not None:
            _field(known, flexible, _Cursor(cursor.data, start, start + size))


def _field(field: _Field, flexible: bool, cursor: _Cursor) -> None:
    if not field.array:
        _value(field, flexible, cursor)
        return
    count = cursor.uvarint() - 1 if flexible else cursor.int32()
    if count < 0:
        if count == -1 and field.nullable_array:
            return
        raise Malformed(f"array of {count} elements in a field that is not nullable")
    if count > cursor.remaining:
        raise Malformed(f"array of {count} elements in {cursor.remaining} bytes")
    for _ in range(count):
        _value(field, flexible, cursor)


def _value(field: _Field, flexible: bool, cursor: _Cursor) -> None:
    if field.entity is not None:
        if field.nullable_entity and cursor.int8() == _NULL_ENTITY:
            return
        _entity(field.entity, cursor)
        return
    kafka_type = field.kafka_type or ""
    fixed = _FIXED_SIZES.get(kafka_type)
    if fixed is not None:
        cursor.skip(fixed)
    elif field.legacy_string or (kafka_type == "string" and not flexible):
        cursor.skip(max(cursor.int16(), 0))
    elif not flexible:  # bytes, records
        cursor.skip(max(cursor.int32(), 0))
    else:  # compact string, bytes, records: length + 1, 0 for null
        cursor.skip(max(cursor.uvarint() - 1, 0))
