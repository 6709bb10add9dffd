"""ApiVersions, Metadata and DescribeCluster: what the cluster (one node) looks like."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from samsa.broker.outcomes import Outcome
from samsa.broker.topics import Topic, TopicError, check_topic_name
from samsa.protocol.apis import ADVERTISED
from samsa.protocol.codec import Request

if TYPE_CHECKING:
    from samsa.broker.core import Broker

AUTHORIZED_OPERATIONS_OMITTED = -(2**31)
LEADER_EPOCH = 0


def api_keys() -> list[dict[str, int]]:
    return [
        {"api_key": key, "min_version": versions.min, "max_version": versions.max}
        for key, versions in sorted(ADVERTISED.items())
    ]


def handle_api_versions(broker: Broker, request: Request) -> Outcome:
    return broker.reply(
        request, {"error_code": ErrorCode.none, "api_keys": api_keys(), "throttle_time": 0}
    )


def describe_topic(broker: Broker, topic: Topic) -> dict[str, Any]:
    node = broker.node_id
    return {
        "error_code": ErrorCode.none,
        "name": topic.name,
        "topic_id": topic.topic_id,
        "is_internal": topic.is_internal,
        "partitions": [
            {
                # An offline partition keeps its leader, so clients still send it requests and
                # get KAFKA_STORAGE_ERROR from each, rather than waiting for a leader forever.
                "error_code": ErrorCode.kafka_storage_error if log.offline else ErrorCode.none,
                "partition_index": index,
                "leader_id": node,
                "leader_epoch": LEADER_EPOCH,
                "replica_nodes": (node,),
                "isr_nodes": () if log.offline else (node,),
                "offline_replicas": (node,) if log.offline else (),
            }
            for index, log in enumerate(topic.partitions)
        ],
        "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
    }


def _missing_topic(name: str | None, error: ErrorCode, topic_id: Any = None) -> dict[str, Any]:
    return {
        "error_code": error,
        "name": name,
        "topic_id": topic_id,
        "is_internal": False,
        "partitions": (),
        "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
    }


def _lookup(broker: Broker, name: str, auto_create: bool) -> dict[str, Any]:
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


def handle_metadata(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    # v0: an empty list means every topic; v1+: null means every topic.
    every_topic = body.topics is None or (request.api_version == 0 and not body.topics)
    # Before v4 there was no flag and auto-creation followed the broker setting.
    auto_create = getattr(body, "allow_auto_topic_creation", True)
    topics: list[dict[str, Any]] = []
    if every_topic:
        topics = [describe_topic(broker, topic) for topic in broker.topics]
    else:
        by_id = {topic.topic_id: topic for topic in broker.topics}
        for wanted in body.topics:
            name = wanted.name
            if name is None:
                topic = by_id.get(wanted.topic_id)
                topics.append(
                    describe_topic(broker, topic)
                    if topic
                    else _missing_topic(None, ErrorCode.unknown_topic_id, wanted.topic_id)
                )
            else:
                topics.append(_lookup(broker, name, auto_create))
    return broker.reply(
        request,
        {
            "throttle_time": 0,
            "brokers": [
                {
                    "node_id": broker.node_id,
                    "host": broker.endpoint.host,
                    "port": broker.endpoint.port,
                    "rack": None,
                }
            ],
            "cluster_id": broker.cluster_id,
            "controller_id": broker.node_id,
            "topics": topics,
            "cluster_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
        },
    )


def handle_describe_cluster(broker: Broker, request: Request) -> Outcome:
    endpoint_type = getattr(request.payload, "endpoint_type", 1)
    if endpoint_type != 1:  # 1 = brokers; 2 = controllers, which samsa does not expose
        return broker.reply(
            request,
            {
                "throttle_time": 0,
                "error_code": ErrorCode.unsupported_endpoint_type,
                "error_message": "samsa exposes broker endpoints only",
                "endpoint_type": endpoint_type,
                "cluster_id": broker.cluster_id,
                "controller_id": -1,
                "brokers": (),
                "cluster_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
            },
        )
    return broker.reply(
        request,
        {
            "throttle_time": 0,
            "error_code": ErrorCode.none,
            "error_message": None,
            "endpoint_type": 1,
            "cluster_id": broker.cluster_id,
            "controller_id": broker.node_id,
            "brokers": [
                {
                    "broker_id": broker.node_id,
                    "host": broker.endpoint.host,
                    "port": broker.endpoint.port,
                    "rack": None,
                }
            ],
            "cluster_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
        },
    )
