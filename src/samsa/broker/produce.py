"""Produce: validate each partition's batch, append it, answer once it is durable.

Every record of every batch is checked before anything is written (`samsa.protocol.validation`,
Kafka's LogValidator); offsets are assigned by rewriting the batch header. A bad batch fails only
its own partition, with Kafka's error code and, where Kafka lists them, the records that caused
it (KIP-467); the other partitions of the request are still written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode
from kio.schema.produce.v10.request import ProduceRequest
from kio.schema.produce.v10.response import (
    BatchIndexAndErrorMessage,
    PartitionProduceResponse,
    ProduceResponse,
    TopicProduceResponse,
)
from kio.schema.types import TopicName
from kio.static.primitive import i32, i64
from kio.static.protocol import ResponsePayload

from samsa.broker import authz
from samsa.broker.authz import Kind, Op
from samsa.broker.outcomes import AwaitDurable, Close, Outcome
from samsa.broker.routing import NO_THROTTLE, response, timestamp
from samsa.broker.topics import TopicError, check_topic_name
from samsa.durability import Durable, Failed
from samsa.log.partition import PartitionLog, StorageError
from samsa.protocol.batch import HEADER_BYTES, InvalidBatch, RecordError, parse_header
from samsa.protocol.codec import Request
from samsa.protocol.compression import ZSTD
from samsa.protocol.validation import validate
from samsa.state.producers import Duplicate, ProducerStateError

if TYPE_CHECKING:
    from samsa.broker.core import Broker

VALID_ACKS = (0, 1, -1)
# Produce v7 is the first a client may send zstd with (KIP-110): older clients cannot read it.
ZSTD_PRODUCE_VERSION_MIN = 7


def _partition_result(
    index: i32,
    error: ErrorCode,
    base_offset: int = -1,
    log_start_offset: int = -1,
    message: str | None = None,
    record_errors: tuple[RecordError, ...] = (),
    log_append_time_ms: int = -1,
) -> PartitionProduceResponse:
    return PartitionProduceResponse(
        index=index,
        error_code=error,
        base_offset=i64(base_offset),
        log_append_time=None if log_append_time_ms < 0 else timestamp(log_append_time_ms),
        log_start_offset=i64(log_start_offset),
        record_errors=tuple(
            BatchIndexAndErrorMessage(batch_index=i32(batch_index), batch_index_error_message=text)
            for batch_index, text in record_errors
        ),
        error_message=message,
    )


def _append(
    broker: Broker,
    transactional_id: str | None,
    topic_name: TopicName,
    index: i32,
    records: bytes | None,
    now_ms: int,
    api_version: int,
) -> tuple[PartitionProduceResponse, PartitionLog | None, int]:
    topic = broker.topics.get(topic_name)
    log = broker.topics.partition(topic_name, index)
    if topic is None or log is None:
        try:
            check_topic_name(topic_name)
        except TopicError as exc:
            return _partition_result(index, exc.error, message=str(exc)), None, 0
        return _partition_result(index, ErrorCode.unknown_topic_or_partition), None, 0
    if topic.is_internal:
        message = f"{topic_name} is internal: only the broker writes to it"
        return _partition_result(index, ErrorCode.invalid_topic_exception, message=message), None, 0
    if log.offline is not None:
        message = f"{topic_name}-{index} is offline: {log.offline}"
        return _partition_result(index, ErrorCode.kafka_storage_error, message=message), None, 0
    try:
        validated = validate(records or b"", broker.topics.policy(topic), now_ms)
        if validated.header.compression == ZSTD and api_version < ZSTD_PRODUCE_VERSION_MIN:
            raise InvalidBatch(
                ErrorCode.unsupported_compression_type,
                f"zstd needs Produce v{ZSTD_PRODUCE_VERSION_MIN}+, got v{api_version}",
            )
    except InvalidBatch as exc:
        result = _partition_result(
            index, exc.error, message=str(exc), record_errors=exc.record_errors
        )
        return result, None, 0
    try:
        written = log.append(
            validated.records,
            validated.header,
            now_ms,
            lambda h: broker.txn.verify(
                transactional_id, h.producer_id, h.producer_epoch, (topic_name, index)
            ),
        )
    except (ProducerStateError, StorageError) as exc:
        return _partition_result(index, exc.error, message=str(exc)), None, 0
    if isinstance(written, Duplicate):
        # An exact retry: the original offsets, once the original write is durable.
        original = written.batch
        result = _partition_result(
            index, ErrorCode.none, original.first_offset, log.log_start_offset
        )
        return result, log, original.last_offset + 1
    result = _partition_result(
        index,
        ErrorCode.none,
        written.base_offset,
        log.log_start_offset,
        log_append_time_ms=validated.log_append_time_ms,
    )
    return result, log, written.next_offset


def _has_transactional_records(body: ProduceRequest) -> bool:
    """Whether any partition's first batch is transactional (Kafka's
    `RequestUtils.hasTransactionalRecords`, which decides the TransactionalId check)."""
    return any(
        data.records is not None
        and len(data.records) >= HEADER_BYTES
        and parse_header(data.records).is_transactional
        for topic in body.topic_data
        for data in topic.partition_data
    )


def handle_produce(broker: Broker, request: Request[ProduceRequest]) -> Outcome:
    body = request.payload
    if body.transactional_id is not None and body.acks != 0:
        # A partition whose AddPartitionsToTxn was answered before its record was durable
        # takes nothing until it is (`TransactionCoordinator.unsettled_adds`).
        addition = broker.txn.unsettled_adds(
            body.transactional_id,
            ((t.name, d.index) for t in body.topic_data for d in t.partition_data),
        )
        if addition is not None:
            return AwaitDurable(
                request.correlation_id, addition.waits, _after(addition, broker, request)
            )
    return _append_all(broker, request)


def _after(
    addition: Durable[bool], broker: Broker, request: Request[ProduceRequest]
) -> Callable[[Failed], ResponsePayload | Durable[ResponsePayload]]:
    """The produce, handled once the addition it waited for is applied. If that failed, the
    coordinator does not hold the partition and KIP-890's check refuses the batch."""

    def then(failed: Failed) -> ResponsePayload | Durable[ResponsePayload]:
        addition.then(failed)
        outcome = _append_all(broker, request)
        if not isinstance(outcome, AwaitDurable) or outcome.finish is None:
            raise TypeError(f"a produce with acks != 0 gave {outcome!r}")
        return Durable(outcome.waits, outcome.finish)

    return then


