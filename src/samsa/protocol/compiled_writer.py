"""Writers compiled once per kio schema: kio's bytes in fewer Python steps.

kio's `entity_writer` writes each field through one generic loop: a range-checked phantom value
for every length and count, one `write` call per primitive, a `BytesIO` per entity for its
tagged fields. On the transaction path that was a fifth of the broker's CPU. `writer_for(cls)`
reads the same dataclass fields and their `kafka_type` metadata, as kio's does, and compiles each
entity to a list of steps: one `struct` pack for each run of fixed-size fields, lengths and
counts as varints, and the tagged-field section as one zero byte while every tagged field holds
its default (kio skips those too). The rarer values (UUIDs, timestamps, durations, the tagged
fields that are written) go through kio's own writer for that field, so the format rules stay
kio's; tests/protocol/test_compiled_writer.py checks every request and response schema samsa
serves against `kio.serial.entity_writer` on random values.

A writer appends to `Sink.small`, and hands `bytes` and `records` values to `Sink.write`, which
keeps large ones (a fetch's record sets, file regions) by reference instead of copying them.
"""

from __future__ import annotations

import dataclasses
import io
import operator
import struct
from collections.abc import Callable
from dataclasses import MISSING, Field
from typing import Any, Protocol, cast

from kio.serial._implicit_defaults import get_tagged_field_default
from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveField,
    PrimitiveTupleField,
    classify_field,
    is_optional,
)
from kio.serial._serialize import get_field_writer, get_writer
from kio.serial.errors import OutOfBoundValue
from kio.serial.writers import write_tagged_field
from kio.static.primitive import uvarint


class Sink(Protocol):
    small: bytearray

    def write(self, data: Any) -> int: ...


Step = Callable[[Sink, Any], None]

_FIXED = {
    "int8": "b",
    "int16": "h",
    "int32": "i",
    "int64": "q",
    "uint8": "B",
    "uint16": "H",
    "uint32": "I",
    "uint64": "Q",
    "float64": "d",
    "bool": "?",
    "error_code": "h",  # ErrorCode is an IntEnum: struct packs its value
}
_INT16 = struct.Struct(">h").pack
_INT32 = struct.Struct(">i").pack
_NULL_COMPACT = b"\0"  # a null compact string, bytes or array: length + 1 = 0
_NULL_LEGACY_STRING = _INT16(-1)
_NULL_LEGACY = _INT32(-1)  # a null legacy bytes or array
_NULL_ENTITY = b"\xff"  # KIP-893: a nullable struct is an int8 -1 or 1, then the struct
_PRESENT_ENTITY = b"\x01"
_NO_TAGS = b"\0"
_INT16_MAX = 2**15 - 1
_INT32_MAX = 2**31 - 1


