"""The records inside one stored v2 batch, for ListOffsets by timestamp and the simulation.

The produce and fetch paths never decode records for this; only a timestamp lookup does, on
the one batch that holds the answer. Decompression goes through `samsa.protocol.compression`
with the same bound as produce (`message.decompressed.max.bytes`), and every length is checked
against the bytes: a stored batch that does not decode within the bound (one written before
samsa validated records, or under a larger bound) raises `DecompressionFailed` or
`RecordsInvalid` to the caller, never an allocation of what the batch claims.
"""

from __future__ import annotations

from dataclasses import dataclass

from samsa.protocol.batch import HEADER_BYTES, TIMESTAMP_TYPE_MASK, parse_header
from samsa.protocol.compression import inflate
from samsa.protocol.records_walk import RecordsInvalid, read_varint

# What a read inflates a batch to at most when the caller names no bound (the broker setting's
# default).
INFLATED_BYTES_MAX = 16 * 1024 * 1024
_INT32_BYTES_MAX = 5
_INT64_BYTES_MAX = 10


@dataclass(frozen=True, slots=True)
class RecordView:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[bytes, bytes | None], ...] = ()  # read only if asked for


def records(
    batch: bytes, inflated_bytes_max: int = INFLATED_BYTES_MAX, with_headers: bool = False
) -> list[RecordView]:
    """Every record of a stored batch, in order (headers skipped unless `with_headers`)."""
    header = parse_header(batch)
    log_append_time = bool(header.attributes & TIMESTAMP_TYPE_MASK)
    with memoryview(batch) as view:
        data = inflate(header.compression, view[HEADER_BYTES : header.size], inflated_bytes_max)
    found = []
    position = 0
    try:
        for index in range(header.records_count):
            length, position = read_varint(data, position, _INT32_BYTES_MAX)
            end = position + length
            if length < 0 or end > len(data):
                raise RecordsInvalid(f"record {index} has length {length}")
            position += 1  # record attributes
            timestamp_delta, position = read_varint(data, position, _INT64_BYTES_MAX)
            offset_delta, position = read_varint(data, position, _INT32_BYTES_MAX)
            key, position = _bytes(data, position, end)
            value, position = _bytes(data, position, end)
            headers = _headers(data, position, end) if with_headers else ()
            timestamp = (
                header.max_timestamp if log_append_time else header.base_timestamp + timestamp_delta
            )
            found.append(
                RecordView(header.base_offset + offset_delta, timestamp, key, value, headers)
            )
            position = end
    except IndexError:
        raise RecordsInvalid("the records end before the batch header's count") from None
    return found


def _bytes(data: bytes, position: int, end: int) -> tuple[bytes | None, int]:
    length, position = read_varint(data, position, _INT32_BYTES_MAX)
    if length < 0:
        return None, position
    if position + length > end:
        raise RecordsInvalid(f"a field of {length} bytes overruns its record")
    return data[position : position + length], position + length


def _headers(data: bytes, position: int, end: int) -> tuple[tuple[bytes, bytes | None], ...]:
    count, position = read_varint(data, position, _INT32_BYTES_MAX)
    if count < 0 or count > end - position:
        raise RecordsInvalid(f"a record claims {count} headers")
    headers = []
    for _ in range(count):
        key, position = _bytes(data, position, end)
        value, position = _bytes(data, position, end)
        if key is None:
            raise RecordsInvalid("a record header without a key")
        headers.append((key, value))
    return tuple(headers)


def record_timestamps(
    batch: bytes, inflated_bytes_max: int = INFLATED_BYTES_MAX
) -> list[tuple[int, int]]:
    """(offset, timestamp) of every record in a stored batch, in order."""
    return [(record.offset, record.timestamp) for record in records(batch, inflated_bytes_max)]
