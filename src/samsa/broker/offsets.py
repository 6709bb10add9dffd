"""ListOffsets (earliest, latest, max timestamp, by timestamp) and OffsetForLeaderEpoch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from samsa.broker.fetch import READ_COMMITTED, stable_offset
from samsa.broker.metadata import LEADER_EPOCH
from samsa.broker.outcomes import Outcome
from samsa.log.partition import PartitionLog
from samsa.protocol.codec import Request

if TYPE_CHECKING:
    from samsa.broker.core import Broker

LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
MAX_TIMESTAMP = -3


def _list_one(
    log: PartitionLog | None, index: int, timestamp: int, isolation: int
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "partition_index": index,
        "error_code": ErrorCode.none,
        "timestamp": -1,
        "offset": -1,
        "leader_epoch": LEADER_EPOCH,
        "old_style_offsets": (),
    }
    if log is None:
        result["error_code"] = ErrorCode.unknown_topic_or_partition
        return result
    if log.offline is not None:
        result["error_code"] = ErrorCode.kafka_storage_error
        return result
    try:
        _find(log, timestamp, isolation, result)
    except OSError as exc:
        log.read_failed(exc)
        result.update(error_code=ErrorCode.kafka_storage_error, offset=-1, timestamp=-1)
    return result


def _find(log: PartitionLog, timestamp: int, isolation: int, result: dict[str, Any]) -> None:
    limit = stable_offset(log) if isolation == READ_COMMITTED else log.high_watermark
    if timestamp == LATEST_TIMESTAMP:
        result["offset"] = limit
    elif timestamp == EARLIEST_TIMESTAMP:
        result["offset"] = log.log_start_offset
    elif timestamp == MAX_TIMESTAMP:
        found = log.max_timestamp_offset(limit)
        if found is not None:
            result["offset"], result["timestamp"] = found
    elif timestamp >= 0:
        found = log.offset_for_timestamp(timestamp, limit)
        if found is not None:
            result["offset"], result["timestamp"] = found
    else:
        result["error_code"] = ErrorCode.invalid_request


def handle_list_offsets(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    isolation = int(getattr(body, "isolation_level", 0))
    topics = []
    for topic in body.topics:
        partitions = []
        for p in topic.partitions:
            timestamp = int(p.timestamp)
            if timestamp == MAX_TIMESTAMP and request.api_version < 7:
                partitions.append(
                    {
                        "partition_index": p.partition_index,
                        "error_code": ErrorCode.unsupported_version,
                        "timestamp": -1,
                        "offset": -1,
                        "leader_epoch": -1,
                    }
                )
                continue
            log = broker.topics.partition(topic.name, p.partition_index)
            partitions.append(_list_one(log, p.partition_index, timestamp, isolation))
        topics.append({"name": topic.name, "partitions": partitions})
    return broker.reply(request, {"throttle_time": 0, "topics": topics})


def handle_offset_for_leader_epoch(broker: Broker, request: Request) -> Outcome:
    """samsa has one leader epoch (0) for every partition: its end offset is the log end."""
    topics = []
    for topic in request.payload.topics:
        partitions = []
        for p in topic.partitions:
            result: dict[str, Any] = {
                "error_code": ErrorCode.none,
                "partition": p.partition,
                "leader_epoch": -1,
                "end_offset": -1,
            }
            log = broker.topics.partition(topic.topic, p.partition)
            current = int(p.current_leader_epoch)
            if log is None:
                result["error_code"] = ErrorCode.unknown_topic_or_partition
            elif log.offline is not None:
                result["error_code"] = ErrorCode.kafka_storage_error
            elif current > LEADER_EPOCH:
                result["error_code"] = ErrorCode.unknown_leader_epoch
            elif 0 <= current < LEADER_EPOCH:
                result["error_code"] = ErrorCode.fenced_leader_epoch
            elif int(p.leader_epoch) == LEADER_EPOCH:
                result["leader_epoch"] = LEADER_EPOCH
                result["end_offset"] = log.log_end_offset
            partitions.append(result)
        topics.append({"topic": topic.topic, "partitions": partitions})
    return broker.reply(request, {"throttle_time": 0, "topics": topics})
