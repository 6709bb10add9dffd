"""The consumer group protocol (KIP-848) on the wire: ConsumerGroupHeartbeat and
ConsumerGroupDescribe. The decisions are the group coordinator's
(`samsa.coordinator.group.consumer_machine`); this module speaks the wire.

Assignments travel as topic ids (a client resolves them with Metadata v12+); samsa's topics have
had ids all along, and the coordinator keeps them as text.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from kio.schema.consumer_group_describe.v1.request import ConsumerGroupDescribeRequest
from kio.schema.consumer_group_describe.v1.response import (
    Assignment as DescribedAssignment,
)
from kio.schema.consumer_group_describe.v1.response import (
    ConsumerGroupDescribeResponse,
    DescribedGroup,
    Member,
)
from kio.schema.consumer_group_describe.v1.response import (
    TopicPartitions as DescribedPartitions,
)
from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest
from kio.schema.consumer_group_heartbeat.v1.request import TopicPartitions as OwnedPartitions
from kio.schema.consumer_group_heartbeat.v1.response import (
    Assignment,
    ConsumerGroupHeartbeatResponse,
    TopicPartitions,
)
from kio.schema.errors import ErrorCode
from kio.schema.types import GroupId, TopicName
from kio.static.primitive import i8, i32, i32Timedelta

from samsa.broker import authz
from samsa.broker.answers import answer
from samsa.broker.authz import Kind, Op
from samsa.broker.metadata import authorized
from samsa.broker.outcomes import Outcome
from samsa.broker.routing import NO_THROTTLE, reply, to_ms
from samsa.coordinator.group.assignors import Partitions
from samsa.coordinator.group.consumer import ConsumerGroup, ConsumerMember
from samsa.coordinator.group.consumer_machine import HeartbeatRequest, HeartbeatResponse
from samsa.protocol.codec import Request

if TYPE_CHECKING:
    from samsa.broker.core import Broker

# ConsumerGroupHeartbeat v1: the client makes its member id (KIP-1082); v0 may leave it to us.
CLIENT_MEMBER_ID_VERSION_MIN = 1
CONSUMER_MEMBER_TYPE = 1  # ConsumerGroupDescribe v1's member_type: a consumer-protocol member


def _owned(topics: Iterable[OwnedPartitions] | None) -> Partitions | None:
    """The partitions a member reports it owns; None when it did not say."""
    if topics is None:
        return None
    owned: dict[str, frozenset[int]] = {}
    for item in topics:
        key = str(item.topic_id)
        owned[key] = owned.get(key, frozenset()) | frozenset(int(p) for p in item.partitions)
    return owned


def _heartbeat_refusal(
    broker: Broker, request: Request[ConsumerGroupHeartbeatRequest]
) -> ErrorCode | None:
    """KafkaApis.handleConsumerGroupHeartbeat: READ on the group, then DESCRIBE on every topic
    the member subscribes to by name."""
    body = request.payload
    refusal = authz.group_refusal(broker, request, Op.READ, body.group_id)
    if refusal is not None:
        return refusal
    names = body.subscribed_topic_names or ()
    described = authz.allowed_names(broker, request, Op.DESCRIBE, Kind.TOPIC, names)
    if len(described) < len(set(names)):
        return ErrorCode.topic_authorization_failed
    return None


def handle_consumer_group_heartbeat(
    broker: Broker, request: Request[ConsumerGroupHeartbeatRequest]
) -> Outcome:
    body = request.payload
    refusal = _heartbeat_refusal(broker, request)
    if refusal is not None:
        return reply(
            request,
            ConsumerGroupHeartbeatResponse(
                throttle_time=NO_THROTTLE,
                error_code=refusal,
                error_message=authz.MESSAGES[refusal],
                member_id=None,
                member_epoch=i32(0),
                heartbeat_interval=i32Timedelta.parse(datetime.timedelta(0)),
                assignment=None,
            ),
        )
    heartbeat = HeartbeatRequest(
        group_id=body.group_id,
        member_id=body.member_id,
        member_epoch=body.member_epoch,
        instance_id=body.instance_id,
        rack_id=body.rack_id,
        rebalance_timeout_ms=to_ms(body.rebalance_timeout),
        subscribed_topic_names=None
        if body.subscribed_topic_names is None
        else tuple(body.subscribed_topic_names),
        subscribed_topic_regex=body.subscribed_topic_regex,
        server_assignor=body.server_assignor,
        topic_partitions=_owned(body.topic_partitions),
        client_id=request.client_id or "",
        client_host=request.client_host,
        member_id_required=request.api_version >= CLIENT_MEMBER_ID_VERSION_MIN,
    )

    def describe(result: HeartbeatResponse) -> ConsumerGroupHeartbeatResponse:
        assignment = (
            None
            if result.assignment is None
            else Assignment(
                topic_partitions=tuple(
                    TopicPartitions(
                        topic_id=uuid.UUID(topic),
                        partitions=tuple(i32(p) for p in sorted(parts)),
                    )
                    for topic, parts in sorted(result.assignment.items())
                )
            )
        )
        return ConsumerGroupHeartbeatResponse(
            throttle_time=NO_THROTTLE,
            error_code=result.error,
            error_message=result.message,
            member_id=result.member_id,
            member_epoch=i32(result.member_epoch),
            heartbeat_interval=i32Timedelta.parse(
                datetime.timedelta(milliseconds=result.heartbeat_interval_ms)
            ),
            assignment=assignment,
        )

    return answer(request, broker.groups.consumer_heartbeat(heartbeat), describe)


def handle_consumer_group_describe(
    broker: Broker, request: Request[ConsumerGroupDescribeRequest]
) -> Outcome:
    broker.groups.catch_up()
    asked = request.payload.include_authorized_operations
    names = {str(t.topic_id): t.name for t in broker.topics}
    # KafkaApis.handleConsumerGroupDescribe: DESCRIBE on each group.
    described = tuple(
        _describe(
            broker,
            group_id,
            names,
            authorized(authz.operations(broker, request, Kind.GROUP, group_id), asked),
        )
        if authz.allowed(broker, request, Op.DESCRIBE, Kind.GROUP, group_id)
        else _not_described(group_id, ErrorCode.group_authorization_failed, None)
        for group_id in request.payload.group_ids
    )
    return answer(
        request,
        described,
        lambda groups: ConsumerGroupDescribeResponse(throttle_time=NO_THROTTLE, groups=groups),
    )


def _not_described(group_id: GroupId, error: ErrorCode, message: str | None) -> DescribedGroup:
    return DescribedGroup(
        error_code=error,
        error_message=message,
        group_id=group_id,
        group_state="",
        group_epoch=i32(0),
        assignment_epoch=i32(0),
        assignor_name="",
        members=(),
    )


def _describe(
    broker: Broker, group_id: GroupId, names: dict[str, str], operations: i32
) -> DescribedGroup:
    group = broker.groups.consumer.groups.get(group_id)
    if group is None:
        message = (
            f"Group {group_id} is not a consumer group."
            if group_id in broker.groups.groups
            else f"Group {group_id} not found."
        )
        return _not_described(group_id, ErrorCode.group_id_not_found, message)
    return DescribedGroup(
        error_code=ErrorCode.none,
        group_id=group_id,
        group_state=group.state.value,
        group_epoch=i32(group.group_epoch),
        assignment_epoch=i32(group.target_assignment_epoch),
        assignor_name=broker.groups.consumer.preferred_assignor(group),
        members=tuple(_member(group, m, names) for m in group.members.values()),
        authorized_operations=operations,
    )


def _member(group: ConsumerGroup, member: ConsumerMember, names: dict[str, str]) -> Member:
    return Member(
        member_id=member.member_id,
        instance_id=member.instance_id,
        rack_id=member.rack_id,
        member_epoch=i32(member.member_epoch),
        client_id=member.client_id,
        client_host=member.client_host,
        subscribed_topic_names=tuple(TopicName(n) for n in member.subscribed_topic_names),
        subscribed_topic_regex=member.subscribed_topic_regex,
        assignment=_assignment(member.assigned, names),
        target_assignment=_assignment(group.targets.get(member.member_id, {}), names),
        member_type=i8(CONSUMER_MEMBER_TYPE),
    )


def _assignment(partitions: Partitions, names: dict[str, str]) -> DescribedAssignment:
    return DescribedAssignment(
        topic_partitions=tuple(
            DescribedPartitions(
                topic_id=uuid.UUID(topic),
                topic_name=TopicName(names.get(topic, "")),
                partitions=tuple(i32(p) for p in sorted(parts)),
            )
            for topic, parts in sorted(partitions.items())
        )
    )
