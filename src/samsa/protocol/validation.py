"""Validating a produced batch as Kafka's LogValidator does, before anything is written.

    validate(records, policy, now_ms) -> Validated(header, records, log_append_time_ms)

Theory of operation. A Produce v3+ request carries one magic-2 batch per partition. First the
header (`samsa.protocol.batch.validate_produced`: size, magic, CRC, offsets, control flag,
sequence), then the codec (0-4, else UNSUPPORTED_COMPRESSION_TYPE), then the records: they are
decompressed within `policy.inflated_bytes_max` (CORRUPT_MESSAGE past it or on a codec error,
`samsa.protocol.compression`) and every record is walked (INVALID_RECORD if one does not parse,
`samsa.protocol.records_walk`). Then the per-record rules, which Kafka reports with KIP-467
record errors (each record's batch index and a message): a compacted topic takes only records
with keys (INVALID_RECORD), and with CreateTime each record's timestamp must lie within
[now - message.timestamp.before.max.ms, now + message.timestamp.after.max.ms] (KIP-937,
INVALID_TIMESTAMP).

A batch that passes is stored as it came, except its max timestamp, which Kafka never takes on
trust: with CreateTime it becomes the largest record timestamp (Sarama writes -1, and a batch
with -1 is invisible to ListOffsets by timestamp and to time-based retention); with
LogAppendTime the timestamp-type attribute is set and the max timestamp becomes the append
time. Either change is inside the CRC, so the CRC is computed again; a batch whose header was
already right is not copied.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c
from kio.schema.errors import ErrorCode

from samsa.protocol.batch import (
    CRC_START,
    HEADER_BYTES,
    TIMESTAMP_TYPE_MASK,
    BatchHeader,
    InvalidBatch,
    RecordError,
    parse_header,
    validate_produced,
)
from samsa.protocol.compression import NONE, DecompressionFailed, inflate, is_known
from samsa.protocol.records_walk import RecordsInvalid, walk

NO_TIMESTAMP = -1
# Record errors listed in one response at most: a batch of a million keyless records must not
# produce a response of a million messages.
RECORD_ERRORS_MAX = 100
# attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64, from byte 21 + 4
_ATTRIBUTES_AT = CRC_START
_MAX_TIMESTAMP_AT = CRC_START + 2 + 4 + 8
_CRC = struct.Struct(">I")
_ATTRIBUTES = struct.Struct(">h")
_TIMESTAMP = struct.Struct(">q")


@dataclass(frozen=True, slots=True)
class RecordPolicy:
    """What one topic accepts: its configs and the broker's, resolved once per topic."""

    message_bytes_max: int
    inflated_bytes_max: int
    log_append_time: bool = False
    timestamp_before_max_ms: int = 2**63 - 1
    timestamp_after_max_ms: int = 2**63 - 1
    compacted: bool = False


@dataclass(frozen=True, slots=True)
class Validated:
    header: BatchHeader
    records: bytes
    log_append_time_ms: int  # -1 unless the topic uses LogAppendTime


def validate(records: bytes, policy: RecordPolicy, now_ms: int) -> Validated:
    """The batch of one partition, checked; `InvalidBatch` with the partition's error code if
    it must be refused."""
    header = validate_produced(records, policy.message_bytes_max)
    codec = header.compression
    if not is_known(codec):
        raise InvalidBatch(
            ErrorCode.unsupported_compression_type, f"unknown compression codec {codec}"
        )
    data, start = records, HEADER_BYTES
    if codec != NONE:
        with memoryview(records) as view:
            try:
                data, start = inflate(codec, view[HEADER_BYTES:], policy.inflated_bytes_max), 0
            except DecompressionFailed as exc:
                raise InvalidBatch(ErrorCode.corrupt_message, str(exc)) from None
    batch_log_append_time = bool(header.attributes & TIMESTAMP_TYPE_MASK)
    check_bounds = not policy.log_append_time and not batch_log_append_time
    low, high = _delta_bounds(header.base_timestamp, policy, now_ms, check_bounds)
    try:
        walked = walk(data, header.records_count, low, high, policy.compacted, start)
    except RecordsInvalid as exc:
        raise InvalidBatch(ErrorCode.invalid_record, str(exc)) from None
    errors = _record_errors(header, policy, now_ms, walked.keyless, walked.timestamp_outliers)
    if policy.log_append_time:
        if batch_log_append_time:
            errors = errors or _all_records(header, "the producer may not set LogAppendTime")
        _refuse(errors)
        return _rewrite(records, header, True, now_ms, now_ms)
    if batch_log_append_time:
        # Kafka reads a LogAppendTime batch's records as all at its max timestamp; a CreateTime
        # topic checks that against its bounds, and stores the batch as CreateTime.
        stamp = header.max_timestamp
        if stamp == NO_TIMESTAMP:
            errors = errors or _all_records(header, "the producer may not set LogAppendTime")
        elif not _within(stamp, policy, now_ms):
            errors = errors or _all_records(header, _out_of_range(stamp, policy, now_ms))
        _refuse(errors)
        return _rewrite(records, header, False, stamp, NO_TIMESTAMP)
    _refuse(errors)
    max_timestamp = max(NO_TIMESTAMP, header.base_timestamp + walked.timestamp_delta_max)
    return _rewrite(records, header, False, max_timestamp, NO_TIMESTAMP)


