"""Walking the records of a v2 batch: every length, varint and field checked against the bytes.

A record (Kafka's DefaultRecord) is

    length varint | attributes i8 | timestampDelta varlong | offsetDelta varint |
    keyLength varint | key | valueLength varint | value | headerCount varint |
    headers: (keyLength varint | key | valueLength varint | value) * headerCount

with zigzag varints: an int32 takes at most 5 bytes, an int64 at most 10. `walk` reads exactly
the records the header counts and refuses, as Kafka's record iterator does, a record whose fields
do not end where its length says, a batch with bytes left after its last record, and one that
ends before its last record; offset deltas must run 0, 1, 2, ... (Kafka requires consecutive
inner offsets of a v2 batch); a length below -1 is refused too (Kafka reads any negative length
as null, but its writers only write -1, and a consumer need not accept the others).

Varints are read as Kafka reads them: an int32 field keeps the low 32 bits of what it spells,
a varlong the low 64.

This is the produce hot path, run on every record the broker accepts. The walk is done by
`samsa.protocol._walk`, a C extension built at install time when a C compiler is there (about a
hundredth of the cost); without it, by `walk_python` below, the reference the extension is
tested against, whose common varints (one or two bytes) are decoded inline rather than through
a function call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

_accelerated: Callable[[bytes, int, int, bool], tuple[int, int, list[int]]] | None
try:
    from samsa.protocol import _walk as _extension
except ImportError:  # no C compiler when samsa was installed: the pure-Python walk
    _accelerated = None
else:
    _accelerated = _extension.walk

MIN_RECORD_BYTES = 7  # length, attributes, timestamp delta, offset delta, key, value, headers
_INT32_BYTES_MAX = 5
_INT64_BYTES_MAX = 10
_MASKS = {_INT32_BYTES_MAX: (1 << 32) - 1, _INT64_BYTES_MAX: (1 << 64) - 1}


class RecordsInvalid(Exception):
    """The records of a batch do not parse as Kafka's v2 records; the message says where.
    Produce answers INVALID_RECORD for the partition (Kafka's InvalidRecordException)."""


@dataclass(frozen=True, slots=True)
class Walked:
    timestamp_delta_max: int
    # (batch index, timestamp delta) of the records whose delta lies outside the bounds given
    # to `walk`, and the batch indexes of records without a key (looked for if required).
    timestamp_outliers: list[tuple[int, int]]
    keyless: list[int]


def _varint_tail(data: bytes, position: int, bytes_max: int) -> tuple[int, int]:
    """The raw (still zigzagged) value of a varint of any length; (value, next position)."""
    raw = 0
    shift = 0
    start = position
    while True:
        byte = data[position]
        position += 1
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            return raw & _MASKS[bytes_max], position
        shift += 7
        if position - start >= bytes_max:
            raise RecordsInvalid(f"varint at byte {start} is longer than {bytes_max} bytes")


def accelerated() -> bool:
    """Whether records are walked by the C extension (else by `walk_python`)."""
    return _accelerated is not None


def read_varint(data: bytes, position: int, bytes_max: int) -> tuple[int, int]:
    """A zigzag varint of at most `bytes_max` bytes: (value, next position). IndexError past
    the end of `data`, `RecordsInvalid` if it is too long."""
    raw, position = _varint_tail(data, position, bytes_max)
    return (raw >> 1) ^ -(raw & 1), position


def walk(
    data: bytes,
    count: int,
    delta_low: int,
    delta_high: int,
    keys_required: bool,
    start: int = 0,
) -> Walked:
    """Check `count` records filling `data` from `start` to its end exactly; `RecordsInvalid`
    if they do not.

    Timestamp deltas outside [delta_low, delta_high] and (if `keys_required`) null keys are
    reported by batch index, not refused here: Kafka answers those with per-record errors."""
    if count * MIN_RECORD_BYTES > len(data) - start:
        raise RecordsInvalid(
            f"{count} records cannot fit in {len(data) - start} bytes (a record takes at least "
            f"{MIN_RECORD_BYTES})"
        )
    if _accelerated is not None:
        try:
            delta_max, delta_min, keyless = _accelerated(data, start, count, keys_required)
        except ValueError as exc:
            raise RecordsInvalid(str(exc)) from None
    else:
        try:
            delta_max, delta_min, keyless = walk_python(data, count, keys_required, start)
        except IndexError:
            raise RecordsInvalid(
                f"the records end before the {count} the batch header counts"
            ) from None
    if delta_min >= delta_low and delta_max <= delta_high:
        return Walked(delta_max, [], keyless)
    # Rare: some timestamp is out of bounds. Walk again (the records are known good now),
    # this time noting which records.
    return Walked(delta_max, _outliers(data, count, delta_low, delta_high, start), keyless)


def walk_python(
    data: bytes, count: int, keys_required: bool, start: int
) -> tuple[int, int, list[int]]:
    """(max timestamp delta, min timestamp delta, keyless records) of `count` good records;
    `RecordsInvalid` or IndexError (past the end) for bad ones."""
    end = len(data)
    position = start
    delta_max = -(1 << 63)
    delta_min = 1 << 63
    keyless: list[int] = []
    for index in range(count):
        # length
        b = data[position]
        if b < 0x80:
            raw = b
            position += 1
        elif (c := data[position + 1]) < 0x80:
            raw = (b & 0x7F) | (c << 7)
            position += 2
        else:
            raw, position = _varint_tail(data, position, _INT32_BYTES_MAX)
        record_end = position + (raw >> 1)
        if raw & 1 or record_end > end:
            length = (raw >> 1) ^ -(raw & 1)
            raise RecordsInvalid(
                f"record {index} has length {length}, {end - position} bytes remain"
            )
        # attributes (unused in v2), then the timestamp delta
        b = data[position + 1]
        if b < 0x80:
            raw = b
            position += 2
        elif (c := data[position + 2]) < 0x80:
            raw = (b & 0x7F) | (c << 7)
            position += 3
        else:
            raw, position = _varint_tail(data, position + 1, _INT64_BYTES_MAX)
        delta = (raw >> 1) ^ -(raw & 1)
        if delta > delta_max:
            delta_max = delta
        if delta < delta_min:
            delta_min = delta
        # offset delta: zigzag(index) == 2 * index
        b = data[position]
        if b < 0x80:
            raw = b
            position += 1
        elif (c := data[position + 1]) < 0x80:
            raw = (b & 0x7F) | (c << 7)
            position += 2
        else:
            raw, position = _varint_tail(data, position, _INT32_BYTES_MAX)
        if raw != index << 1:
            offset_delta = (raw >> 1) ^ -(raw & 1)
            raise RecordsInvalid(f"record {index} has offset delta {offset_delta}")
        # key
        b = data[position]
        if b < 0x80:
            raw = b
            position += 1
        elif (c := data[position + 1]) < 0x80:
            raw = (b & 0x7F) | (c << 7)
            position += 2
        else:
            raw, position = _varint_tail(data, position, _INT32_BYTES_MAX)
        if raw & 1:
            if raw != 1:
                raise RecordsInvalid(f"record {index} has key length {-(raw >> 1) - 1}")
            if keys_required:
                keyless.append(index)
        else:
            position += raw >> 1
        # value
        b = data[position]
        if b < 0x80:
            raw = b
            position += 1
        elif (c := data[position + 1]) < 0x80:
            raw = (b & 0x7F) | (c << 7)
            position += 2
        else:
            raw, position = _varint_tail(data, position, _INT32_BYTES_MAX)
        if raw & 1:
            if raw != 1:
                raise RecordsInvalid(f"record {index} has value length {-(raw >> 1) - 1}")
        else:
            position += raw >> 1
        # headers
        b = data[position]
        position += 1
        if b:
            position = _headers(data, position - 1, record_end, index)
        if position != record_end:
            raise RecordsInvalid(
                f"record {index}: its fields take {position - record_end} bytes more than "
                "its length says"
            )
    if position != end:
        raise RecordsInvalid(f"{end - position} bytes follow the last record")
    return delta_max, delta_min, keyless


def _outliers(
    data: bytes, count: int, delta_low: int, delta_high: int, start: int
) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    position = start
    for index in range(count):
        raw, body = _varint_tail(data, position, _INT32_BYTES_MAX)
        raw_delta, _ = _varint_tail(data, body + 1, _INT64_BYTES_MAX)
        delta = (raw_delta >> 1) ^ -(raw_delta & 1)
        if delta < delta_low or delta > delta_high:
            found.append((index, delta))
        position = body + (raw >> 1)
    return found


def _headers(data: bytes, position: int, record_end: int, index: int) -> int:
    """Skip the headers of record `index` starting at their count; the position after them."""
    raw, position = _varint_tail(data, position, _INT32_BYTES_MAX)
    if raw & 1:
        raise RecordsInvalid(f"record {index} has header count {-(raw >> 1) - 1}")
    count = raw >> 1
    if count * 2 > record_end - position:  # a header takes at least two bytes
        raise RecordsInvalid(f"record {index} claims {count} headers in too few bytes")
    for header in range(count):
        raw, position = _varint_tail(data, position, _INT32_BYTES_MAX)
        if raw & 1:
            raise RecordsInvalid(f"record {index} header {header} has a negative key length")
        position += raw >> 1
        raw, position = _varint_tail(data, position, _INT32_BYTES_MAX)
        if raw & 1:
            if raw != 1:
                raise RecordsInvalid(f"record {index} header {header} has a bad value length")
        else:
            position += raw >> 1
        if position > record_end:
            raise RecordsInvalid(f"record {index} header {header} overruns the record")
    return position
