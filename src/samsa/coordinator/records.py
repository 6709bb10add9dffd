"""Coordinator logs: keyed records in v2 batches on an internal topic's partition log.

A coordinator appends a record and changes its state only once the record is durable; at start
it replays the same records through the same code. Batches are built with kio's writer.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Iterator

from kio.records.readers import read_batch
from kio.records.schema import NewRecordBatch, Record
from kio.records.writers import write_new_batch
from kio.static.primitive import TZAwareMicros, i8, i16, i32, i64

from samsa.log.partition import PartitionLog
from samsa.protocol.batch import parse_header


def record_batch(key: bytes, value: bytes | None, timestamp_ms: int) -> bytes:
    record = Record(
        attributes=i8(0),
        timestamp=TZAwareMicros.parse(
            datetime.datetime.fromtimestamp(timestamp_ms / 1000, datetime.UTC)
        ),
        offset=i64(0),
        key=key,
        value=value,
        headers=(),
    )
    batch = NewRecordBatch(
        producer_id=i64(-1),
        producer_epoch=i16(-1),
        base_sequence=i32(-1),
        records=(record,),
        attributes=i16(0),
    )
    buffer = io.BytesIO()
    write_new_batch(buffer, batch)
    return buffer.getvalue()


def append_record(log: PartitionLog, key: bytes, value: bytes | None, now_ms: int) -> int:
    """Append one record; returns the offset the log must be durable to (its end)."""
    data = record_batch(key, value, now_ms)
    written = log.append(data, parse_header(data), now_ms)
    if not hasattr(written, "next_offset"):
        raise RuntimeError("a coordinator record was taken for a duplicate")
    return log.log_end_offset


def read_records(log: PartitionLog) -> Iterator[tuple[int, bytes | None, bytes | None, bool]]:
    """(offset, key, value, is_control) of every record in the log, in order."""
    for segment in log.segments:
        for position, header in segment.batches():
            data = segment.read(position, position + header.size)
            batch, _ = read_batch(data, 0)
            for record in batch.records:
                yield int(record.offset), record.key, record.value, header.is_control
