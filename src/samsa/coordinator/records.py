"""Coordinator logs: keyed records in v2 batches on an internal topic's partition log.

A coordinator appends a record and changes its state only once the record is durable; at start
it replays the same records through the same code. Batches are built with kio's writer.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Callable, Iterator, Sequence

from kio.records.readers import read_batch
from kio.records.schema import NewRecordBatch, Record
from kio.records.writers import write_new_batch
from kio.schema.errors import ErrorCode
from kio.static.primitive import TZAwareMicros, i8, i16, i32, i64

from samsa.log.partition import PartitionLog
from samsa.protocol.batch import TRANSACTIONAL_FLAG, BatchHeader, parse_header
from samsa.state.producers import Duplicate


def record_batch(
    records: Sequence[tuple[bytes, bytes | None]],
    timestamp_ms: int,
    producer_id: int = -1,
    producer_epoch: int = -1,
    transactional: bool = False,
) -> bytes:
    """One batch of keyed records; transactional ones carry the producer's id and epoch."""
    timestamp = TZAwareMicros.parse(
        datetime.datetime.fromtimestamp(timestamp_ms / 1000, datetime.UTC)
    )
    batch = NewRecordBatch(
        producer_id=i64(producer_id),
        producer_epoch=i16(producer_epoch),
        base_sequence=i32(-1),
        records=tuple(
            Record(
                attributes=i8(0),
                timestamp=timestamp,
                offset=i64(i),
                key=key,
                value=value,
                headers=(),
            )
            for i, (key, value) in enumerate(records)
        ),
        attributes=i16(TRANSACTIONAL_FLAG if transactional else 0),
    )
    buffer = io.BytesIO()
    write_new_batch(buffer, batch)
    return buffer.getvalue()


def append_records(
    log: PartitionLog,
    records: Sequence[tuple[bytes, bytes | None]],
    now_ms: int,
    producer_id: int = -1,
    producer_epoch: int = -1,
    transactional: bool = False,
    verify_txn: Callable[[BatchHeader], ErrorCode] | None = None,
) -> int:
    """Append records as one batch; returns the offset the log must be durable to (its end).

    Raises `ProducerStateError` for a transactional batch the producer state refuses.
    """
    data = record_batch(records, now_ms, producer_id, producer_epoch, transactional)
    written = log.append(data, parse_header(data), now_ms, verify_txn, coordinator=True)
    if isinstance(written, Duplicate):
        raise RuntimeError("a coordinator batch was taken for a duplicate")
    return log.log_end_offset


def append_record(log: PartitionLog, key: bytes, value: bytes | None, now_ms: int) -> int:
    """Append one record; returns the offset the log must be durable to (its end)."""
    return append_records(log, [(key, value)], now_ms)


def read_records(log: PartitionLog) -> Iterator[tuple[int, bytes | None, bytes | None, bool]]:
    """(offset, key, value, is_control) of every record in the log, in order."""
    for segment in log.segments:
        for position, header in segment.batches():
            data = segment.read(position, position + header.size)
            batch, _ = read_batch(data, 0)
            for record in batch.records:
                yield int(record.offset), record.key, record.value, header.is_control
