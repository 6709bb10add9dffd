"""ApiVersions, Metadata and DescribeCluster: what the cluster (one node) looks like."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.api_versions.v3.response import ApiVersion, ApiVersionsResponse
from kio.schema.describe_cluster.v1.request import DescribeClusterRequest
from kio.schema.describe_cluster.v1.response import DescribeClusterBroker, DescribeClusterResponse
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.metadata.v12.response import (
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from kio.schema.types import BrokerId, TopicName
from kio.static.primitive import i8, i16, i32

from samsa.broker import authz
from samsa.broker.authz import Kind, Op
from samsa.broker.outcomes import Outcome
from samsa.broker.routing import NO_THROTTLE, reply
from samsa.broker.topics import Topic, TopicError, check_topic_name
from samsa.protocol.apis import ADVERTISED
from samsa.protocol.codec import Request
from samsa.security.acl import CLUSTER_NAME

if TYPE_CHECKING:
    from samsa.broker.core import Broker

AUTHORIZED_OPERATIONS_OMITTED = i32(-(2**31))


def _operations(*codes: int) -> i32:
    return i32(sum(1 << code for code in codes))


# What a client asking for its authorized operations is told without an authorizer: every
# operation the resource type supports (AuthHelper.authorizedOperations and
# AclEntry.supportedOperations). With one, `authz.operations` asks it. Codes are AclOperation's:
# READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9,
# DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12.
TOPIC_OPERATIONS = _operations(3, 4, 5, 6, 7, 8, 10, 11)
GROUP_OPERATIONS = _operations(3, 6, 8)
CLUSTER_OPERATIONS = _operations(5, 7, 8, 9, 10, 11, 12)


def cluster_operations(broker: Broker, request: Request[Any]) -> i32:
    """The cluster's authorized operations: none without DESCRIBE on the cluster (KafkaApis'
    Metadata and DescribeCluster handlers)."""
    if not authz.cluster_allowed(broker, request, Op.DESCRIBE):
        return i32(0)
    return authz.operations(broker, request, Kind.CLUSTER, CLUSTER_NAME)


def authorized(operations: i32, asked: bool) -> i32:
    """The authorized-operations field: the bit field if the client asked, else Kafka's
    "omitted" marker."""
    return operations if asked else AUTHORIZED_OPERATIONS_OMITTED


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataRequestView(MetadataRequest):
    """Metadata v12 with v8-10's `include_cluster_authorized_operations`, which v11 dropped
    (KIP-700: DescribeCluster asks instead) but clients still send, librdkafka's
    describe_cluster among them. Converting any version up to it keeps the flag."""

    include_cluster_authorized_operations: bool = field(
        metadata={"kafka_type": "bool"}, default=False
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataResponseView(MetadataResponse):
    """Metadata v12's response with v8-10's `cluster_authorized_operations`: converting it
    down to v8-10 writes it, to v11+ drops it."""

    cluster_authorized_operations: i32 = field(
        metadata={"kafka_type": "int32"}, default=AUTHORIZED_OPERATIONS_OMITTED
    )


LEADER_EPOCH = 0
ENDPOINT_BROKERS = 1  # DescribeCluster's endpoint type; 2 (controllers) samsa does not expose
# Metadata v10 added topic ids to the schema; only v12+ requests may use them (KIP-516).
TOPIC_ID_LOOKUP_VERSION = 12


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


def _lookup(
    broker: Broker, request: Request[MetadataRequestView], name: TopicName, auto_create: bool
) -> MetadataResponseTopic:
    # KafkaApis.getTopicMetadata: DESCRIBE on the topic, and to create it CREATE on the cluster
    # or the topic; a topic the client may not describe is refused whether it exists or not.
    if not authz.allowed(broker, request, Op.DESCRIBE, Kind.TOPIC, name):
        return _missing_topic(name, ErrorCode.topic_authorization_failed)
    topic = broker.topics.get(name)
    if topic is not None:
        return describe_topic(broker, topic)
    auto_create = auto_create and broker.config.auto_create_topics_enable
    if auto_create and not (
        authz.cluster_allowed(broker, request, Op.CREATE)
        or authz.allowed(broker, request, Op.CREATE, Kind.TOPIC, name)
    ):
        refused = _missing_topic(name, ErrorCode.topic_authorization_failed)
        return replace(refused, is_internal=name.startswith("__"))
    try:
        check_topic_name(name)
        if name in broker.topics.pending:  # CreateTopics is making it: the client retries
            return _missing_topic(name, ErrorCode.leader_not_available)
        if not auto_create:
            return _missing_topic(name, ErrorCode.unknown_topic_or_partition)
        topic = broker.topics.create(name, -1, {}, broker.clock_ms())
    except TopicError as exc:
        return _missing_topic(name, exc.error)
    return describe_topic(broker, topic)


def _topic_id(wanted: MetadataRequestTopic) -> uuid.UUID | None:
    """A requested topic's id, None when absent or all zeros."""
    topic_id = wanted.topic_id
    return topic_id if topic_id is not None and topic_id.int else None