def _append_all(broker: Broker, request: Request[ProduceRequest]) -> Outcome:
    body = request.payload
    now_ms = broker.clock_ms()
    acks = body.acks
    # KafkaApis.handleProduceRequest: WRITE on the transactional id for transactional records
    # (else every partition is refused), then WRITE on each topic.
    refused_all = _has_transactional_records(body) and (
        body.transactional_id is None
        or not authz.allowed(
            broker, request, Op.WRITE, Kind.TRANSACTIONAL_ID, body.transactional_id
        )
    )
    writable = authz.allowed_names(
        broker, request, Op.WRITE, Kind.TOPIC, (t.name for t in body.topic_data)
    )
    topics: list[tuple[TopicName, list[tuple[PartitionProduceResponse, PartitionLog | None]]]] = []
    waits: list[tuple[PartitionLog, int]] = []
    failed = False
    for topic_data in body.topic_data:
        partitions: list[tuple[PartitionProduceResponse, PartitionLog | None]] = []
        for data in topic_data.partition_data:
            refusal = (
                ErrorCode.invalid_required_acks
                if acks not in VALID_ACKS
                else ErrorCode.transactional_id_authorization_failed
                if refused_all
                else ErrorCode.topic_authorization_failed
                if topic_data.name not in writable
                else None
            )
            if refusal is not None:
                result, log, end = _partition_result(data.index, refusal), None, 0
            else:
                result, log, end = _append(
                    broker,
                    body.transactional_id,
                    topic_data.name,
                    data.index,
                    data.records,
                    now_ms,
                    request.api_version,
                )
            failed = failed or result.error_code != ErrorCode.none
            if log is not None:
                waits.append((log, end))
            partitions.append((result, log))
        topics.append((topic_data.name, partitions))

    if acks == 0:
        if failed:
            # Kafka closes the connection: an acks=0 producer has no other way to notice.
            return Close("acks=0 produce failed on at least one partition")
        return AwaitDurable(request.correlation_id, waits, None)

    def finish(sync_failed: set[PartitionLog]) -> ResponsePayload:
        responses = []
        for name, partitions in topics:
            results = []
            for result, log in partitions:
                if log is not None and log in sync_failed:
                    result = _partition_result(
                        result.index,
                        ErrorCode.kafka_storage_error,
                        message=f"not made durable: {log.offline or 'fsync failed'}",
                    )
                results.append(result)
            responses.append(TopicProduceResponse(name=name, partition_responses=tuple(results)))
        return response(
            request, ProduceResponse(responses=tuple(responses), throttle_time=NO_THROTTLE)
        )

    return AwaitDurable(request.correlation_id, waits, finish)
