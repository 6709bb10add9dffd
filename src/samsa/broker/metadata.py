"""ApiVersions, Metadata and DescribeCluster: what the cluster (one node) looks like."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.api_versions.v3.response import ApiVersion, ApiVersionsResponse
from kio.schema.describe_cluster.v1.request import DescribeClusterRequest
from kio.schema.describe_cluster.v1.response import DescribeClusterBroker, DescribeClusterResponse
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12.request import MetadataRequest
from kio.schema.metadata.v12.response import (
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from kio.schema.types import BrokerId, TopicName
from kio.static.primitive import i8, i16, i32

from samsa.broker.outcomes import Outcome
from samsa.broker.routing import NO_THROTTLE, reply
from samsa.broker.topics import Topic, TopicError, check_topic_name
from samsa.protocol.apis import ADVERTISED
from samsa.protocol.codec import Request

if TYPE_CHECKING:
    from samsa.broker.core import Broker

AUTHORIZED_OPERATIONS_OMITTED = i32(-(2**31))
LEADER_EPOCH = 0
ENDPOINT_BROKERS = 1  # DescribeCluster's endpoint type; 2 (controllers) samsa does not expose


def api_keys() -> tuple[ApiVersion, ...]:
    return tuple(
        ApiVersion(api_key=i16(key), min_version=i16(versions.min), max_version=i16(versions.max))
        for key, versions in sorted(ADVERTISED.items())
    )


def handle_api_versions(broker: Broker, request: Request[ApiVersionsRequest]) -> Outcome:
    return reply(
        request,
        ApiVersionsResponse(
            error_code=ErrorCode.none, api_keys=api_keys(), throttle_time=NO_THROTTLE
        ),
    )


def describe_topic(broker: Broker, topic: Topic) -> MetadataResponseTopic:
    node = BrokerId(broker.node_id)
    return MetadataResponseTopic(
        error_code=ErrorCode.none,
        name=TopicName(topic.name),
        topic_id=topic.topic_id,
        is_internal=topic.is_internal,
        partitions=tuple(
            MetadataResponsePartition(
                # An offline partition keeps its leader, so clients still send it requests and
                # get KAFKA_STORAGE_ERROR from each, rather than waiting for a leader forever.
                error_code=ErrorCode.kafka_storage_error if log.offline else ErrorCode.none,
                partition_index=i32(index),
                leader_id=node,
                leader_epoch=i32(LEADER_EPOCH),
                replica_nodes=(node,),
                isr_nodes=() if log.offline else (node,),
                offline_replicas=(node,) if log.offline else (),
            )
            for index, log in enumerate(topic.partitions)
        ),
        topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
    )


def _missing_topic(
    name: TopicName | None, error: ErrorCode, topic_id: uuid.UUID | None = None
) -> MetadataResponseTopic:
    return MetadataResponseTopic(
        error_code=error,
        name=name,
        topic_id=topic_id,
        is_internal=False,
        partitions=(),
        topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
    )


def _lookup(broker: Broker, name: TopicName, auto_create: bool) -> MetadataResponseTopic:
    topic = broker.topics.get(name)
    if topic is not None:
        return describe_topic(broker, topic)
    try:
        check_topic_name(name)
        if name in broker.topics.pending:  # CreateTopics is making it: the client retries
            return _missing_topic(name, ErrorCode.leader_not_available)
        if not (auto_create and broker.config.auto_create_topics_enable):
            return _missing_topic(name, ErrorCode.unknown_topic_or_partition)
        topic = broker.topics.create(name, -1, {}, broker.clock_ms())
    except TopicError as exc:
        return _missing_topic(name, exc.error)
    return describe_topic(broker, topic)


def handle_metadata(broker: Broker, request: Request[MetadataRequest]) -> Outcome:
    body = request.payload
    # v0: an empty list means every topic; v1+: null means every topic.
    asked = None if request.api_version == 0 and not body.topics else body.topics
    topics: list[MetadataResponseTopic] = []
    if asked is None:
        topics = [describe_topic(broker, topic) for topic in broker.topics]
    else:
        by_id = {topic.topic_id: topic for topic in broker.topics}
        for wanted in asked:
            name = wanted.name
            if name is None:
                topic = by_id.get(wanted.topic_id) if wanted.topic_id is not None else None
                topics.append(
                    describe_topic(broker, topic)
                    if topic
                    else _missing_topic(None, ErrorCode.unknown_topic_id, wanted.topic_id)
                )
            else:
                # Before v4 there was no flag: the schema's default (true) stands for it.
                topics.append(_lookup(broker, name, body.allow_auto_topic_creation))
    node = BrokerId(broker.node_id)
    return reply(
        request,
        MetadataResponse(
            throttle_time=NO_THROTTLE,
            brokers=(
                MetadataResponseBroker(
                    node_id=node, host=broker.endpoint.host, port=i32(broker.endpoint.port)
                ),
            ),
            cluster_id=broker.cluster_id,
            controller_id=node,
            topics=tuple(topics),
        ),
    )


def handle_describe_cluster(broker: Broker, request: Request[DescribeClusterRequest]) -> Outcome:
    endpoint_type = request.payload.endpoint_type
    if endpoint_type != ENDPOINT_BROKERS:
        return reply(
            request,
            DescribeClusterResponse(
                throttle_time=NO_THROTTLE,
                error_code=ErrorCode.unsupported_endpoint_type,
                error_message="samsa exposes broker endpoints only",
                endpoint_type=endpoint_type,
                cluster_id=broker.cluster_id,
                controller_id=BrokerId(-1),
                brokers=(),
                cluster_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
            ),
        )
    return reply(
        request,
        DescribeClusterResponse(
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.none,
            error_message=None,
            endpoint_type=i8(ENDPOINT_BROKERS),
            cluster_id=broker.cluster_id,
            controller_id=BrokerId(broker.node_id),
            brokers=(
                DescribeClusterBroker(
                    broker_id=BrokerId(broker.node_id),
                    host=broker.endpoint.host,
                    port=i32(broker.endpoint.port),
                    rack=None,
                ),
            ),
            cluster_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
        ),
    )
