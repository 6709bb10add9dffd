"""ListOffsets (earliest, latest, max timestamp, by timestamp) and OffsetForLeaderEpoch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode
from kio.schema.list_offsets.v7.request import ListOffsetsRequest
from kio.schema.list_offsets.v7.response import (
    ListOffsetsPartitionResponse,
    ListOffsetsResponse,
    ListOffsetsTopicResponse,
)
from kio.schema.offset_for_leader_epoch.v4.request import OffsetForLeaderEpochRequest
from kio.schema.offset_for_leader_epoch.v4.response import (
    EpochEndOffset,
    OffsetForLeaderEpochResponse,
    OffsetForLeaderTopicResult,
)
from kio.static.primitive import i32, i64
from kio.static.protocol import RequestPayload

from samsa.broker import authz
from samsa.broker.authz import Kind, Op
from samsa.broker.fetch import READ_COMMITTED, stable_offset
from samsa.broker.metadata import LEADER_EPOCH
from samsa.broker.outcomes import Outcome
from samsa.broker.routing import NO_THROTTLE, reply
from samsa.log.partition import PartitionLog
from samsa.protocol import versions
from samsa.protocol.codec import Request
from samsa.protocol.legacy.list_offsets.v0 import request as v0
from samsa.protocol.legacy.list_offsets.v0 import response as v0_response

if TYPE_CHECKING:
    from samsa.broker.core import Broker

LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
MAX_TIMESTAMP = -3
# ListOffsets v7 is the first to ask for the record with the largest timestamp (KIP-734).
MAX_TIMESTAMP_VERSION_MIN = 7
CONSUMER_REPLICA_ID = -1


def _listed(
    index: i32,
    error: ErrorCode,
    found: tuple[int, int] = (-1, -1),
    leader_epoch: int = LEADER_EPOCH,
) -> ListOffsetsPartitionResponse:
    offset, timestamp = found
    return ListOffsetsPartitionResponse(
        partition_index=index,
        error_code=error,
        timestamp=i64(timestamp),
        offset=i64(offset),
        leader_epoch=i32(leader_epoch),
    )


def _list_one(
    log: PartitionLog | None, index: i32, timestamp: int, isolation: int
) -> ListOffsetsPartitionResponse:
    if log is None:
        return _listed(index, ErrorCode.unknown_topic_or_partition)
    if log.offline is not None:
        return _listed(index, ErrorCode.kafka_storage_error)
    try:
        found = _find(log, timestamp, isolation)
    except OSError as exc:
        log.read_failed(exc)
        return _listed(index, ErrorCode.kafka_storage_error)
    if found is None:
        return _listed(index, ErrorCode.invalid_request)
    return _listed(index, ErrorCode.none, found)


def _find(log: PartitionLog, timestamp: int, isolation: int) -> tuple[int, int] | None:
    """(offset, timestamp) for a ListOffsets timestamp, (-1, -1) where no record matches; None
    for a timestamp that means nothing."""
    limit = stable_offset(log) if isolation == READ_COMMITTED else log.high_watermark
    if timestamp == LATEST_TIMESTAMP:
        return limit, -1
    if timestamp == EARLIEST_TIMESTAMP:
        return log.log_start_offset, -1
    if timestamp == MAX_TIMESTAMP:
        return log.max_timestamp_offset(limit) or (-1, -1)
    if timestamp >= 0:
        return log.offset_for_timestamp(timestamp, limit) or (-1, -1)
    return None


def handle_list_offsets(broker: Broker, request: Request[ListOffsetsRequest]) -> Outcome:
    body = request.payload
    # KafkaApis.handleListOffsetRequest: DESCRIBE on each topic.
    described = authz.allowed_names(
        broker, request, Op.DESCRIBE, Kind.TOPIC, (t.name for t in body.topics)
    )
    topics = []
    for topic in body.topics:
        partitions = []
        for p in topic.partitions:
            if topic.name not in described:
                partitions.append(
                    _listed(
                        p.partition_index, ErrorCode.topic_authorization_failed, leader_epoch=-1
                    )
                )
                continue
            if p.timestamp == MAX_TIMESTAMP and request.api_version < MAX_TIMESTAMP_VERSION_MIN:
                partitions.append(
                    _listed(p.partition_index, ErrorCode.unsupported_version, leader_epoch=-1)
                )
                continue
            log = broker.topics.partition(topic.name, p.partition_index)
            partitions.append(_list_one(log, p.partition_index, p.timestamp, body.isolation_level))
        topics.append(ListOffsetsTopicResponse(name=topic.name, partitions=tuple(partitions)))
    return reply(request, ListOffsetsResponse(throttle_time=NO_THROTTLE, topics=tuple(topics)))


def handle_list_offsets_v0(broker: Broker, request: Request[RequestPayload]) -> Outcome:
    """ListOffsets v0 (removed in Kafka 4.0, KIP-896): up to `max_num_offsets` offsets per
    partition, newest first, from the start offset of each segment and the log end, as Kafka
    3.9's `UnifiedLog.legacyFetchOffsetsBefore`. Timestamps below -2 are not for v0."""
    body = versions.convert(request.payload, v0.ListOffsetsRequest)
    consumer = body.replica_id == CONSUMER_REPLICA_ID
    # KafkaApis.handleListOffsetRequestV0: DESCRIBE on each topic, as later versions.
    described = authz.allowed_names(
        broker, request, Op.DESCRIBE, Kind.TOPIC, (t.name for t in body.topics)
    )
    topics = []
    for topic in body.topics:
        partitions = []
        for p in topic.partitions:
            log = broker.topics.partition(topic.name, p.partition_index)
            error, found = (
                _legacy_offsets(log, p, broker.clock_ms(), consumer)
                if topic.name in described
                else (ErrorCode.topic_authorization_failed, [])
            )
            partitions.append(
                v0_response.ListOffsetsPartitionResponse(
                    partition_index=p.partition_index,
                    error_code=error,
                    old_style_offsets=tuple(i64(offset) for offset in found),
                )
            )
        topics.append(
            v0_response.ListOffsetsTopicResponse(name=topic.name, partitions=tuple(partitions))
        )
    return reply(request, v0_response.ListOffsetsResponse(topics=tuple(topics)))


