"""Coordinator logs: keyed records in v2 batches on an internal topic's partition log.

A coordinator appends a record and changes its state only once the record is durable; at start
it replays the same records through the same code. Batches are built with kio's writer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from kio.records.readers import read_batch
from kio.schema.errors import ErrorCode

from samsa.log.partition import PartitionLog, StorageError
from samsa.protocol.batch import TRANSACTIONAL_FLAG, BatchHeader, parse_header
from samsa.protocol.batch_writer import record_batch
from samsa.state.producers import Duplicate


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

    A write the disk refuses (and the log undid) returns an offset past the log end: a wait
    for a write that is not in the log fails at once, so the caller answers as for a failed
    fsync, and the coordinator's log stays online for the next write (a full disk that has room
    again). A write that could not be undone has taken the log offline (as Kafka unloads a
    coordinator whose log dir fails).
    """
    data = record_batch(
        [value for _, value in records],
        keys=[key for key, _ in records],
        timestamp_ms=now_ms,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        attributes=TRANSACTIONAL_FLAG if transactional else 0,
    )
    try:
        written = log.append(data, parse_header(data), now_ms, verify_txn, coordinator=True)
    except StorageError:
        return log.log_end_offset + 1
    if isinstance(written, Duplicate):
        raise RuntimeError("a coordinator batch was taken for a duplicate")
    return log.log_end_offset


def append_record(log: PartitionLog, key: bytes, value: bytes | None, now_ms: int) -> int:
    """Append one record; returns the offset the log must be durable to (its end)."""
    return append_records(log, [(key, value)], now_ms)


def read_records(log: PartitionLog) -> Iterator[tuple[int, bytes | None, bytes | None, bool]]:
    """(offset, key, value, is_control) of every record in the log, in order."""
    for header, data in log.batches(log.log_start_offset, log.log_end_offset):
        batch, _ = read_batch(data, 0)
        for record in batch.records:
            yield int(record.offset), record.key, record.value, header.is_control
