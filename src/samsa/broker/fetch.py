"""Fetch: whole batches up to the high watermark, with long polling (max wait, min bytes).

samsa declines incremental fetch sessions (KIP-227) by answering session id 0, which every
client handles by sending full fetches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from samsa.broker.outcomes import AwaitData, Outcome
from samsa.log.partition import PartitionLog
from samsa.protocol.batch import iter_batches
from samsa.protocol.codec import Request

if TYPE_CHECKING:
    from samsa.broker.core import Broker

READ_UNCOMMITTED = 0
READ_COMMITTED = 1


@dataclass(frozen=True, slots=True)
class _Wanted:
    topic: str
    partition: int
    fetch_offset: int
    max_bytes: int
    log: PartitionLog | None


def _error_partition(index: int, error: ErrorCode) -> dict[str, Any]:
    return {
        "partition_index": index,
        "error_code": error,
        "high_watermark": -1,
        "last_stable_offset": -1,
        "log_start_offset": -1,
        "aborted_transactions": None,
        "preferred_read_replica": -1,
        # Kafka sends an empty record set with an error, never a null one: librdkafka refuses
        # the whole response over a null, and so would never see the error.
        "records": b"",
    }


def stable_offset(log: PartitionLog) -> int:
    return log.last_stable_offset


def _aborted(
    log: PartitionLog, fetch_offset: int, records: bytes | memoryview
) -> list[dict[str, int]]:
    """The aborted transactions a read_committed client needs to drop records of this fetch."""
    if not records:
        return []
    upper = fetch_offset
    for _, header in iter_batches(records):
        upper = header.next_offset
    return [
        {"producer_id": entry.producer_id, "first_offset": entry.first_offset}
        for entry in log.aborted_transactions(fetch_offset, upper)
    ]


def handle_fetch(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    isolation = int(getattr(body, "isolation_level", READ_UNCOMMITTED))
    response_bytes_max = min(
        int(getattr(body, "max_bytes", 2**31 - 1)), broker.config.fetch_max_bytes
    )
    session_id = int(getattr(body, "session_id", 0))
    session_epoch = int(getattr(body, "session_epoch", -1))
    if session_id != 0 and session_epoch not in (-1, 0):
        return broker.reply(
            request,
            {
                "throttle_time": 0,
                "error_code": ErrorCode.fetch_session_id_not_found,
                "session_id": 0,
                "responses": (),
            },
        )
    wanted = [
        _Wanted(
            topic.topic,
            int(p.partition),
            int(p.fetch_offset),
            int(p.partition_max_bytes),
            broker.topics.partition(topic.topic, p.partition),
        )
        for topic in body.topics
        for p in topic.partitions
    ]
    min_bytes = int(body.min_bytes)
    max_wait_ms = int(body.max_wait.total_seconds() * 1000)

    def attempt(final: bool) -> Any | None:
        remaining = response_bytes_max
        by_topic: dict[str, list[dict[str, Any]]] = {}
        total = 0
        has_error = False
        for want in wanted:
            partition = _read(want, isolation, remaining, min_one=total == 0)
            if partition["error_code"] != ErrorCode.none:
                has_error = True
            size = len(partition["records"] or b"")
            total += size
            remaining = max(remaining - size, 0)
            by_topic.setdefault(want.topic, []).append(partition)
        if not final and not has_error and total < min_bytes:
            return None
        return broker.reply(
            request,
            {
                "throttle_time": 0,
                "error_code": ErrorCode.none,
                "session_id": 0,
                "responses": [{"topic": t, "partitions": ps} for t, ps in by_topic.items()],
            },
        ).payload

    return AwaitData(request.correlation_id, max_wait_ms, attempt)


def _read(want: _Wanted, isolation: int, remaining: int, min_one: bool) -> dict[str, Any]:
    log = want.log
    if log is None or log.deleted:
        return _error_partition(want.partition, ErrorCode.unknown_topic_or_partition)
    if log.offline is not None:
        return _error_partition(want.partition, ErrorCode.kafka_storage_error)
    try:
        return _read_log(log, want, isolation, remaining, min_one)
    except OSError as exc:
        log.read_failed(exc)
        return _error_partition(want.partition, ErrorCode.kafka_storage_error)


def _read_log(
    log: PartitionLog, want: _Wanted, isolation: int, remaining: int, min_one: bool
) -> dict[str, Any]:
    if want.fetch_offset < log.log_start_offset or want.fetch_offset > log.log_end_offset:
        partition = _error_partition(want.partition, ErrorCode.offset_out_of_range)
        partition.update(
            high_watermark=log.high_watermark,
            last_stable_offset=stable_offset(log),
            log_start_offset=log.log_start_offset,
        )
        return partition
    size_max = min(want.max_bytes, remaining)
    if size_max < 0:  # Kafka's log read refuses a negative size (IllegalArgumentException)
        return _error_partition(want.partition, ErrorCode.unknown_server_error)
    limit = stable_offset(log) if isolation == READ_COMMITTED else log.high_watermark
    records: bytes | memoryview = b""
    if remaining > 0 or min_one:
        records = log.read(want.fetch_offset, size_max, limit, min_one)
    return {
        "partition_index": want.partition,
        "error_code": ErrorCode.none,
        "high_watermark": log.high_watermark,
        "last_stable_offset": stable_offset(log),
        "log_start_offset": log.log_start_offset,
        "aborted_transactions": (
            _aborted(log, want.fetch_offset, records) if isolation == READ_COMMITTED else None
        ),
        "preferred_read_replica": -1,
        "records": records,
    }