def handle_metadata(broker: Broker, request: Request[MetadataRequestView]) -> Outcome:
    body = request.payload
    # v0: an empty list means every topic; v1+: null means every topic.
    asked = None if request.api_version == 0 and not body.topics else body.topics
    topics: list[MetadataResponseTopic] = []
    if asked is None:
        # Every topic the client may describe; the others are left out, not refused.
        topics = [
            describe_topic(broker, topic)
            for topic in broker.topics
            if authz.allowed(broker, request, Op.DESCRIBE, Kind.TOPIC, topic.name)
        ]
    elif request.api_version < TOPIC_ID_LOOKUP_VERSION and any(
        wanted.name is None or _topic_id(wanted) is not None for wanted in asked
    ):
        # As Kafka's KafkaApis: before v12 a null name or a topic id makes the request invalid,
        # answered for each topic (MetadataRequest.getErrorResponse), a null name as "".
        topics = [
            _missing_topic(wanted.name or TopicName(""), ErrorCode.invalid_request, wanted.topic_id)
            for wanted in asked
        ]
    else:
        by_id = {topic.topic_id: topic for topic in broker.topics}
        for wanted in asked:
            name = wanted.name
            if name is None:
                topic = by_id.get(wanted.topic_id) if wanted.topic_id is not None else None
                if topic is None:
                    topics.append(_missing_topic(None, ErrorCode.unknown_topic_id, wanted.topic_id))
                elif not authz.allowed(broker, request, Op.DESCRIBE, Kind.TOPIC, topic.name):
                    # Topic ids are not secret (KafkaApis): refused by id, without the name.
                    refused = ErrorCode.topic_authorization_failed
                    topics.append(_missing_topic(None, refused, topic.topic_id))
                else:
                    topics.append(describe_topic(broker, topic))
            else:
                # Before v4 there was no flag: the schema's default (true) stands for it.
                topics.append(_lookup(broker, request, name, body.allow_auto_topic_creation))
    if body.include_topic_authorized_operations:
        topics = [
            replace(
                t,
                topic_authorized_operations=authz.operations(
                    broker, request, Kind.TOPIC, t.name or ""
                ),
            )
            for t in topics
        ]
    node = BrokerId(broker.node_id)
    endpoint = broker.endpoint_for(request.listener)
    return reply(
        request,
        MetadataResponseView(
            throttle_time=NO_THROTTLE,
            brokers=(
                MetadataResponseBroker(node_id=node, host=endpoint.host, port=i32(endpoint.port)),
            ),
            cluster_id=broker.cluster_id,
            controller_id=node,
            topics=tuple(topics),
            cluster_authorized_operations=authorized(
                cluster_operations(broker, request), body.include_cluster_authorized_operations
            ),
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
                    host=broker.endpoint_for(request.listener).host,
                    port=i32(broker.endpoint_for(request.listener).port),
                    rack=None,
                ),
            ),
            cluster_authorized_operations=authorized(
                cluster_operations(broker, request),
                request.payload.include_cluster_authorized_operations,
            ),
        ),
    )
