"""CreateTopics, DeleteTopics, CreatePartitions and DescribeConfigs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from samsa.broker.outcomes import AwaitWork, Outcome
from samsa.broker.topics import (
    EXCESSIVE_BATCH,
    PARTITIONS_PER_REQUEST_MAX,
    TOPIC_SETTINGS,
    Topic,
    TopicError,
)
from samsa.config import broker_settings
from samsa.log.partition import PartitionLog
from samsa.protocol.codec import Request

if TYPE_CHECKING:
    from samsa.broker.core import Broker

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
SOURCE_DYNAMIC_TOPIC = 1
SOURCE_STATIC_BROKER = 4
SOURCE_DEFAULT = 5
CONFIG_TYPE_STRING = 2


def _check_replication(broker: Broker, factor: int, assignments: Any) -> None:
    if factor not in (-1, 1):
        raise TopicError(
            ErrorCode.invalid_replication_factor,
            f"replication factor {factor}: samsa is a single broker",
        )
    for assignment in assignments or ():
        if tuple(assignment.broker_ids) != (broker.node_id,):
            raise TopicError(
                ErrorCode.invalid_replica_assignment,
                f"replicas must be [{broker.node_id}], the only broker",
            )


@dataclass(slots=True)
class _Making:
    """One topic's part of a CreateTopics or CreatePartitions: its partitions `first` ..
    `first + count - 1`, reserved until made, and where its answer goes."""

    result: dict[str, Any]
    topic: Topic
    first: int
    count: int


def handle_create_topics(broker: Broker, request: Request) -> Outcome:
    """Checked here, made off the event loop (10,000 partitions take seconds of mkdir and
    fsync), recorded back on it: other clients are served meanwhile."""
    body = request.payload
    results: list[dict[str, Any]] = []
    making: list[_Making] = []
    names = Counter(wanted.name for wanted in body.topics)
    requested = sum(_requested_partitions(broker, wanted) for wanted in body.topics)
    for wanted in body.topics:
        result: dict[str, Any] = {"name": wanted.name, **_NOT_CREATED}
        results.append(result)
        try:
            if names[wanted.name] > 1:
                raise TopicError(
                    ErrorCode.invalid_request, f"topic {wanted.name!r} is in the request twice"
                )
            if requested > PARTITIONS_PER_REQUEST_MAX:
                raise TopicError(ErrorCode.policy_violation, EXCESSIVE_BATCH)
            _check_replication(broker, int(wanted.replication_factor), wanted.assignments)
            configs = {c.name: c.value for c in wanted.configs}
            topic, count = broker.topics.plan(
                wanted.name, _requested_partitions(broker, wanted), configs
            )
            broker.topics.reserve(topic.name, count)  # the next topic's checks count this one
            making.append(_Making(result, topic, 0, count))
            _describe_created(broker, result, topic, count)
        except TopicError as exc:
            result.update(error_code=exc.error, error_message=str(exc))
    payload = {"throttle_time": 0, "topics": results}
    return _make(broker, request, making, payload, bool(body.validate_only), _NOT_CREATED)


# What a topic CreateTopics did not create is answered with.
_NOT_CREATED: dict[str, Any] = {
    "topic_id": None,
    "error_code": ErrorCode.none,
    "error_message": None,
    "num_partitions": -1,
    "replication_factor": -1,
    "configs": None,
}


def _make(
    broker: Broker,
    request: Request,
    making: list[_Making],
    payload: dict[str, Any],
    validate_only: bool,
    failed: dict[str, Any],
) -> Outcome:
    """Make what was planned and reserved off the event loop, record it back on it, and answer
    `payload` (each failure's result updated with `failed` and the error)."""
    topics = broker.topics
    if validate_only or not making:
        for planned in making:
            topics.release(planned.topic.name)
        return broker.reply(request, payload)
    now_ms = broker.clock_ms()

    def work() -> list[list[PartitionLog] | OSError]:
        made: list[list[PartitionLog] | OSError] = []
        for planned in making:
            try:
                made.append(topics.build(planned.topic, planned.first, planned.count, now_ms))
            except OSError as exc:
                made.append(exc)
        return made

    def finish(made: list[list[PartitionLog] | OSError] | OSError) -> Any:
        for i, planned in enumerate(making):
            built = made if isinstance(made, OSError) else made[i]
            try:
                if isinstance(built, OSError):
                    topics.release(planned.topic.name)
                    raise TopicError(
                        ErrorCode.kafka_storage_error, f"making {planned.topic.name!r}: {built}"
                    )
                topics.commit(planned.topic, planned.first, built)
            except TopicError as exc:
                planned.result.update(failed, error_code=exc.error, error_message=str(exc))
        return broker.reply(request, payload).payload

    return AwaitWork(request.correlation_id, work, finish)


def _requested_partitions(broker: Broker, wanted: Any) -> int:
    """What a CreatableTopic asks for (-1: the broker's num.partitions)."""
    count = len(wanted.assignments) if wanted.assignments else int(wanted.num_partitions)
    return broker.config.num_partitions if count == -1 else count


def _describe_created(broker: Broker, result: dict[str, Any], topic: Topic, count: int) -> None:
    result.update(
        topic_id=topic.topic_id,
        num_partitions=count,
        replication_factor=1,
        configs=[_describe_setting(broker, topic, name, True) for name in TOPIC_SETTINGS],
    )


def handle_delete_topics(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    if request.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in body.topics]
    else:
        wanted = [(name, None) for name in body.topic_names]
    by_id = {topic.topic_id: topic.name for topic in broker.topics}
    results = []
    for name, topic_id in wanted:
        result: dict[str, Any] = {
            "name": name,
            "topic_id": topic_id,
            "error_code": ErrorCode.none,
            "error_message": None,
        }
        if name is None:
            name = by_id.get(topic_id)
            result["name"] = name
        try:
            if not broker.config.delete_topic_enable:
                raise TopicError(ErrorCode.topic_deletion_disabled, "delete.topic.enable=false")
            if name is None:
                raise TopicError(ErrorCode.unknown_topic_id, f"no topic with id {topic_id}")
            topic = broker.topics.delete(name)
            result["topic_id"] = topic.topic_id
        except TopicError as exc:
            result.update(error_code=exc.error, error_message=str(exc))
        except OSError as exc:  # the next start finishes a deletion this left halfway
            result.update(error_code=ErrorCode.kafka_storage_error, error_message=str(exc))
        results.append(result)
    return broker.reply(request, {"throttle_time": 0, "responses": results})


def handle_create_partitions(broker: Broker, request: Request) -> Outcome:
    """As CreateTopics: checked here, made off the event loop, recorded back on it."""
    body = request.payload
    results: list[dict[str, Any]] = []
    making: list[_Making] = []
    requested = sum(_added_partitions(broker, wanted) for wanted in body.topics)
    for wanted in body.topics:
        result: dict[str, Any] = {
            "name": wanted.name,
            "error_code": ErrorCode.none,
            "error_message": None,
        }
        results.append(result)
        try:
            if requested > PARTITIONS_PER_REQUEST_MAX:
                raise TopicError(ErrorCode.policy_violation, EXCESSIVE_BATCH)
            _check_replication(broker, 1, wanted.assignments)
            topic, added = broker.topics.plan_growth(wanted.name, int(wanted.count))
            broker.topics.reserve(topic.name, added)
            making.append(_Making(result, topic, len(topic.partitions), added))
        except TopicError as exc:
            result.update(error_code=exc.error, error_message=str(exc))
    payload = {"throttle_time": 0, "results": results}
    return _make(broker, request, making, payload, bool(body.validate_only), {})


def _added_partitions(broker: Broker, wanted: Any) -> int:
    """What a CreatePartitionsTopic would add (0 if it adds nothing or names no topic)."""
    topic = broker.topics.get(wanted.name)
    return 0 if topic is None else max(int(wanted.count) - len(topic.partitions), 0)


def _describe_setting(broker: Broker, topic: Any, name: str, for_create: bool) -> dict[str, Any]:
    if name in topic.configs:
        value, source = topic.configs[name], SOURCE_DYNAMIC_TOPIC
    else:
        value, source = broker.topics.default_setting(name), SOURCE_DEFAULT
    return {
        "name": name,
        "value": value,
        "read_only": False,
        "config_source": source,
        "is_sensitive": False,
        "synonyms": (),
        "config_type": CONFIG_TYPE_STRING,
        "documentation": None,
    }


def handle_describe_configs(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    results = []
    for resource in body.resources:
        keys = None if resource.configuration_keys is None else set(resource.configuration_keys)
        result: dict[str, Any] = {
            "error_code": ErrorCode.none,
            "error_message": None,
            "resource_type": resource.resource_type,
            "resource_name": resource.resource_name,
            "configs": [],
        }
        if resource.resource_type == RESOURCE_TOPIC:
            topic = broker.topics.get(resource.resource_name)
            if topic is None:
                result.update(
                    error_code=ErrorCode.unknown_topic_or_partition,
                    error_message=f"no topic {resource.resource_name!r}",
                )
            else:
                result["configs"] = [
                    _describe_setting(broker, topic, name, False)
                    for name in TOPIC_SETTINGS
                    if keys is None or name in keys
                ]
        elif resource.resource_type == RESOURCE_BROKER:
            if resource.resource_name not in ("", str(broker.node_id)):
                result.update(
                    error_code=ErrorCode.invalid_request,
                    error_message=f"no broker {resource.resource_name!r}",
                )
            else:
                result["configs"] = [
                    {
                        "name": name,
                        "value": value,
                        "read_only": True,
                        "config_source": SOURCE_STATIC_BROKER,
                        "is_sensitive": False,
                        "synonyms": (),
                        "config_type": CONFIG_TYPE_STRING,
                        "documentation": None,
                    }
                    for name, value in broker_settings(broker.config).items()
                    if keys is None or name in keys
                ]
        else:
            result.update(
                error_code=ErrorCode.invalid_request,
                error_message=f"resource type {resource.resource_type} not supported",
            )
        results.append(result)
    return broker.reply(request, {"throttle_time": 0, "results": results})