def _delta_bounds(
    base_timestamp: int, policy: RecordPolicy, now_ms: int, check: bool
) -> tuple[int, int]:
    """The timestamp deltas whose records lie within the topic's bounds."""
    if not check:
        return -(2**64), 2**64
    return (
        now_ms - policy.timestamp_before_max_ms - base_timestamp,
        now_ms + policy.timestamp_after_max_ms - base_timestamp,
    )


def _within(timestamp: int, policy: RecordPolicy, now_ms: int) -> bool:
    return (
        now_ms - timestamp <= policy.timestamp_before_max_ms
        and timestamp - now_ms <= policy.timestamp_after_max_ms
    )


def _out_of_range(timestamp: int, policy: RecordPolicy, now_ms: int) -> str:
    low = now_ms - policy.timestamp_before_max_ms
    high = now_ms + policy.timestamp_after_max_ms
    return f"timestamp {timestamp} is out of range [{low}, {high}]"


def _record_errors(
    header: BatchHeader,
    policy: RecordPolicy,
    now_ms: int,
    keyless: list[int],
    outliers: list[tuple[int, int]],
) -> list[tuple[ErrorCode, RecordError]]:
    """Kafka checks each record for a key first, then its timestamp: one error a record. A
    record without a timestamp (-1) is never out of range."""
    errors: dict[int, tuple[ErrorCode, RecordError]] = {}
    for index in keyless:
        message = "a compacted topic cannot accept a record without a key"
        errors[index] = (ErrorCode.invalid_record, (index, message))
    for index, delta in outliers:
        timestamp = header.base_timestamp + delta
        if index not in errors and timestamp != NO_TIMESTAMP:
            message = _out_of_range(timestamp, policy, now_ms)
            errors[index] = (ErrorCode.invalid_timestamp, (index, message))
    return [errors[index] for index in sorted(errors)]


def _all_records(header: BatchHeader, message: str) -> list[tuple[ErrorCode, RecordError]]:
    return [
        (ErrorCode.invalid_timestamp, (index, message))
        for index in range(min(header.records_count, RECORD_ERRORS_MAX))
    ]


def _refuse(errors: list[tuple[ErrorCode, RecordError]]) -> None:
    """Kafka's processRecordErrors: INVALID_TIMESTAMP if any record has a bad timestamp,
    else INVALID_RECORD, with the records' batch indexes (KIP-467)."""
    if not errors:
        return
    listed = tuple(error for _, error in errors[:RECORD_ERRORS_MAX])
    if any(code == ErrorCode.invalid_timestamp for code, _ in errors):
        raise InvalidBatch(
            ErrorCode.invalid_timestamp,
            "one or more records have been rejected due to invalid timestamp",
            listed,
        )
    raise InvalidBatch(
        ErrorCode.invalid_record,
        f"one or more records have been rejected due to {len(errors)} record errors; "
        f"the first: {listed[0][1]}",
        listed,
    )


def _rewrite(
    records: bytes,
    header: BatchHeader,
    log_append_time: bool,
    max_timestamp: int,
    log_append_time_ms: int,
) -> Validated:
    """Set the batch's timestamp type and max timestamp (Kafka's setMaxTimestamp): the batch
    as it came if both are already right, else a copy with the CRC computed again."""
    attributes = header.attributes & ~TIMESTAMP_TYPE_MASK
    if log_append_time:
        attributes |= TIMESTAMP_TYPE_MASK
    if attributes == header.attributes and max_timestamp == header.max_timestamp:
        return Validated(header, records, log_append_time_ms)
    rewritten = bytearray(records)
    _ATTRIBUTES.pack_into(rewritten, _ATTRIBUTES_AT, attributes)
    _TIMESTAMP.pack_into(rewritten, _MAX_TIMESTAMP_AT, max_timestamp)
    with memoryview(rewritten) as view:
        crc = crc32c.crc32c(view[CRC_START:])
    _CRC.pack_into(rewritten, CRC_START - _CRC.size, crc)
    data = bytes(rewritten)
    return Validated(parse_header(data), data, log_append_time_ms)
