"""Consumer-group APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
TxnOffsetCommit, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete. The decisions are the
group coordinator's (`samsa.coordinator.group`); this module speaks the wire."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from kio.index import load_entity_schema
from kio.schema.consumer_protocol_subscription.v3.data import ConsumerProtocolSubscription
from kio.schema.delete_groups.v2.request import DeleteGroupsRequest
from kio.schema.delete_groups.v2.response import DeletableGroupResult, DeleteGroupsResponse
from kio.schema.describe_groups.v5.request import DescribeGroupsRequest
from kio.schema.describe_groups.v5.response import (
    DescribedGroup,
    DescribedGroupMember,
    DescribeGroupsResponse,
)
from kio.schema.errors import ErrorCode
from kio.schema.heartbeat.v4.request import HeartbeatRequest
from kio.schema.heartbeat.v4.response import HeartbeatResponse
from kio.schema.join_group.v9.request import JoinGroupRequest
from kio.schema.join_group.v9.response import JoinGroupResponse, JoinGroupResponseMember
from kio.schema.leave_group.v2.request import LeaveGroupRequest as LeaveGroupRequestV2
from kio.schema.leave_group.v5.request import LeaveGroupRequest, MemberIdentity
from kio.schema.leave_group.v5.response import LeaveGroupResponse, MemberResponse
from kio.schema.list_groups.v5.request import ListGroupsRequest
from kio.schema.list_groups.v5.response import ListedGroup, ListGroupsResponse
from kio.schema.offset_commit.v9.request import OffsetCommitRequest
from kio.schema.offset_commit.v9.response import (
    OffsetCommitResponse,
    OffsetCommitResponsePartition,
    OffsetCommitResponseTopic,
)
from kio.schema.offset_delete.v0.request import OffsetDeleteRequest
from kio.schema.offset_delete.v0.response import (
    OffsetDeleteResponse,
    OffsetDeleteResponsePartition,
    OffsetDeleteResponseTopic,
)
from kio.schema.offset_fetch.v7.request import OffsetFetchRequest as OffsetFetchRequestV7
from kio.schema.offset_fetch.v7.response import OffsetFetchResponse as OffsetFetchResponseV7
from kio.schema.offset_fetch.v7.response import (
    OffsetFetchResponsePartition as OffsetFetchResponsePartitionV7,
)
from kio.schema.offset_fetch.v7.response import (
    OffsetFetchResponseTopic as OffsetFetchResponseTopicV7,
)
from kio.schema.offset_fetch.v9.request import (
    OffsetFetchRequest,
    OffsetFetchRequestGroup,
    OffsetFetchRequestTopics,
)
from kio.schema.offset_fetch.v9.response import (
    OffsetFetchResponse,
    OffsetFetchResponseGroup,
    OffsetFetchResponsePartitions,
    OffsetFetchResponseTopics,
)
from kio.schema.sync_group.v5.request import SyncGroupRequest
from kio.schema.sync_group.v5.response import SyncGroupResponse
from kio.schema.txn_offset_commit.v3.request import TxnOffsetCommitRequest
from kio.schema.txn_offset_commit.v3.response import (
    TxnOffsetCommitResponse,
    TxnOffsetCommitResponsePartition,
    TxnOffsetCommitResponseTopic,
)
from kio.schema.types import GroupId, TopicName
from kio.serial import entity_reader
from kio.static.constants import EntityType
from kio.static.primitive import i32, i64
from kio.static.protocol import RequestPayload, ResponsePayload

from samsa.broker import authz
from samsa.broker.answers import answer
from samsa.broker.authz import Kind, Op
from samsa.broker.metadata import authorized
from samsa.broker.outcomes import AwaitSlot, Outcome
from samsa.broker.routing import NO_THROTTLE, reply, response, to_ms
from samsa.broker.txn import offsets_partition
from samsa.coordinator.group import commits
from samsa.coordinator.group.commits import OffsetToCommit, Results
from samsa.coordinator.group.coordinator import JoinRequest, JoinResult, SyncResult
from samsa.coordinator.group.states import GroupState, GroupType
from samsa.durability import Durable, Slot
from samsa.protocol import versions
from samsa.protocol.batch import BatchHeader
from samsa.protocol.codec import Request

if TYPE_CHECKING:
    from samsa.broker.core import Broker

T = TypeVar("T")
V = TypeVar("V")
# JoinGroup v7 made the protocol name nullable (KIP-559); older versions get "" for none.
NULLABLE_PROTOCOL_VERSION_MIN = 7
# LeaveGroup v3 leaves a batch of members (KIP-345); before, the one `member_id`.
BATCHED_LEAVE_VERSION_MIN = 3
# OffsetFetch v8 fetches a batch of groups (KIP-709); v9 names the member and its epoch.
MULTI_GROUP_FETCH_VERSION_MIN = 8


def _deferred(
    request: Request[RequestPayload],
    result: T | Slot,
    describe: Callable[[T], ResponsePayload],
) -> Outcome:
    if isinstance(result, Slot):
        answer = Slot()
        result.subscribe(lambda value: answer.resolve(response(request, describe(value))))
        return AwaitSlot(request.correlation_id, answer)
    return reply(request, describe(result))


def _by_topic(found: Iterable[tuple[tuple[str, int], V]]) -> dict[TopicName, list[tuple[i32, V]]]:
    """Per-partition results grouped by topic, in the order they come."""
    grouped: dict[TopicName, list[tuple[i32, V]]] = {}
    for (topic, partition), value in found:
        grouped.setdefault(TopicName(topic), []).append((i32(partition), value))
    return grouped


# --------------------------------------------------------------------- membership
def handle_join_group(broker: Broker, request: Request[JoinGroupRequest]) -> Outcome:
    body = request.payload
    refusal = authz.group_refusal(broker, request, Op.READ, body.group_id)
    session_ms = to_ms(body.session_timeout)
    join = JoinRequest(
        group_id=body.group_id,
        member_id=body.member_id,
        group_instance_id=body.group_instance_id,
        client_id=request.client_id or "",
        client_host=request.client_host,
        session_timeout_ms=session_ms,
        rebalance_timeout_ms=to_ms(body.rebalance_timeout)
        if request.api_version >= 1
        else session_ms,
        protocol_type=body.protocol_type,
        protocols=[(p.name, bytes(p.metadata)) for p in body.protocols],
        require_known_member_id=request.api_version >= 4,
    )
    no_protocol = "" if request.api_version < NULLABLE_PROTOCOL_VERSION_MIN else None

    def describe(result: JoinResult) -> JoinGroupResponse:
        return JoinGroupResponse(
            throttle_time=NO_THROTTLE,
            error_code=result.error,
            generation_id=i32(result.generation_id),
            protocol_type=result.protocol_type,
            protocol_name=result.protocol_name or no_protocol,
            leader=result.leader,
            skip_assignment=False,
            member_id=result.member_id,
            members=tuple(
                JoinGroupResponseMember(member_id=m, group_instance_id=i, metadata=md)
                for m, i, md in result.members
            ),
        )

    if refusal is not None:  # JoinGroupRequest.getErrorResponse
        return reply(request, describe(JoinResult(refusal, protocol_name="")))
    broker.groups.catch_up()
    return _deferred(request, broker.groups.join(join), describe)


def handle_sync_group(broker: Broker, request: Request[SyncGroupRequest]) -> Outcome:
    body = request.payload
    refusal = authz.group_refusal(broker, request, Op.READ, body.group_id)
    result = (
        SyncResult(refusal)
        if refusal is not None
        else broker.groups.sync(
            body.group_id,
            body.generation_id,
            body.member_id,
            body.group_instance_id,
            body.protocol_type,
            body.protocol_name,
            {a.member_id: bytes(a.assignment) for a in body.assignments},
        )
    )

    def describe(r: SyncResult) -> SyncGroupResponse:
        return SyncGroupResponse(
            throttle_time=NO_THROTTLE,
            error_code=r.error,
            protocol_type=r.protocol_type,
            protocol_name=r.protocol_name,
            assignment=r.assignment,
        )

    return _deferred(request, result, describe)


def handle_heartbeat(broker: Broker, request: Request[HeartbeatRequest]) -> Outcome:
    body = request.payload
    error = authz.group_refusal(broker, request, Op.READ, body.group_id) or broker.groups.heartbeat(
        body.group_id, body.generation_id, body.member_id, body.group_instance_id
    )
    return reply(request, HeartbeatResponse(throttle_time=NO_THROTTLE, error_code=error))


def leave_group_view(request: Request[RequestPayload]) -> LeaveGroupRequest:
    """Before v3 a request names one member by `member_id`: as Kafka's
    `LeaveGroupRequest.members()` does, it is taken as a batch of that one member."""
    if request.api_version >= BATCHED_LEAVE_VERSION_MIN:
        return versions.convert(request.payload, LeaveGroupRequest)
    old = versions.convert(request.payload, LeaveGroupRequestV2)
    return LeaveGroupRequest(
        group_id=old.group_id, members=(MemberIdentity(member_id=old.member_id),)
    )


def handle_leave_group(broker: Broker, request: Request[LeaveGroupRequest]) -> Outcome:
    body = request.payload
    leaving = [(m.member_id, m.group_instance_id) for m in body.members]
    refusal = authz.group_refusal(broker, request, Op.READ, body.group_id)
    if refusal is not None:  # LeaveGroupRequest.getErrorResponse: no members
        return reply(
            request, LeaveGroupResponse(throttle_time=NO_THROTTLE, error_code=refusal, members=())
        )
    errors = broker.groups.leave(body.group_id, leaving)
    batched = request.api_version >= BATCHED_LEAVE_VERSION_MIN
    top = errors[0] if not batched and errors else ErrorCode.none
    if batched and broker.groups.groups.get(body.group_id) is None:
        top = ErrorCode.unknown_member_id
    return reply(
        request,
        LeaveGroupResponse(
            throttle_time=NO_THROTTLE,
            error_code=top,
            members=tuple(
                MemberResponse(member_id=m, group_instance_id=i, error_code=e)
                for (m, i), e in zip(leaving, errors, strict=True)
            ),
        ),
    )


# --------------------------------------------------------------------- offsets
class _CommittedPartition(Protocol):
    """A partition of an OffsetCommit or a TxnOffsetCommit request."""

    @property
    def partition_index(self) -> i32: ...
    @property
    def committed_offset(self) -> i64: ...
    @property
    def committed_leader_epoch(self) -> i32: ...
    @property
    def committed_metadata(self) -> str | None: ...


class _CommittedTopic(Protocol):
    @property
    def name(self) -> TopicName: ...
    @property
    def partitions(self) -> Sequence[_CommittedPartition]: ...


def _to_commit(topics: Iterable[_CommittedTopic]) -> list[OffsetToCommit]:
    return [
        OffsetToCommit(
            t.name,
            p.partition_index,
            p.committed_offset,
            p.committed_leader_epoch,
            p.committed_metadata,
        )
        for t in topics
        for p in t.partitions
    ]


def _partition_exists(broker: Broker) -> Callable[[str, int], bool]:
    return lambda topic, partition: broker.topics.partition(topic, partition) is not None


def _committed(
    offsets: list[OffsetToCommit], results: dict[tuple[str, int], ErrorCode]
) -> dict[TopicName, list[tuple[i32, ErrorCode]]]:
    return _by_topic(((o.topic, o.partition), results[o.topic, o.partition]) for o in offsets)


# OffsetCommit and OffsetFetch v0 kept offsets in ZooKeeper. Kafka 3.9 in KRaft mode, as samsa
# is, still advertised them and answered UNSUPPORTED_VERSION for every partition named
# (KafkaApis.commitOffsetsToZookeeper / handleOffsetFetchRequestFromZookeeper): group offsets
# are only ever kept by the coordinator, from v1 on.
ZOOKEEPER_OFFSETS_VERSION = 0


def _refused_topics(
    broker: Broker, request: Request[Any], wanted: Iterable[tuple[str, int]]
) -> Results:
    """TOPIC_AUTHORIZATION_FAILED for each partition of a topic the client may not READ
    (KafkaApis' commit and offset-delete handlers)."""
    wanted = list(wanted)
    readable = authz.allowed_names(broker, request, Op.READ, Kind.TOPIC, (t for t, _ in wanted))
    return {tp: ErrorCode.topic_authorization_failed for tp in wanted if tp[0] not in readable}


def _commit_checked(
    request: Request[RequestPayload],
    refusal: ErrorCode | None,
    offsets: list[OffsetToCommit],
    refused: Results,
    commit: Callable[[list[OffsetToCommit]], Results | Durable[Results]],
    describe: Callable[[Results], ResponsePayload],
) -> Outcome:
    """A commit after its checks: refused whole (`refusal`), or `commit` of what is allowed
    with `refused` answered beside it; nothing asked of the coordinator if nothing is."""
    if refusal is not None:
        return reply(request, describe({(o.topic, o.partition): refusal for o in offsets}))
    allowed = [o for o in offsets if (o.topic, o.partition) not in refused]
    if not allowed:
        return reply(request, describe(refused))
    return answer(request, commit(allowed), lambda results: describe({**refused, **results}))


def handle_offset_commit(broker: Broker, request: Request[OffsetCommitRequest]) -> Outcome:
    body = request.payload
    offsets = _to_commit(body.topics)
    # KafkaApis.handleOffsetCommitRequest: READ on the group, then READ on each topic.
    refusal = authz.group_refusal(broker, request, Op.READ, body.group_id)
    refused = _refused_topics(broker, request, ((o.topic, o.partition) for o in offsets))

    def commit(allowed: list[OffsetToCommit]) -> Results | Durable[Results]:
        if request.api_version == ZOOKEEPER_OFFSETS_VERSION:
            return _zookeeper_commit(broker, allowed)
        return commits.commit(
            broker.groups,
            body.group_id,
            body.generation_id_or_member_epoch,
            body.member_id,
            body.group_instance_id,
            allowed,
            _partition_exists(broker),
            request.api_version,
        )

    return _commit_checked(
        request, refusal, offsets, refused, commit, lambda r: _commit_response(offsets, r)
    )


def _zookeeper_commit(
    broker: Broker, offsets: list[OffsetToCommit]
) -> dict[tuple[str, int], ErrorCode]:
    """Kafka checks the partitions first: with none that exists, each is UNKNOWN_TOPIC_OR_PARTITION;
    otherwise the ZooKeeper write fails the whole request, every partition alike."""
    exists = _partition_exists(broker)
    error = (
        ErrorCode.unsupported_version
        if any(exists(o.topic, o.partition) for o in offsets)
        else ErrorCode.unknown_topic_or_partition
    )
    return {(o.topic, o.partition): error for o in offsets}


def _commit_response(
    offsets: list[OffsetToCommit], results: dict[tuple[str, int], ErrorCode]
) -> OffsetCommitResponse:
    return OffsetCommitResponse(
        throttle_time=NO_THROTTLE,
        topics=tuple(
            OffsetCommitResponseTopic(
                name=topic,
                partitions=tuple(
                    OffsetCommitResponsePartition(partition_index=p, error_code=e)
                    for p, e in partitions
                ),
            )
            for topic, partitions in _committed(offsets, results).items()
        ),
    )


def handle_txn_offset_commit(broker: Broker, request: Request[TxnOffsetCommitRequest]) -> Outcome:
    body = request.payload
    offsets = _to_commit(body.topics)
    txn_id = body.transactional_id
    # KafkaApis.handleTxnOffsetCommitRequest: WRITE on the transactional id, READ on the group,
    # READ on each topic.
    refusal = authz.txn_refusal(broker, request, txn_id) or authz.group_refusal(
        broker, request, Op.READ, body.group_id
    )
    refused = _refused_topics(broker, request, ((o.topic, o.partition) for o in offsets))

    def verify(header: BatchHeader) -> ErrorCode:
        return broker.txn.verify(
            txn_id, header.producer_id, header.producer_epoch, offsets_partition(body.group_id)
        )

    def commit(allowed: list[OffsetToCommit]) -> Results | Durable[Results]:
        return commits.txn_commit(
            broker.groups,
            body.group_id,
            body.producer_id,
            body.producer_epoch,
            body.generation_id,
            body.member_id,
            body.group_instance_id,
            allowed,
            _partition_exists(broker),
            verify,
        )

    def describe(results: dict[tuple[str, int], ErrorCode]) -> TxnOffsetCommitResponse:
        return TxnOffsetCommitResponse(
            throttle_time=NO_THROTTLE,
            topics=tuple(
                TxnOffsetCommitResponseTopic(
                    name=topic,
                    partitions=tuple(
                        TxnOffsetCommitResponsePartition(partition_index=p, error_code=e)
                        for p, e in partitions
                    ),
                )
                for topic, partitions in _committed(offsets, results).items()
            ),
        )

    return _commit_checked(request, refusal, offsets, refused, commit, describe)


def offset_fetch_view(request: Request[RequestPayload]) -> OffsetFetchRequest:
    """Before v8 a request fetches one group's offsets: taken as a batch of that one group."""
    if request.api_version >= MULTI_GROUP_FETCH_VERSION_MIN:
        return versions.convert(request.payload, OffsetFetchRequest)
    old = versions.convert(request.payload, OffsetFetchRequestV7)
    return OffsetFetchRequest(
        groups=(
            OffsetFetchRequestGroup(
                group_id=old.group_id,
                topics=None
                if old.topics is None
                else tuple(
                    OffsetFetchRequestTopics(name=t.name, partition_indexes=t.partition_indexes)
                    for t in old.topics
                ),
            ),
        ),
        require_stable=old.require_stable,
    )


def _fetch_group(
    broker: Broker,
    request: Request[OffsetFetchRequest],
    group: OffsetFetchRequestGroup,
    require_stable: bool,
    zookeeper: bool,
) -> OffsetFetchResponseGroup:
    """One group's offsets; `zookeeper` for v0, whose offsets Kafka kept in ZooKeeper."""
    wanted: list[tuple[str, int]] | None = (
        None
        if group.topics is None
        else [(t.name, p) for t in group.topics for p in t.partition_indexes]
    )
    # KafkaApis.handleOffsetFetchRequest: DESCRIBE on the group first ...
    refusal = authz.group_refusal(broker, request, Op.DESCRIBE, group.group_id)
    if refusal is not None:
        # OffsetFetchRequest.getErrorResponse: v2+ says it once; v1 for each partition.
        refused = dict.fromkeys(
            wanted or [] if request.api_version < 2 else [], _unfetched(refusal)
        )
        return _fetched_group(group.group_id, refused, refusal)
    error = broker.groups.check_fetch(group.group_id, group.member_id, group.member_epoch)
    if error != ErrorCode.none:
        return OffsetFetchResponseGroup(group_id=group.group_id, topics=(), error_code=error)
    if zookeeper:
        found = dict.fromkeys(wanted or (), _unfetched(ErrorCode.unsupported_version))
    else:
        found = commits.fetch(broker.groups, group.group_id, wanted, require_stable)
    # ... then DESCRIBE on each topic: a topic asked for is answered TOPIC_AUTHORIZATION_FAILED,
    # one not asked for is left out.
    described = authz.allowed_names(broker, request, Op.DESCRIBE, Kind.TOPIC, (t for t, _ in found))
    found = {
        tp: value if tp[0] in described else _unfetched(ErrorCode.topic_authorization_failed)
        for tp, value in found.items()
        if wanted is not None or tp[0] in described
    }
    return _fetched_group(group.group_id, found, ErrorCode.none)


def _fetched_group(
    group_id: GroupId, found: dict[tuple[str, int], commits.FetchedOffset], error: ErrorCode
) -> OffsetFetchResponseGroup:
    return OffsetFetchResponseGroup(
        group_id=group_id,
        topics=tuple(
            OffsetFetchResponseTopics(
                name=topic,
                partitions=tuple(
                    OffsetFetchResponsePartitions(
                        partition_index=partition,
                        committed_offset=i64(value.offset),
                        committed_leader_epoch=i32(value.leader_epoch),
                        metadata=value.metadata,
                        error_code=value.error,
                    )
                    for partition, value in partitions
                ),
            )
            for topic, partitions in _by_topic(found.items()).items()
        ),
        error_code=error,
    )


def handle_offset_fetch(broker: Broker, request: Request[OffsetFetchRequest]) -> Outcome:
    body = request.payload
    zookeeper = request.api_version == ZOOKEEPER_OFFSETS_VERSION
    groups = tuple(
        _fetch_group(broker, request, g, body.require_stable, zookeeper) for g in body.groups
    )
    if request.api_version >= MULTI_GROUP_FETCH_VERSION_MIN:
        return reply(request, OffsetFetchResponse(throttle_time=NO_THROTTLE, groups=groups))
    (group,) = groups
    return reply(
        request,
        OffsetFetchResponseV7(
            throttle_time=NO_THROTTLE,
            error_code=group.error_code,
            topics=tuple(
                OffsetFetchResponseTopicV7(
                    name=t.name,
                    partitions=tuple(
                        OffsetFetchResponsePartitionV7(
                            partition_index=p.partition_index,
                            committed_offset=p.committed_offset,
                            committed_leader_epoch=p.committed_leader_epoch,
                            metadata=p.metadata,
                            error_code=p.error_code,
                        )
                        for p in t.partitions
                    ),
                )
                for t in group.topics
            ),
        ),
    )


def _unfetched(error: ErrorCode) -> commits.FetchedOffset:
    """OffsetFetchResponse's UNAUTHORIZED_PARTITION (and its error response's partitions)."""
    return commits.FetchedOffset(-1, -1, "", error)


def _subscribed_topics(metadata: bytes) -> set[str]:
    """Topics in a consumer member's subscription (ConsumerProtocolSubscription)."""
    try:
        (version,) = struct.unpack_from(">h", metadata)
        schema = load_entity_schema(
            "consumer_protocol_subscription", min(version, 3), EntityType.data
        )
        subscription, _ = entity_reader(schema)(metadata, 2)
        return set(versions.convert(subscription, ConsumerProtocolSubscription).topics)
    except Exception:
        return set()


def handle_offset_delete(broker: Broker, request: Request[OffsetDeleteRequest]) -> Outcome:
    body = request.payload
    # KafkaApis.handleOffsetDeleteRequest: DELETE on the group, then READ on each topic.
    refusal = authz.group_refusal(broker, request, Op.DELETE, body.group_id)
    if refusal is not None:
        return reply(
            request, OffsetDeleteResponse(error_code=refusal, throttle_time=NO_THROTTLE, topics=())
        )
    group = broker.groups.groups.get(body.group_id)
    subscribed: set[str] = set()
    if group is not None and group.protocol_type == "consumer":
        for member in group.members.values():
            subscribed |= _subscribed_topics(member.metadata_for(group.protocol_name or ""))
    consumer_group = broker.groups.consumer.groups.get(body.group_id)
    if consumer_group is not None:
        subscribed = set(consumer_group.subscription_metadata)
    wanted: list[tuple[str, int]] = [
        (t.name, p.partition_index) for t in body.topics for p in t.partitions
    ]
    refused = _refused_topics(broker, request, wanted)
    allowed = [tp for tp in wanted if tp not in refused]
    result = commits.delete(broker.groups, body.group_id, allowed, subscribed.__contains__)
    if isinstance(result, ErrorCode):
        return reply(
            request, OffsetDeleteResponse(error_code=result, throttle_time=NO_THROTTLE, topics=())
        )

    def describe(results: dict[tuple[str, int], ErrorCode]) -> OffsetDeleteResponse:
        return OffsetDeleteResponse(
            error_code=ErrorCode.none,
            throttle_time=NO_THROTTLE,
            topics=tuple(
                OffsetDeleteResponseTopic(
                    name=topic,
                    partitions=tuple(
                        OffsetDeleteResponsePartition(partition_index=p, error_code=e)
                        for p, e in partitions
                    ),
                )
                for topic, partitions in _by_topic({**results, **refused}.items()).items()
            ),
        )

    return answer(request, result, describe)


# --------------------------------------------------------------------- admin
def handle_list_groups(broker: Broker, request: Request[ListGroupsRequest]) -> Outcome:
    """As Kafka's GroupMetadataManager.listGroups: both filters ignore case (states also
    surrounding blanks); a type Kafka does not know matches no group."""
    states = {state.strip().lower() for state in request.payload.states_filter}
    types = {GroupType.parse(name) for name in request.payload.types_filter}
    # KafkaApis.handleListGroupsRequest: every group with DESCRIBE on the cluster, else those
    # with DESCRIBE on the group.
    every = authz.cluster_allowed(broker, request, Op.DESCRIBE)
    groups = tuple(
        ListedGroup(
            group_id=GroupId(g.group_id),
            protocol_type=g.protocol_type or "",
            group_state=g.state.value,
            group_type=g.type.value,
        )
        for g in broker.groups.all_groups()
        if g.state is not GroupState.DEAD
        and (not states or g.state.value.lower() in states)
        and (not types or g.type in types)
        and (every or authz.allowed(broker, request, Op.DESCRIBE, Kind.GROUP, g.group_id))
    )
    return reply(
        request,
        ListGroupsResponse(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, groups=groups),
    )


def handle_describe_groups(broker: Broker, request: Request[DescribeGroupsRequest]) -> Outcome:
    asked = request.payload.include_authorized_operations
    # KafkaApis.handleDescribeGroupsRequest: DESCRIBE on each group.
    described = tuple(
        _describe_group(
            broker,
            group_id,
            authorized(authz.operations(broker, request, Kind.GROUP, group_id), asked),
        )
        if authz.allowed(broker, request, Op.DESCRIBE, Kind.GROUP, group_id)
        else DescribedGroup(
            error_code=ErrorCode.group_authorization_failed,
            group_id=group_id,
            group_state="",
            protocol_type="",
            protocol_data="",
            members=(),
        )
        for group_id in request.payload.groups
    )
    return reply(request, DescribeGroupsResponse(throttle_time=NO_THROTTLE, groups=described))


def _describe_group(broker: Broker, group_id: GroupId, operations: i32) -> DescribedGroup:
    group = broker.groups.groups.get(group_id)
    if group is None:
        return DescribedGroup(
            error_code=ErrorCode.none,
            group_id=group_id,
            group_state=GroupState.DEAD.value,
            protocol_type="",
            protocol_data="",
            members=(),
            authorized_operations=operations,
        )
    stable = group.state is GroupState.STABLE
    protocol = group.protocol_name or ""
    return DescribedGroup(
        error_code=ErrorCode.none,
        group_id=group_id,
        group_state=group.state.value,
        protocol_type=group.protocol_type or "",
        protocol_data=protocol,
        members=tuple(
            DescribedGroupMember(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                member_metadata=m.metadata_for(protocol) if stable else b"",
                member_assignment=m.assignment if stable else b"",
            )
            for m in group.members.values()
        ),
        authorized_operations=operations,
    )


def handle_delete_groups(broker: Broker, request: Request[DeleteGroupsRequest]) -> Outcome:
    # KafkaApis.handleDeleteGroupsRequest: DELETE on each group.
    names = request.payload.groups_names
    refused: dict[str, ErrorCode] = {
        g: ErrorCode.group_authorization_failed
        for g in names
        if authz.group_refusal(broker, request, Op.DELETE, g)
    }
    result = broker.groups.delete_groups(g for g in names if g not in refused)

    def describe(results: dict[str, ErrorCode]) -> DeleteGroupsResponse:
        return DeleteGroupsResponse(
            throttle_time=NO_THROTTLE,
            results=tuple(
                DeletableGroupResult(group_id=GroupId(g), error_code=e)
                for g, e in {**results, **refused}.items()
            ),
        )

    return answer(request, result, describe)
