"""CreateTopics, DeleteTopics and CreatePartitions."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kio.schema.create_partitions.v3.request import CreatePartitionsRequest, CreatePartitionsTopic
from kio.schema.create_partitions.v3.response import (
    CreatePartitionsResponse,
    CreatePartitionsTopicResult,
)
from kio.schema.create_topics.v7.request import CreatableTopic, CreateTopicsRequest
from kio.schema.create_topics.v7.response import (
    CreatableTopicConfigs,
    CreatableTopicResult,
    CreateTopicsResponse,
)
from kio.schema.delete_topics.v5.request import DeleteTopicsRequest as DeleteTopicsRequestV5
from kio.schema.delete_topics.v6.request import DeleteTopicsRequest, DeleteTopicState
from kio.schema.delete_topics.v6.response import DeletableTopicResult, DeleteTopicsResponse
from kio.schema.errors import ErrorCode
from kio.schema.types import TopicName
from kio.static.primitive import i8, i16, i32
from kio.static.protocol import RequestPayload, ResponsePayload

from samsa.broker import authz
from samsa.broker.authz import Kind, Op
from samsa.broker.configs import source_of, topic_config
from samsa.broker.outcomes import AwaitWork, Outcome
from samsa.broker.routing import NO_THROTTLE, reply, response
from samsa.broker.topic_configs import TOPIC_CONFIGS
from samsa.broker.topics import EXCESSIVE_BATCH, PARTITIONS_PER_REQUEST_MAX, Topic, TopicError
from samsa.log.partition import PartitionLog
from samsa.protocol import versions
from samsa.protocol.codec import Request

if TYPE_CHECKING:
    from samsa.broker.core import Broker

# DeleteTopics v6 names a topic by name or by id; before, by name only (KIP-516).
DELETE_BY_ID_VERSION_MIN = 6


def _check_replication(broker: Broker, factor: int, assignments: Iterable[tuple[int, ...]]) -> None:
    if factor not in (-1, 1):
        raise TopicError(
            ErrorCode.invalid_replication_factor,
            f"replication factor {factor}: samsa is a single broker",
        )
    for broker_ids in assignments:
        if broker_ids != (broker.node_id,):
            raise TopicError(
                ErrorCode.invalid_replica_assignment,
                f"replicas must be [{broker.node_id}], the only broker",
            )


@dataclass(frozen=True, slots=True)
class _Making:
    """One topic's part of a CreateTopics or CreatePartitions: its partitions `first` ..
    `first + count - 1`, reserved until made."""

    topic: Topic
    first: int
    count: int


# A topic of a CreateTopics or CreatePartitions request: being made, or refused (also when
# making it failed).
Asked = list[tuple[TopicName, _Making | TopicError]]


def handle_create_topics(broker: Broker, request: Request[CreateTopicsRequest]) -> Outcome:
    """Checked here, made off the event loop (10,000 partitions take seconds of mkdir and
    fsync), recorded back on it: other clients are served meanwhile."""
    body = request.payload
    asked: Asked = []
    names = Counter(wanted.name for wanted in body.topics)
    # ControllerApis.createTopics: CREATE on the cluster or on each topic; its configs are in
    # the answer only with DESCRIBE_CONFIGS on it.
    creatable = (
        set(names)
        if authz.cluster_allowed(broker, request, Op.CREATE)
        else authz.allowed_names(broker, request, Op.CREATE, Kind.TOPIC, names)
    )
    describable = authz.allowed_names(broker, request, Op.DESCRIBE_CONFIGS, Kind.TOPIC, names)
    requested = sum(_requested_partitions(broker, wanted) for wanted in body.topics)
    for wanted in body.topics:
        try:
            if names[wanted.name] > 1:
                raise TopicError(
                    ErrorCode.invalid_request, f"topic {wanted.name!r} is in the request twice"
                )
            if wanted.name not in creatable:
                raise TopicError(ErrorCode.topic_authorization_failed, "Authorization failed.")
            if requested > PARTITIONS_PER_REQUEST_MAX:
                raise TopicError(ErrorCode.policy_violation, EXCESSIVE_BATCH)
            _check_replication(
                broker, wanted.replication_factor, (a.broker_ids for a in wanted.assignments)
            )
            configs = {c.name: c.value for c in wanted.configs}
            topic, count = broker.topics.plan(
                wanted.name, _requested_partitions(broker, wanted), configs
            )
            broker.topics.reserve(topic.name, count)  # the next topic's checks count this one
            asked.append((wanted.name, _Making(topic, 0, count)))
        except TopicError as exc:
            asked.append((wanted.name, exc))

    def respond() -> CreateTopicsResponse:
        results = tuple(
            _created(broker, name, outcome, name in describable) for name, outcome in asked
        )
        return CreateTopicsResponse(throttle_time=NO_THROTTLE, topics=results)

    return _make(broker, request, asked, respond, body.validate_only)


def _created(
    broker: Broker, name: TopicName, outcome: _Making | TopicError, describable: bool
) -> CreatableTopicResult:
    if isinstance(outcome, TopicError):
        return CreatableTopicResult(
            name=name,
            topic_id=None,
            error_code=outcome.error,
            error_message=str(outcome),
            num_partitions=i32(-1),
            replication_factor=i16(-1),
            configs=None,
        )
    if not describable:  # ReplicationControlManager: made, its settings not shown
        return CreatableTopicResult(
            name=name,
            topic_id=outcome.topic.topic_id,
            error_code=ErrorCode.none,
            error_message=None,
            topic_config_error_code=i16(ErrorCode.topic_authorization_failed),
            num_partitions=i32(-1),
            replication_factor=i16(-1),
            configs=(),
        )
    return CreatableTopicResult(
        name=name,
        topic_id=outcome.topic.topic_id,
        error_code=ErrorCode.none,
        error_message=None,
        num_partitions=i32(outcome.count),
        replication_factor=i16(1),
        configs=tuple(_created_setting(broker, outcome.topic, s) for s in TOPIC_CONFIGS),
    )


def _created_setting(broker: Broker, topic: Topic, name: str) -> CreatableTopicConfigs:
    value, found = topic_config(broker, topic, name)
    return CreatableTopicConfigs(
        name=name,
        value=value,
        read_only=False,
        config_source=i8(source_of(found)),
        is_sensitive=False,
    )


def _make(
    broker: Broker,
    request: Request[RequestPayload],
    asked: Asked,
    respond: Callable[[], ResponsePayload],
    validate_only: bool,
) -> Outcome:
    """Make what was planned and reserved off the event loop, record it back on it, and answer
    with `respond()` (a topic that could not be made is marked refused in `asked`)."""
    topics = broker.topics
    making = [(i, outcome) for i, (_, outcome) in enumerate(asked) if isinstance(outcome, _Making)]
    if validate_only or not making:
        for _, planned in making:
            topics.release(planned.topic.name)
        return reply(request, respond())
    now_ms = broker.clock_ms()

    def work() -> list[list[PartitionLog] | OSError]:
        made: list[list[PartitionLog] | OSError] = []
        for _, planned in making:
            try:
                made.append(topics.build(planned.topic, planned.first, planned.count, now_ms))
            except OSError as exc:
                made.append(exc)
        return made

    def finish(made: list[list[PartitionLog] | OSError] | OSError) -> ResponsePayload:
        for k, (i, planned) in enumerate(making):
            built = made if isinstance(made, OSError) else made[k]
            try:
                if isinstance(built, OSError):
                    topics.release(planned.topic.name)
                    raise TopicError(
                        ErrorCode.kafka_storage_error, f"making {planned.topic.name!r}: {built}"
                    )
                topics.commit(planned.topic, planned.first, built)
            except TopicError as exc:
                asked[i] = (asked[i][0], exc)
        return response(request, respond())

    return AwaitWork(request.correlation_id, work, finish)


def _requested_partitions(broker: Broker, wanted: CreatableTopic) -> int:
    """What a CreatableTopic asks for (-1: the broker's num.partitions)."""
    count = len(wanted.assignments) if wanted.assignments else wanted.num_partitions
    return broker.config.num_partitions if count == -1 else count


def delete_topics_view(request: Request[RequestPayload]) -> DeleteTopicsRequest:
    """Before v6 topics are named in `topic_names`; as Kafka's `DeleteTopicsRequest.topics()`
    does, each becomes a `DeleteTopicState` with that name and no id."""
    if request.api_version >= DELETE_BY_ID_VERSION_MIN:
        return versions.convert(request.payload, DeleteTopicsRequest)
    old = versions.convert(request.payload, DeleteTopicsRequestV5)
    return DeleteTopicsRequest(
        topics=tuple(DeleteTopicState(name=name, topic_id=None) for name in old.topic_names),
        timeout=old.timeout,
    )


def handle_delete_topics(broker: Broker, request: Request[DeleteTopicsRequest]) -> Outcome:
    by_id = {topic.topic_id: TopicName(topic.name) for topic in broker.topics}

    def name_of(wanted: DeleteTopicState) -> TopicName | None:
        if wanted.name is None and wanted.topic_id is not None:
            return by_id.get(wanted.topic_id)
        return wanted.name

    asked = [(name_of(wanted), wanted) for wanted in request.payload.topics]
    # ControllerApis.deleteTopics: DELETE on the cluster, or DESCRIBE and DELETE on each
    # topic. Refused by id, a topic is named only if the client may describe it; refused by
    # name, whether it exists is not said.
    names = [name for name, _ in asked if name is not None]
    describable: set[str]
    deletable: set[str]
    if authz.cluster_allowed(broker, request, Op.DELETE):
        describable = deletable = set(names)
    else:
        describable = authz.allowed_names(broker, request, Op.DESCRIBE, Kind.TOPIC, names)
        deletable = authz.allowed_names(broker, request, Op.DELETE, Kind.TOPIC, names)
    results = []
    for name, wanted in asked:
        if name is not None and name not in deletable:
            shown = name if name in describable else None
            topic_id = wanted.topic_id if wanted.name is None else None
            results.append(
                DeletableTopicResult(
                    name=shown,
                    topic_id=topic_id,
                    error_code=ErrorCode.topic_authorization_failed,
                    error_message=None,
                )
            )
        else:
            results.append(_delete(broker, name, wanted.topic_id))
    return reply(request, DeleteTopicsResponse(throttle_time=NO_THROTTLE, responses=tuple(results)))


def _delete(
    broker: Broker, name: TopicName | None, topic_id: uuid.UUID | None
) -> DeletableTopicResult:
    error, message = ErrorCode.none, None
    try:
        if not broker.config.delete_topic_enable:
            raise TopicError(ErrorCode.topic_deletion_disabled, "delete.topic.enable=false")
        if name is None:
            raise TopicError(ErrorCode.unknown_topic_id, f"no topic with id {topic_id}")
        topic_id = broker.topics.delete(name).topic_id
    except TopicError as exc:
        error, message = exc.error, str(exc)
    except OSError as exc:  # the next start finishes a deletion this left halfway
        error, message = ErrorCode.kafka_storage_error, str(exc)
    return DeletableTopicResult(
        name=name, topic_id=topic_id, error_code=error, error_message=message
    )


def handle_create_partitions(broker: Broker, request: Request[CreatePartitionsRequest]) -> Outcome:
    """As CreateTopics: checked here, made off the event loop, recorded back on it."""
    body = request.payload
    asked: Asked = []
    requested = sum(_added_partitions(broker, wanted) for wanted in body.topics)
    # ControllerApis.createPartitions: ALTER on each topic.
    alterable = authz.allowed_names(
        broker, request, Op.ALTER, Kind.TOPIC, (wanted.name for wanted in body.topics)
    )
    for wanted in body.topics:
        try:
            if wanted.name not in alterable:
                raise TopicError(ErrorCode.topic_authorization_failed, "")
            if requested > PARTITIONS_PER_REQUEST_MAX:
                raise TopicError(ErrorCode.policy_violation, EXCESSIVE_BATCH)
            _check_replication(broker, 1, (a.broker_ids for a in wanted.assignments or ()))
            topic, added = broker.topics.plan_growth(wanted.name, wanted.count)
            broker.topics.reserve(topic.name, added)
            asked.append((wanted.name, _Making(topic, len(topic.partitions), added)))
        except TopicError as exc:
            asked.append((wanted.name, exc))

    def respond() -> CreatePartitionsResponse:
        return CreatePartitionsResponse(
            throttle_time=NO_THROTTLE,
            results=tuple(_grown(name, outcome) for name, outcome in asked),
        )

    return _make(broker, request, asked, respond, body.validate_only)


def _grown(name: TopicName, outcome: _Making | TopicError) -> CreatePartitionsTopicResult:
    if isinstance(outcome, TopicError):
        return CreatePartitionsTopicResult(
            name=name, error_code=outcome.error, error_message=str(outcome) or None
        )
    return CreatePartitionsTopicResult(name=name, error_code=ErrorCode.none, error_message=None)


def _added_partitions(broker: Broker, wanted: CreatePartitionsTopic) -> int:
    """What a CreatePartitionsTopic would add (0 if it adds nothing or names no topic)."""
    topic = broker.topics.get(wanted.name)
    return 0 if topic is None else max(wanted.count - len(topic.partitions), 0)
