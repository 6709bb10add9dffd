"""Fetch: whole batches up to the high watermark, with long polling (max wait, min bytes).

Record sets of `ZERO_COPY_MIN_BYTES` or more are not read here: the log gives a `FileRegion`,
which the connection sends from the segment file with `os.sendfile` (Kafka's zero-copy
transfer), or reads just before sending where the transport cannot (TLS).

samsa declines incremental fetch sessions (KIP-227) by answering session id 0, which every
client handles by sending full fetches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12.request import FetchRequest
from kio.schema.fetch.v12.response import (
    AbortedTransaction,
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from kio.schema.types import BrokerId, ProducerId, TopicName
from kio.static.primitive import Records, i32, i64
from kio.static.protocol import ResponsePayload

from samsa.broker import authz
from samsa.broker.authz import Kind, Op
from samsa.broker.outcomes import AwaitData, Outcome
from samsa.broker.routing import NO_THROTTLE, reply, response, to_ms
from samsa.log.partition import PartitionLog
from samsa.log.storage import FileRegion
from samsa.protocol.batch import iter_batches
from samsa.protocol.codec import Request

if TYPE_CHECKING:
    from samsa.broker.core import Broker

READ_UNCOMMITTED = 0
READ_COMMITTED = 1
NO_READ_REPLICA = BrokerId(-1)


@dataclass(frozen=True, slots=True)
class _Wanted:
    topic: TopicName
    partition: i32
    fetch_offset: int
    max_bytes: int
    log: PartitionLog | None


def _partition(
    index: i32,
    error: ErrorCode,
    log: PartitionLog | None = None,
    aborted: tuple[AbortedTransaction, ...] | None = None,
    records: bytes | memoryview | FileRegion = b"",
) -> PartitionData:
    """A partition's answer; its offsets are the log's, or -1 without one."""
    return PartitionData(
        partition_index=index,
        error_code=error,
        high_watermark=i64(-1 if log is None else log.high_watermark),
        last_stable_offset=i64(-1 if log is None else stable_offset(log)),
        log_start_offset=i64(-1 if log is None else log.log_start_offset),
        aborted_transactions=aborted,
        preferred_read_replica=NO_READ_REPLICA,
        # Kafka sends an empty record set with an error, never a null one: librdkafka refuses
        # the whole response over a null, and so would never see the error. kio's writer takes
        # any buffer: a memoryview of the log's records is sent without a copy, and so is a
        # `FileRegion` (it has a length, and the response's writer keeps it by reference).
        records=cast(Records, records),
    )


def stable_offset(log: PartitionLog) -> int:
    return log.last_stable_offset


def _aborted(
    log: PartitionLog, fetch_offset: int, records: bytes | memoryview | FileRegion
) -> tuple[AbortedTransaction, ...]:
    """The aborted transactions a read_committed client needs to drop records of this fetch."""
    if not records:
        return ()
    upper = fetch_offset
    if isinstance(records, FileRegion):
        upper = records.next_offset
    else:
        for _, header in iter_batches(records):
            upper = header.next_offset
    return tuple(
        AbortedTransaction(
            producer_id=ProducerId(entry.producer_id), first_offset=i64(entry.first_offset)
        )
        for entry in log.aborted_transactions(fetch_offset, upper)
    )


def handle_fetch(broker: Broker, request: Request[FetchRequest]) -> Outcome:
    body = request.payload
    isolation = body.isolation_level
    response_bytes_max = min(body.max_bytes, broker.config.fetch_max_bytes)
    if body.session_id != 0 and body.session_epoch not in (-1, 0):
        return reply(
            request,
            FetchResponse(
                throttle_time=NO_THROTTLE,
                error_code=ErrorCode.fetch_session_id_not_found,
                session_id=i32(0),
                responses=(),
            ),
        )
    wanted = [
        _Wanted(
            topic.topic,
            p.partition,
            p.fetch_offset,
            p.partition_max_bytes,
            broker.topics.partition(topic.topic, p.partition),
        )
        for topic in body.topics
        for p in topic.partitions
    ]
    min_bytes = body.min_bytes
    max_wait_ms = to_ms(body.max_wait)
    # KafkaApis.handleFetchRequest: READ on each topic. A refused partition is answered
    # TOPIC_AUTHORIZATION_FAILED and, as in Kafka, does not end the wait of the others.
    readable = authz.allowed_names(broker, request, Op.READ, Kind.TOPIC, (w.topic for w in wanted))

    def attempt(final: bool) -> ResponsePayload | None:
        remaining = response_bytes_max
        by_topic: dict[TopicName, list[PartitionData]] = {}
        total = 0
        has_error = False
        for want in wanted:
            if want.topic not in readable:
                refused = _partition(want.partition, ErrorCode.topic_authorization_failed)
                by_topic.setdefault(want.topic, []).append(refused)
                continue
            partition = _read(want, isolation, remaining, min_one=total == 0)
            if partition.error_code != ErrorCode.none:
                has_error = True
            size = len(partition.records or b"")
            total += size
            remaining = max(remaining - size, 0)
            by_topic.setdefault(want.topic, []).append(partition)
        if not final and not has_error and total < min_bytes:
            return None
        return response(
            request,
            FetchResponse(
                throttle_time=NO_THROTTLE,
                error_code=ErrorCode.none,
                session_id=i32(0),
                responses=tuple(
                    FetchableTopicResponse(topic=t, partitions=tuple(ps))
                    for t, ps in by_topic.items()
                ),
            ),
        )

    return AwaitData(request.correlation_id, max_wait_ms, attempt)


def _read(want: _Wanted, isolation: int, remaining: int, min_one: bool) -> PartitionData:
    log = want.log
    if log is None or log.deleted:
        return _partition(want.partition, ErrorCode.unknown_topic_or_partition)
    if log.offline is not None:
        return _partition(want.partition, ErrorCode.kafka_storage_error)
    try:
        return _read_log(log, want, isolation, remaining, min_one)
    except OSError as exc:
        log.read_failed(exc)
        return _partition(want.partition, ErrorCode.kafka_storage_error)


def _read_log(
    log: PartitionLog, want: _Wanted, isolation: int, remaining: int, min_one: bool
) -> PartitionData:
    if want.fetch_offset < log.log_start_offset or want.fetch_offset > log.log_end_offset:
        return _partition(want.partition, ErrorCode.offset_out_of_range, log)
    size_max = min(want.max_bytes, remaining)
    if size_max < 0:  # Kafka's log read refuses a negative size (IllegalArgumentException)
        return _partition(want.partition, ErrorCode.unknown_server_error)
    limit = stable_offset(log) if isolation == READ_COMMITTED else log.high_watermark
    records: bytes | memoryview | FileRegion = b""
    if remaining > 0 or min_one:
        records = log.read_zero_copy(want.fetch_offset, size_max, limit, min_one)
    aborted = _aborted(log, want.fetch_offset, records) if isolation == READ_COMMITTED else None
    return _partition(want.partition, ErrorCode.none, log, aborted, records)
