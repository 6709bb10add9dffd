"""A view of Kafka's v2 record batch header, without decoding the records inside.

Layout (big-endian), 61 bytes:

    baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32 |
    attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 |
    producerId i64 | producerEpoch i16 | baseSequence i32 | recordsCount i32 | records...

The CRC-32C covers everything from `attributes` to the end, so the broker can assign offsets and
the leader epoch by rewriting the first 16 bytes without recomputing it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import crc32c
from kio.schema.errors import ErrorCode

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_BYTES = HEADER.size  # 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: the part of a batch not counted in batchLength
CRC_START = 21
MAGIC = 2

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
TRANSACTIONAL_FLAG = 0x10
CONTROL_FLAG = 0x20

NO_PRODUCER_ID = -1
NO_SEQUENCE = -1
INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class BatchHeader:
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch takes on the wire and on disk."""
        return LOG_OVERHEAD + self.batch_length

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_FLAG)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_FLAG)

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id >= 0

    @property
    def last_sequence(self) -> int:
        return increment_sequence(self.base_sequence, self.last_offset_delta)


def increment_sequence(sequence: int, increment: int) -> int:
    """Sequence arithmetic wraps at 2^31-1 (Kafka's DefaultRecordBatch.incrementSequence)."""
    if sequence > INT32_MAX - increment:
        return increment - (INT32_MAX - sequence) - 1
    return sequence + increment


def parse_header(data: bytes | memoryview, position: int = 0) -> BatchHeader:
    return BatchHeader(*HEADER.unpack_from(data, position))


def crc_ok(data: bytes | memoryview, position: int, header: BatchHeader) -> bool:
    end = position + header.size
    with memoryview(data) as view:  # no copy of the batch just to checksum it
        return bool(crc32c.crc32c(view[position + CRC_START : end]) == header.crc)


def iter_batches(data: bytes | memoryview) -> Iterator[tuple[int, BatchHeader]]:
    """(position, header) of each whole batch in `data`; stops at the first partial one."""
    position = 0
    end = len(data)
    while end - position >= HEADER_BYTES:
        header = parse_header(data, position)
        if header.batch_length < HEADER_BYTES - LOG_OVERHEAD or position + header.size > end:
            return
        yield position, header
        position += header.size


# KIP-467: a record that caused its batch to be refused, as (batch index, message or None).
RecordError = tuple[int, str | None]


class InvalidBatch(Exception):
    """A produced batch that fails validation; `error` is the code for that partition, and
    `record_errors` name the records that caused it where Kafka names them (KIP-467)."""

    def __init__(
        self, error: ErrorCode, message: str, record_errors: tuple[RecordError, ...] = ()
    ) -> None:
        super().__init__(message)
        self.error = error
        self.record_errors = record_errors


def validate_produced(records: bytes, message_bytes_max: int) -> BatchHeader:
    """Check the records of one partition of a Produce v3+ request; return the batch header.

    Produce v3+ carries exactly one magic-2 batch per partition (ProduceRequest.validateRecords),
    clients may not write control batches, and the CRC must match (LogValidator).
    """
    if len(records) < HEADER_BYTES:
        raise InvalidBatch(ErrorCode.corrupt_message, f"{len(records)} bytes is not a batch")
    header = parse_header(records)
    if header.magic != MAGIC:
        raise InvalidBatch(ErrorCode.invalid_record, f"magic {header.magic}, expected {MAGIC}")
    if header.size != len(records):
        if header.size < len(records) and header.size >= HEADER_BYTES:
            raise InvalidBatch(ErrorCode.invalid_record, "more than one batch in a v3+ produce")
        raise InvalidBatch(ErrorCode.corrupt_message, "batch length does not match the records")
    if header.size > message_bytes_max:
        raise InvalidBatch(
            ErrorCode.message_too_large,
            f"batch of {header.size} bytes exceeds message.max.bytes={message_bytes_max}",
        )
    if not crc_ok(records, 0, header):
        raise InvalidBatch(ErrorCode.corrupt_message, "CRC-32C mismatch")
    if header.is_control:
        raise InvalidBatch(ErrorCode.invalid_record, "clients may not write control batches")
    if header.last_offset_delta < 0 or header.records_count != header.last_offset_delta + 1:
        raise InvalidBatch(
            ErrorCode.invalid_record,
            f"{header.records_count} records with last offset delta {header.last_offset_delta}",
        )
    if header.has_producer_id and header.base_sequence < 0:
        raise InvalidBatch(ErrorCode.invalid_record, "idempotent batch without a sequence")
    return header


_ASSIGN = struct.Struct(">qii")


def assign_offset(
    records: bytes, header: BatchHeader, base_offset: int, leader_epoch: int
) -> tuple[BatchHeader, bytes, memoryview]:
    """The batch with its base offset and partition leader epoch set (outside the CRC): its
    new header, and the batch as a new 16-byte prefix and a view of the rest (not copied)."""
    head = _ASSIGN.pack(base_offset, header.batch_length, leader_epoch)
    h = header  # built field by field: `dataclasses.replace` costs three times as much
    assigned = BatchHeader(
        base_offset,
        h.batch_length,
        leader_epoch,
        h.magic,
        h.crc,
        h.attributes,
        h.last_offset_delta,
        h.base_timestamp,
        h.max_timestamp,
        h.producer_id,
        h.producer_epoch,
        h.base_sequence,
        h.records_count,
    )
    return assigned, head, memoryview(records)[16:]
