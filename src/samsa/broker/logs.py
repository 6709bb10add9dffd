"""DeleteRecords and DescribeLogDirs: the partition logs as the admin APIs see them.

DeleteRecords moves a partition's log start offset (`PartitionLog.delete_records`); Kafka waits
until every replica has moved it too, which on one broker is at once: the low watermark in the
answer is the new log start. DescribeLogDirs reports the one data dir with its partitions' sizes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from kio.schema.delete_records.v2.request import DeleteRecordsPartition, DeleteRecordsRequest
from kio.schema.delete_records.v2.response import (
    DeleteRecordsPartitionResult,
    DeleteRecordsResponse,
    DeleteRecordsTopicResult,
)
from kio.schema.describe_log_dirs.v5.request import DescribeLogDirsRequest
from kio.schema.describe_log_dirs.v5.response import (
    DescribeLogDirsPartition,
    DescribeLogDirsResponse,
    DescribeLogDirsResult,
    DescribeLogDirsTopic,
)
from kio.schema.errors import ErrorCode
from kio.schema.types import TopicName
from kio.static.primitive import i32, i64

from samsa.broker import authz
from samsa.broker.authz import Kind, Op
from samsa.broker.outcomes import Outcome
from samsa.broker.routing import NO_THROTTLE, reply
from samsa.broker.topics import Topic
from samsa.log.partition import OffsetOutOfRange, StorageError
from samsa.protocol.codec import Request

if TYPE_CHECKING:
    from samsa.broker.core import Broker

HIGH_WATERMARK = -1  # DeleteRecordsRequest.HIGH_WATERMARK: delete up to the high watermark
INVALID_LOW_WATERMARK = i64(-1)


# ----------------------------------------------------------------- DeleteRecords
def handle_delete_records(broker: Broker, request: Request[DeleteRecordsRequest]) -> Outcome:
    asked = request.payload.topics
    # KafkaApis.handleDeleteRecordsRequest: DELETE on each topic.
    deletable = authz.allowed_names(broker, request, Op.DELETE, Kind.TOPIC, (t.name for t in asked))
    topics = tuple(
        DeleteRecordsTopicResult(
            name=wanted.name,
            partitions=tuple(
                _delete(broker, wanted.name, p)
                if wanted.name in deletable
                else _deleted(p, ErrorCode.topic_authorization_failed)
                for p in wanted.partitions
            ),
        )
        for wanted in asked
    )
    return reply(request, DeleteRecordsResponse(throttle_time=NO_THROTTLE, topics=topics))


def _delete(
    broker: Broker, name: TopicName, wanted: DeleteRecordsPartition
) -> DeleteRecordsPartitionResult:
    """As Kafka's ReplicaManager.deleteRecordsOnLocalLog and Partition.deleteRecordsOnLeader."""
    topic = broker.topics.get(name)
    log = broker.topics.partition(name, wanted.partition_index)
    if topic is None or log is None:
        return _deleted(wanted, ErrorCode.unknown_topic_or_partition)
    if topic.is_internal:  # the coordinators replay these logs from their start
        return _deleted(wanted, ErrorCode.invalid_topic_exception)
    if not _deletes(broker, topic):
        return _deleted(wanted, ErrorCode.policy_violation)
    offset = log.high_watermark if wanted.offset == HIGH_WATERMARK else wanted.offset
    try:
        log.delete_records(offset)
    except (OffsetOutOfRange, StorageError) as exc:
        return _deleted(wanted, exc.error)
    return _deleted(wanted, ErrorCode.none, i64(log.log_start_offset))


def _deletes(broker: Broker, topic: Topic) -> bool:
    """Kafka's `LogConfig.delete`: records may be deleted only under cleanup.policy=delete."""
    return "delete" in broker.topics.setting(topic, "cleanup.policy").split(",")


def _deleted(
    wanted: DeleteRecordsPartition, error: ErrorCode, low_watermark: i64 = INVALID_LOW_WATERMARK
) -> DeleteRecordsPartitionResult:
    return DeleteRecordsPartitionResult(
        partition_index=wanted.partition_index, low_watermark=low_watermark, error_code=error
    )


# ----------------------------------------------------------------- DescribeLogDirs
def handle_describe_log_dirs(broker: Broker, request: Request[DescribeLogDirsRequest]) -> Outcome:
    """Kafka's ReplicaManager.describeLogDirs for samsa's one data dir: the partitions asked
    for (null: all) that it holds, topics without one left out. An offline partition is left
    out as Kafka leaves out the logs of an offline dir; the dir itself is offline (storage
    error) only when its size cannot be read."""
    if not authz.cluster_allowed(broker, request, Op.DESCRIBE):  # as KafkaApis
        return reply(
            request,
            DescribeLogDirsResponse(
                throttle_time=NO_THROTTLE,
                error_code=ErrorCode.cluster_authorization_failed,
                results=(),
            ),
        )
    asked = request.payload.topics
    wanted = (
        None if asked is None else {(str(t.topic), int(p)) for t in asked for p in t.partitions}
    )
    log_dir = os.path.abspath(broker.data_dir)
    try:
        total_bytes, usable_bytes = broker.storage.disk_space(broker.data_dir)
    except OSError:
        result = DescribeLogDirsResult(
            error_code=ErrorCode.kafka_storage_error, log_dir=log_dir, topics=()
        )
    else:
        result = DescribeLogDirsResult(
            error_code=ErrorCode.none,
            log_dir=log_dir,
            topics=_described(broker, wanted),
            total_bytes=i64(total_bytes),
            usable_bytes=i64(usable_bytes),
        )
    return reply(
        request,
        DescribeLogDirsResponse(
            throttle_time=NO_THROTTLE, error_code=ErrorCode.none, results=(result,)
        ),
    )


def _described(
    broker: Broker, wanted: set[tuple[str, int]] | None
) -> tuple[DescribeLogDirsTopic, ...]:
    topics = []
    for topic in broker.topics:
        partitions = tuple(
            DescribeLogDirsPartition(
                partition_index=i32(log.partition),
                partition_size=i64(log.size_bytes),
                offset_lag=i64(0),  # the current log, not a future one: its lag is 0
                is_future_key=False,
            )
            for log in topic.partitions
            if log.offline is None and (wanted is None or (topic.name, log.partition) in wanted)
        )
        if partitions:
            topics.append(DescribeLogDirsTopic(name=TopicName(topic.name), partitions=partitions))
    return tuple(topics)