def _legacy_offsets(
    log: PartitionLog | None, asked: v0.ListOffsetsPartition, now_ms: int, consumer: bool
) -> tuple[ErrorCode, list[int]]:
    if asked.timestamp < EARLIEST_TIMESTAMP:
        return ErrorCode.unsupported_version, []
    if log is None:
        return ErrorCode.unknown_topic_or_partition, []
    if log.offline is not None:
        return ErrorCode.kafka_storage_error, []
    if asked.max_num_offsets < 0:  # Kafka: a NegativeArraySizeException
        return ErrorCode.unknown_server_error, []
    # Each segment's start and when it was last written to, and the log end as of now. Kafka
    # takes a segment's file modification time; samsa has no file times, and takes the
    # largest record timestamp in the segment (what time-based retention goes by, KIP-33).
    starts = [(max(s.base_offset, log.log_start_offset), s.max_timestamp) for s in log.segments]
    if log.active.size > 0:
        starts.append((log.log_end_offset, now_ms))
    if asked.timestamp == LATEST_TIMESTAMP:
        last = len(starts) - 1
    elif asked.timestamp == EARLIEST_TIMESTAMP:
        last = 0
    else:
        last = max(
            (i for i, (_, written) in enumerate(starts) if written <= asked.timestamp), default=-1
        )
    found = [offset for offset, _ in reversed(starts[: last + 1])][: asked.max_num_offsets]
    if consumer and any(offset > log.high_watermark for offset in found):
        found = [log.high_watermark, *(offset for offset in found if offset <= log.high_watermark)]
    return ErrorCode.none, found


def handle_offset_for_leader_epoch(
    broker: Broker, request: Request[OffsetForLeaderEpochRequest]
) -> Outcome:
    """samsa has one leader epoch (0) for every partition: its end offset is the log end."""
    # KafkaApis: CLUSTER_ACTION (a follower), else DESCRIBE on each topic (KIP-320).
    asked = request.payload.topics
    described = (
        {t.topic for t in asked}
        if authz.cluster_allowed(broker, request, Op.CLUSTER_ACTION)
        else authz.allowed_names(broker, request, Op.DESCRIBE, Kind.TOPIC, (t.topic for t in asked))
    )
    topics = []
    for topic in asked:
        partitions = []
        for p in topic.partitions:
            log = broker.topics.partition(topic.topic, p.partition)
            current = p.current_leader_epoch
            error, epoch, end_offset = ErrorCode.none, -1, -1
            if topic.topic not in described:
                error = ErrorCode.topic_authorization_failed
            elif log is None:
                error = ErrorCode.unknown_topic_or_partition
            elif log.offline is not None:
                error = ErrorCode.kafka_storage_error
            elif current > LEADER_EPOCH:
                error = ErrorCode.unknown_leader_epoch
            elif 0 <= current < LEADER_EPOCH:
                error = ErrorCode.fenced_leader_epoch
            elif p.leader_epoch == LEADER_EPOCH:
                epoch, end_offset = LEADER_EPOCH, log.log_end_offset
            partitions.append(
                EpochEndOffset(
                    error_code=error,
                    partition=p.partition,
                    leader_epoch=i32(epoch),
                    end_offset=i64(end_offset),
                )
            )
        topics.append(OffsetForLeaderTopicResult(topic=topic.topic, partitions=tuple(partitions)))
    return reply(
        request, OffsetForLeaderEpochResponse(throttle_time=NO_THROTTLE, topics=tuple(topics))
    )
