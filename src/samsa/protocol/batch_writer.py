"""Building uncompressed v2 record batches (CRC-32C, varint records, keys, headers).

The broker never builds a client's batch; its coordinators build their own records' batches
(three transaction-log records and a marker per transaction), and the simulation, the benchmarks
and the tests build batches the way a client would send them: base offset 0, so the log assigns
the real one.

The bytes are those kio's `write_new_batch` writes for the same records (tests/protocol/
test_batch_writer.py checks it on random batches); this writes them directly with `struct`
because kio's writer goes through range-checked phantom types and a datetime per record, which
cost the coordinator more than the rest of a transaction's CPU. One of kio's conversions is kept
on purpose: it passes each timestamp through `datetime`, which comes out one millisecond low for
some values (none between 2004 and 2038, many in 1970), and the bytes must stay the same.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import crc32c

from samsa.protocol.batch import HEADER_BYTES, LOG_OVERHEAD, MAGIC
from samsa.protocol.compiled_writer import uvarint_bytes

Headers = Sequence[tuple[bytes, bytes | None]]

# attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 | producerId i64 |
# producerEpoch i16 | baseSequence i32 | recordsCount i32: the CRC-covered part of the header.
_COVERED = struct.Struct(">hiqqqhii")
_COVERED_START = HEADER_BYTES - _COVERED.size  # 21: after baseOffset, length, epoch, magic, crc
_PREFIX = struct.Struct(">qiibI")
# A record's attributes byte is always 0 in v2 (KIP-98: the bits are unused).
_RECORD_ATTRIBUTES = b"\0"
_NULL = b"\x01"  # a null key, value or header value: the signed varint -1


def zigzag_varint(value: int) -> bytes:
    """`value` as Kafka's zigzag varint (records' lengths and deltas)."""
    return uvarint_bytes((value << 1) ^ (value >> 63))


def _sized(data: bytes | None) -> bytes:
    return _NULL if data is None else zigzag_varint(len(data)) + data


def _millis(timestamp_ms: int) -> int:
    # kio's writer stores `int(datetime.fromtimestamp(ms / 1000).timestamp() * 1000)`; the
    # datetime holds ms * 1000 microseconds exactly, so this is the same float arithmetic.
    return int(timestamp_ms / 1000 * 1000)


def record_batch(
    values: Sequence[bytes | None],
    *,
    timestamp_ms: int,
    keys: Sequence[bytes | None] | None = None,
    headers: Sequence[Headers] | None = None,
    timestamps_ms: Sequence[int] | None = None,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    attributes: int = 0,
    base_offset: int = 0,
) -> bytes:
    """One uncompressed batch of `values`, with optional keys, headers and per-record
    timestamps (else every record at `timestamp_ms`); `attributes` as in the batch header;
    `base_offset` 0 for a batch the log will place, the marker's own offset for a marker.

    Raises ValueError for no values or a negative timestamp (kio's writer refuses both)."""
    count = len(values)
    if count == 0:
        raise ValueError("a batch holds at least one record")
    stamps = [_millis(ms) for ms in timestamps_ms] if timestamps_ms is not None else None
    base_timestamp = stamps[0] if stamps is not None else _millis(timestamp_ms)
    max_timestamp = max(stamps) if stamps is not None else base_timestamp
    if (min(stamps) if stamps is not None else base_timestamp) < 0:
        raise ValueError("a record timestamp before 1970")
    body = bytearray()
    for i in range(count):
        record = bytearray(_RECORD_ATTRIBUTES)
        record += zigzag_varint(stamps[i] - base_timestamp) if stamps is not None else b"\0"
        record += zigzag_varint(i)
        record += _sized(keys[i] if keys is not None else None)
        record += _sized(values[i])
        pairs = headers[i] if headers is not None else ()
        record += zigzag_varint(len(pairs))
        for key, value in pairs:
            record += _sized(key)
            record += _sized(value)
        body += zigzag_varint(len(record))
        body += record
    covered = _COVERED.pack(
        attributes,
        count - 1,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    )
    crc = crc32c.crc32c(body, crc32c.crc32c(covered))
    batch_length = _COVERED_START - LOG_OVERHEAD + len(covered) + len(body)
    return b"".join((_PREFIX.pack(base_offset, batch_length, 0, MAGIC, crc), covered, body))
