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
from collections.abc import Callable
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


Buffer = bytes | memoryview
# A compiled check step: (data, position, end) -> the position after what it walked.
_Step = Callable[[Buffer, int, int], int]


def check(schema: type[Any], data: Buffer, offset: int = 0) -> int:
    """Walk one `schema` entity from `offset`; the offset after it. Raises `Malformed`."""
    return _checker(schema)(data, offset, len(data))


_CHECKS: dict[type[Any], _Step] = {}


def _checker(cls: type[Any]) -> _Step:
    """The walk of `cls`, compiled once from its plan: each run of fixed-size fields is one
    bounds check, each field's kind is decided here instead of at every frame."""
    made = _CHECKS.get(cls)
    return made if made is not None else _CHECKS.setdefault(cls, _compile(cls))


def _compile(cls: type[Any]) -> _Step:
    flexible = bool(cls.__flexible__)
    regular, tagged = _plan(cls)
    steps: list[_Step] = []
    run = 0  # bytes of consecutive fixed-size fields not yet checked
    for field in regular:
        fixed = _fixed_size(field)
        if fixed is not None:
            run += fixed
            continue
        if run:
            steps.append(_skip(run))
            run = 0
        steps.append(_field_step(field, flexible))
    if run:
        steps.append(_skip(run))
    if flexible:
        steps.append(_tags({tag: _field_step(f, flexible) for tag, f in tagged.items()}))
    walk = tuple(steps)

    def entity(data: Buffer, position: int, end: int) -> int:
        for step in walk:
            position = step(data, position, end)
        return position

    return entity


def _fixed_size(field: _Field) -> int | None:
    return None if field.array else _element_size(field)


def _element_size(field: _Field) -> int | None:
    """The size of one value (one element, for an array) of `field`, if it has one."""
    return None if field.entity is not None else _FIXED_SIZES.get(field.kafka_type or "")


def _skip(size: int) -> _Step:
    def skip(data: Buffer, position: int, end: int) -> int:
        if size > end - position:
            raise Malformed(f"{size} bytes announced, {end - position} left")
        return position + size

    return skip


def _advance(position: int, size: int, end: int) -> int:
    if size > end - position:
        raise Malformed(f"{size} bytes announced, {end - position} left")
    return position + size


def _int8(data: Buffer, position: int, end: int) -> tuple[int, int]:
    if position >= end:
        raise Malformed(f"1 bytes announced, {end - position} left")
    value = data[position]
    return (value - 256 if value > 127 else value), position + 1


def _int16(data: Buffer, position: int, end: int) -> tuple[int, int]:
    if end - position < 2:
        raise Malformed(f"2 bytes announced, {end - position} left")
    return int(_INT16.unpack_from(data, position)[0]), position + 2


def _int32(data: Buffer, position: int, end: int) -> tuple[int, int]:
    if end - position < 4:
        raise Malformed(f"4 bytes announced, {end - position} left")
    return int(_INT32.unpack_from(data, position)[0]), position + 4


def _uvarint(data: Buffer, position: int, end: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 35, 7):
        if position >= end:
            raise Malformed(f"1 bytes announced, {end - position} left")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
    raise Malformed("varint longer than 5 bytes")


def _field_step(field: _Field, flexible: bool) -> _Step:
    value = _value_step(field, flexible)
    if not field.array:
        return value
    nullable = field.nullable_array
    fixed = _element_size(field)

    def array(data: Buffer, position: int, end: int) -> int:
        if flexible:
            count, position = _uvarint(data, position, end)
            count -= 1
        else:
            count, position = _int32(data, position, end)
        if count < 0:
            if count == -1 and nullable:
                return position
            raise Malformed(f"array of {count} elements in a field that is not nullable")
        if count > end - position:
            raise Malformed(f"array of {count} elements in {end - position} bytes")
        if fixed is not None:
            return _advance(position, count * fixed, end)
        for _ in range(count):
            position = value(data, position, end)
        return position

    return array


def _value_step(field: _Field, flexible: bool) -> _Step:
    """The walk of one value of `field` (one element, for an array)."""
    if field.entity is not None:
        entity = _checker(field.entity)
        if not field.nullable_entity:
            return entity

        def nullable_entity(data: Buffer, position: int, end: int) -> int:
            marker, position = _int8(data, position, end)
            return position if marker == _NULL_ENTITY else entity(data, position, end)

        return nullable_entity
    kafka_type = field.kafka_type or ""
    fixed = _FIXED_SIZES.get(kafka_type)
    if fixed is not None:
        return _skip(fixed)
    if field.legacy_string or (kafka_type == "string" and not flexible):
        read_length = _int16
    elif not flexible:  # bytes, records
        read_length = _int32
    else:  # compact string, bytes, records: length + 1, 0 for null

        def compact(data: Buffer, position: int, end: int) -> int:
            length, position = _uvarint(data, position, end)
            return _advance(position, max(length - 1, 0), end)

        return compact

    def sized(data: Buffer, position: int, end: int) -> int:
        length, position = read_length(data, position, end)
        return _advance(position, max(length, 0), end)

    return sized


def _tags(known: dict[int, _Step]) -> _Step:
    def tags(data: Buffer, position: int, end: int) -> int:
        count, position = _uvarint(data, position, end)
        for _ in range(count):  # each tag takes at least two bytes: this ends
            tag, position = _uvarint(data, position, end)
            size, position = _uvarint(data, position, end)
            start = position
            position = _advance(position, size, end)
            step = known.get(tag)
            if step is not None:
                step(data, start, start + size)
        return position

    return tags