def uvarint_bytes(value: int) -> bytes:
    """Kafka's unsigned varint: 7 bits a byte, low bits first."""
    if 0 <= value < 0x80:
        return _SMALL_UVARINTS[value]
    if value < 0:
        raise ValueError(f"an unsigned varint of {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_UVARINTS = [bytes([value]) for value in range(0x80)]
_WRITERS: dict[type[Any], Step] = {}


def writer_for(cls: type[Any]) -> Step:
    """The writer of `cls`, a kio entity class: the bytes kio's `entity_writer(cls)` writes."""
    made = _WRITERS.get(cls)
    if made is None:
        made = _WRITERS[cls] = _compile(cls)
    return made


def _compile(cls: type[Any]) -> Step:
    flexible = bool(cls.__flexible__)
    steps: list[Step] = []
    run: list[tuple[str, str]] = []  # (name, struct format) of consecutive fixed-size fields
    tagged: list[tuple[int, Field[Any], Any, Any]] = []
    request_header = cls.__name__ == "RequestHeader"
    for f in dataclasses.fields(cls):
        if "tag" in f.metadata:
            writer = get_field_writer(f, flexible, is_request_header=request_header, is_tag=True)
            tagged.append((int(f.metadata["tag"]), f, writer, get_tagged_field_default(f)))
            continue
        kind = classify_field(f)
        fixed = _FIXED.get(f.metadata.get("kafka_type", ""))
        if isinstance(kind, PrimitiveField) and fixed is not None and not is_optional(f):
            run.append((f.name, fixed))
            continue
        if run:
            steps.append(_packed(run))
            run = []
        # Kafka writes a request header's client id as a legacy string even in flexible
        # headers (RequestHeader.json), so ApiVersions can always read it.
        legacy = request_header and f.name == "client_id"
        steps.append(_field_step(f, flexible, _legacy(True, string=True) if legacy else None))
    if run:
        steps.append(_packed(run))
    if flexible:
        tagged.sort(key=operator.itemgetter(0))
        steps.append(_tags_step(tagged))
    return _sequence(steps)


def _sequence(steps: list[Step]) -> Step:
    if len(steps) == 1:
        return steps[0]
    frozen = tuple(steps)

    def write(out: Sink, entity: Any) -> None:
        for step in frozen:
            step(out, entity)

    return write


def _packed(run: list[tuple[str, str]]) -> Step:
    pack = struct.Struct(">" + "".join(fmt for _, fmt in run)).pack
    if len(run) == 1:
        name = run[0][0]

        def write_one(out: Sink, entity: Any) -> None:
            out.small += pack(getattr(entity, name))

        return write_one
    get = operator.attrgetter(*(name for name, _ in run))

    def write_run(out: Sink, entity: Any) -> None:
        out.small += pack(*get(entity))

    return write_run


def _field_step(f: Field[Any], flexible: bool, value_step: Step | None = None) -> Step:
    value_step = value_step or _value_step(f, flexible)
    name = f.name

    def write_field(out: Sink, entity: Any) -> None:
        value_step(out, getattr(entity, name))

    return write_field


def _value_step(f: Field[Any], flexible: bool) -> Step:
    """The writer of one (non-tagged) field's value, arrays included."""
    kind = classify_field(f)
    optional = is_optional(f)
    if isinstance(kind, EntityField):
        nested = writer_for(kind.type_)
        return _nullable_entity(nested) if optional else nested
    if isinstance(kind, EntityTupleField):
        return _array(writer_for(kind.type_), flexible)
    kafka_type = str(f.metadata["kafka_type"])
    if isinstance(kind, PrimitiveTupleField):
        return _array(_primitive(kafka_type, flexible, optional=False), flexible)
    return _primitive(kafka_type, flexible, optional)


def _nullable_entity(nested: Step) -> Step:
    def write(out: Sink, value: Any) -> None:
        if value is None:
            out.small += _NULL_ENTITY
            return
        out.small += _PRESENT_ENTITY
        nested(out, value)

    return write


def _array(item: Step, flexible: bool) -> Step:
    def write_compact(out: Sink, items: Any) -> None:
        if items is None:
            out.small += _NULL_COMPACT
            return
        out.small += uvarint_bytes(len(items) + 1)
        for each in items:
            item(out, each)

    def write_legacy(out: Sink, items: Any) -> None:
        if items is None:
            out.small += _NULL_LEGACY
            return
        if len(items) > _INT32_MAX:
            raise OutOfBoundValue(f"Sequence is too long for legacy array format ({len(items)})")
        out.small += _INT32(len(items))
        for each in items:
            item(out, each)

    return write_compact if flexible else write_legacy


def _primitive(kafka_type: str, flexible: bool, optional: bool) -> Step:
    fixed = _FIXED.get(kafka_type)
    if fixed is not None and not optional:
        pack = struct.Struct(">" + fixed).pack

        def write_fixed(out: Sink, value: Any) -> None:
            out.small += pack(value)

        return write_fixed
    if kafka_type in ("string", "bytes", "records"):
        if flexible:
            return _compact(optional, by_reference=kafka_type != "string")
        return _legacy(optional, string=kafka_type == "string")
    # UUIDs, timestamps, durations: rare in responses, written by kio's writer for the type.
    return cast(Step, get_writer(kafka_type, flexible, optional))  # it only calls `write`


def _compact(optional: bool, by_reference: bool) -> Step:
    """A compact string, or bytes or records (`by_reference`: maybe large, or a file region)."""

    def write(out: Sink, value: Any) -> None:
        if value is None:
            if not optional:
                raise TypeError("Unexpectedly received None value")
            out.small += _NULL_COMPACT
            return
        if isinstance(value, str):
            value = value.encode()
        out.small += uvarint_bytes(len(value) + 1)
        if by_reference:
            out.write(value)
        else:
            out.small += value

    return write


def _legacy(optional: bool, string: bool) -> Step:
    """A legacy string (int16 length) or bytes or records (int32 length)."""
    null, pack, limit = (
        (_NULL_LEGACY_STRING, _INT16, _INT16_MAX) if string else (_NULL_LEGACY, _INT32, _INT32_MAX)
    )

    def write(out: Sink, value: Any) -> None:
        if value is None:
            if not optional:
                raise TypeError("Unexpectedly received None value")
            out.small += null
            return
        if string:
            value = value.encode()
        if len(value) > limit:
            raise OutOfBoundValue(f"{len(value)} bytes are too long for a legacy length")
        out.small += pack(len(value))
        out.write(value)

    return write


def _tags_step(tagged: list[tuple[int, Field[Any], Any, Any]]) -> Step:
    if not tagged:

        def write_none(out: Sink, entity: Any) -> None:
            out.small += _NO_TAGS

        return write_none

    def write_tags(out: Sink, entity: Any) -> None:
        present = []
        for tag, f, writer, implicit in tagged:
            value = getattr(entity, f.name)
            # kio's rule for leaving a tagged field out: it holds the field's default.
            if value == f.default or (f.default is MISSING and value == implicit):
                continue
            present.append((tag, writer, value))
        if not present:
            out.small += _NO_TAGS
            return
        buffer = io.BytesIO()
        for tag, writer, value in present:
            write_tagged_field(buffer, uvarint(tag), writer, value)
        out.small += uvarint_bytes(len(present))
        out.small += buffer.getvalue()

    return write_tags
