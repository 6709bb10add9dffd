"""DescribeTopicPartitions (KIP-966, Kafka 3.7+): topics and their partitions a page at a time.

As Kafka's DescribeTopicPartitionsRequestHandler and KRaftMetadataCache: the topics asked for
(none: every topic) from the cursor's on, sorted by name, described until the page holds
`response_partition_limit` partitions (at most `max.request.partition.size.limit`, 2000, at
least 1); `next_cursor` then names the first partition left out. A topic asked for by name that
does not exist is answered with an error, one found by listing all cannot be missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kio.schema.describe_topic_partitions.v0.request import DescribeTopicPartitionsRequest
from kio.schema.describe_topic_partitions.v0.response import (
    Cursor,
    DescribeTopicPartitionsResponse,
    DescribeTopicPartitionsResponsePartition,
    DescribeTopicPartitionsResponseTopic,
)
from kio.schema.errors import ErrorCode
from kio.schema.types import BrokerId, TopicName
from kio.static.primitive import i32

from samsa.broker import authz
from samsa.broker.authz import Kind, Op
from samsa.broker.metadata import LEADER_EPOCH
from samsa.broker.outcomes import Outcome
from samsa.broker.routing import NO_THROTTLE, reply
from samsa.broker.topics import Topic, TopicError, check_topic_name
from samsa.protocol.codec import Request

if TYPE_CHECKING:
    from samsa.broker.core import Broker

# Kafka's max.request.partition.size.limit (default 2000): the most partitions one page holds.
PARTITIONS_PER_PAGE_MAX = 2000


def handle_describe_topic_partitions(
    broker: Broker, request: Request[DescribeTopicPartitionsRequest]
) -> Outcome:
    body = request.payload
    cursor = body.cursor
    after = cursor.topic_name if cursor is not None else ""
    listing_all = not body.topics
    asked = (
        {TopicName(t.name) for t in broker.topics} if listing_all else {t.name for t in body.topics}
    )
    names = sorted(name for name in asked if name >= after)
    if cursor is not None and (
        cursor.partition_index < 0 or (not listing_all and cursor.topic_name not in names)
    ):
        # Kafka's InvalidRequestException, answered by DescribeTopicPartitionsRequest's
        # getErrorResponse: each topic asked for with the error.
        return reply(request, _refused(body, ErrorCode.invalid_request))
    # Kafka's DescribeTopicPartitionsRequestHandler: DESCRIBE on each topic; one asked for by
    # name and refused is answered after the page, without its id, whether it exists or not.
    refused = [
        name for name in names if not authz.allowed(broker, request, Op.DESCRIBE, Kind.TOPIC, name)
    ]
    names = [name for name in names if name not in refused]
    remaining = max(min(PARTITIONS_PER_PAGE_MAX, body.response_partition_limit), 1)
    topics: list[DescribeTopicPartitionsResponseTopic] = []
    next_cursor: Cursor | None = None
    for name in names:
        if remaining == 0:  # the page is full: the next one starts with this topic
            next_cursor = Cursor(topic_name=name, partition_index=i32(0))
            break
        topic = broker.topics.get(name)
        if topic is None:
            if not listing_all:
                topics.append(_missing(name, authz.operations(broker, request, Kind.TOPIC, name)))
            continue
        first = cursor.partition_index if cursor is not None and name == after else 0
        end = min(len(topic.partitions), first + remaining)
        operations = authz.operations(broker, request, Kind.TOPIC, name)
        topics.append(_described(broker, topic, range(first, end), operations))
        if end < len(topic.partitions):
            next_cursor = Cursor(topic_name=name, partition_index=i32(end))
            break
        remaining -= max(end - first, 0)
    if not listing_all:
        topics += (_unauthorized(name) for name in refused)
    return reply(
        request,
        DescribeTopicPartitionsResponse(
            throttle_time=NO_THROTTLE, topics=tuple(topics), next_cursor=next_cursor
        ),
    )


def _described(
    broker: Broker, topic: Topic, indexes: range, operations: i32
) -> DescribeTopicPartitionsResponseTopic:
    node = BrokerId(broker.node_id)
    partitions = []
    for index in indexes:
        offline = topic.partitions[index].offline is not None
        partitions.append(
            DescribeTopicPartitionsResponsePartition(
                # As in Metadata: an offline partition keeps its leader and says why.
                error_code=ErrorCode.kafka_storage_error if offline else ErrorCode.none,
                partition_index=i32(index),
                leader_id=node,
                leader_epoch=i32(LEADER_EPOCH),
                replica_nodes=(node,),
                isr_nodes=() if offline else (node,),
                eligible_leader_replicas=(),  # KIP-966's ELR: one replica, none eligible
                last_known_elr=(),
                offline_replicas=(node,) if offline else (),
            )
        )
    return DescribeTopicPartitionsResponseTopic(
        error_code=ErrorCode.none,
        name=TopicName(topic.name),
        topic_id=topic.topic_id,
        is_internal=topic.is_internal,
        partitions=tuple(partitions),
        topic_authorized_operations=operations,
    )


def _unauthorized(name: TopicName) -> DescribeTopicPartitionsResponseTopic:
    return DescribeTopicPartitionsResponseTopic(
        error_code=ErrorCode.topic_authorization_failed,
        name=name,
        topic_id=None,
        is_internal=False,
        partitions=(),
    )


def _missing(name: TopicName, operations: i32) -> DescribeTopicPartitionsResponseTopic:
    try:
        check_topic_name(name)
        error = ErrorCode.unknown_topic_or_partition
    except TopicError:
        error = ErrorCode.invalid_topic_exception
    # Kafka sets the authorized operations of every topic of the page, these too.
    return DescribeTopicPartitionsResponseTopic(
        error_code=error,
        name=name,
        topic_id=None,
        is_internal=False,
        partitions=(),
        topic_authorized_operations=operations,
    )


def _refused(
    body: DescribeTopicPartitionsRequest, error: ErrorCode
) -> DescribeTopicPartitionsResponse:
    return DescribeTopicPartitionsResponse(
        throttle_time=NO_THROTTLE,
        topics=tuple(
            DescribeTopicPartitionsResponseTopic(
                error_code=error, name=t.name, topic_id=None, is_internal=False, partitions=()
            )
            for t in body.topics
        ),
        next_cursor=None,
    )
