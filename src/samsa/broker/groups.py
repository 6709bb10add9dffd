"""Consumer-group APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
TxnOffsetCommit, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete. The decisions are the
group coordinator's (`samsa.coordinator.group`); this module speaks the wire."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from kio.index import load_entity_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader
from kio.static.constants import EntityType

from samsa.broker.answers import answer
from samsa.broker.outcomes import AwaitSlot, Outcome
from samsa.broker.txn import offsets_partition
from samsa.coordinator.group import commits
from samsa.coordinator.group.commits import OffsetToCommit
from samsa.coordinator.group.coordinator import JoinRequest, JoinResult, SyncResult
from samsa.coordinator.group.states import GroupState
from samsa.durability import Slot
from samsa.protocol.codec import Request

if TYPE_CHECKING:
    from samsa.broker.core import Broker

T = TypeVar("T")
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)


def _deferred(
    broker: Broker, request: Request, result: T | Slot, describe: Callable[[T], dict[str, Any]]
) -> Outcome:
    if isinstance(result, Slot):
        answer = Slot()
        result.subscribe(
            lambda value: answer.resolve(broker.reply(request, describe(value)).payload)
        )
        return AwaitSlot(request.correlation_id, answer)
    return broker.reply(request, describe(result))


def _ms(value: Any) -> int:
    return int(value.total_seconds() * 1000)


# --------------------------------------------------------------------- membership
def handle_join_group(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    broker.groups.catch_up()
    session_ms = _ms(body.session_timeout)
    join = JoinRequest(
        group_id=body.group_id,
        member_id=body.member_id,
        group_instance_id=getattr(body, "group_instance_id", None),
        client_id=request.client_id or "",
        client_host="",
        session_timeout_ms=session_ms,
        rebalance_timeout_ms=_ms(body.rebalance_timeout)
        if request.api_version >= 1
        else session_ms,
        protocol_type=body.protocol_type,
        protocols=[(p.name, bytes(p.metadata)) for p in body.protocols],
        require_known_member_id=request.api_version >= 4,
    )

    def describe(result: JoinResult) -> dict[str, Any]:
        return {
            "throttle_time": 0,
            "error_code": result.error,
            "generation_id": result.generation_id,
            "protocol_type": result.protocol_type,
            "protocol_name": result.protocol_name or ("" if request.api_version < 7 else None),
            "leader": result.leader,
            "skip_assignment": False,
            "member_id": result.member_id,
            "members": [
                {"member_id": m, "group_instance_id": i, "metadata": md}
                for m, i, md in result.members
            ],
        }

    return _deferred(broker, request, broker.groups.join(join), describe)


def handle_sync_group(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    result = broker.groups.sync(
        body.group_id,
        int(body.generation_id),
        body.member_id,
        getattr(body, "group_instance_id", None),
        getattr(body, "protocol_type", None),
        getattr(body, "protocol_name", None),
        {a.member_id: bytes(a.assignment) for a in body.assignments},
    )

    def describe(r: SyncResult) -> dict[str, Any]:
        return {
            "throttle_time": 0,
            "error_code": r.error,
            "protocol_type": r.protocol_type,
            "protocol_name": r.protocol_name,
            "assignment": r.assignment,
        }

    return _deferred(broker, request, result, describe)


def handle_heartbeat(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    error = broker.groups.heartbeat(
        body.group_id,
        int(body.generation_id),
        body.member_id,
        getattr(body, "group_instance_id", None),
    )
    return broker.reply(request, {"throttle_time": 0, "error_code": error})


def handle_leave_group(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    if request.api_version >= 3:
        leaving = [(m.member_id, m.group_instance_id) for m in body.members]
    else:
        leaving = [(body.member_id, None)]
    errors = broker.groups.leave(body.group_id, leaving)
    top = errors[0] if request.api_version < 3 and errors else ErrorCode.none
    if request.api_version >= 3 and broker.groups.groups.get(body.group_id) is None:
        top = ErrorCode.unknown_member_id
    return broker.reply(
        request,
        {
            "throttle_time": 0,
            "error_code": top,
            "members": [
                {"member_id": m, "group_instance_id": i, "error_code": e}
                for (m, i), e in zip(leaving, errors, strict=True)
            ],
        },
    )


# --------------------------------------------------------------------- offsets
def _to_commit(topics: Any) -> list[OffsetToCommit]:
    return [
        OffsetToCommit(
            t.name,
            int(p.partition_index),
            int(p.committed_offset),
            int(getattr(p, "committed_leader_epoch", -1)),
            p.committed_metadata,
        )
        for t in topics
        for p in t.partitions
    ]


def _partition_exists(broker: Broker) -> Callable[[str, int], bool]:
    return lambda topic, partition: broker.topics.partition(topic, partition) is not None


def _commit_response(
    offsets: list[OffsetToCommit], results: dict[tuple[str, int], ErrorCode]
) -> list[dict[str, Any]]:
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for o in offsets:
        by_topic.setdefault(o.topic, []).append(
            {"partition_index": o.partition, "error_code": results[o.topic, o.partition]}
        )
    return [{"name": t, "partitions": ps} for t, ps in by_topic.items()]


def handle_offset_commit(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    offsets = _to_commit(body.topics)
    result = commits.commit(
        broker.groups,
        body.group_id,
        int(body.generation_id_or_member_epoch),
        body.member_id,
        getattr(body, "group_instance_id", None),
        offsets,
        _partition_exists(broker),
    )
    return answer(
        broker,
        request,
        result,
        lambda r: {"throttle_time": 0, "topics": _commit_response(offsets, r)},
    )


def handle_txn_offset_commit(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    offsets = _to_commit(body.topics)
    txn_id = body.transactional_id

    def verify(header: Any) -> ErrorCode:
        return broker.txn.verify(
            txn_id, header.producer_id, header.producer_epoch, offsets_partition(body.group_id)
        )

    result = commits.txn_commit(
        broker.groups,
        body.group_id,
        int(body.producer_id),
        int(body.producer_epoch),
        int(getattr(body, "generation_id", -1)),
        getattr(body, "member_id", ""),
        getattr(body, "group_instance_id", None),
        offsets,
        _partition_exists(broker),
        verify,
    )
    return answer(
        broker,
        request,
        result,
        lambda r: {"throttle_time": 0, "topics": _commit_response(offsets, r)},
    )


def handle_offset_fetch(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    wanted = (
        None
        if body.topics is None
        else [(t.name, int(p)) for t in body.topics for p in t.partition_indexes]
    )
    found = commits.fetch(
        broker.groups, body.group_id, wanted, bool(getattr(body, "require_stable", False))
    )
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for (topic, partition), value in found.items():
        by_topic.setdefault(topic, []).append(
            {
                "partition_index": partition,
                "committed_offset": value.offset,
                "committed_leader_epoch": value.leader_epoch,
                "metadata": value.metadata,
                "error_code": value.error,
            }
        )
    return broker.reply(
        request,
        {
            "throttle_time": 0,
            "error_code": ErrorCode.none,
            "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()],
        },
    )


def _subscribed_topics(metadata: bytes) -> set[str]:
    """Topics in a consumer member's subscription (ConsumerProtocolSubscription)."""
    try:
        (version,) = struct.unpack_from(">h", metadata)
        schema = load_entity_schema(
            "consumer_protocol_subscription", min(version, 3), EntityType.data
        )
        subscription, _ = entity_reader(schema)(metadata, 2)
        return {str(topic) for topic in getattr(subscription, "topics", ())}
    except Exception:
        return set()


def handle_offset_delete(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    group = broker.groups.groups.get(body.group_id)
    subscribed: set[str] = set()
    if group is not None and group.protocol_type == "consumer":
        for member in group.members.values():
            subscribed |= _subscribed_topics(member.metadata_for(group.protocol_name or ""))
    wanted = [(t.name, int(p.partition_index)) for t in body.topics for p in t.partitions]
    result = commits.delete(broker.groups, body.group_id, wanted, subscribed.__contains__)
    if isinstance(result, ErrorCode):
        return broker.reply(request, {"error_code": result, "throttle_time": 0, "topics": ()})

    def describe(results: dict[tuple[str, int], ErrorCode]) -> dict[str, Any]:
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for (topic, partition), error in results.items():
            by_topic.setdefault(topic, []).append(
                {"partition_index": partition, "error_code": error}
            )
        return {
            "error_code": ErrorCode.none,
            "throttle_time": 0,
            "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()],
        }

    return answer(broker, request, result, describe)


# --------------------------------------------------------------------- admin
def handle_list_groups(broker: Broker, request: Request) -> Outcome:
    states = set(getattr(request.payload, "states_filter", ()) or ())
    groups = [
        {
            "group_id": g.group_id,
            "protocol_type": g.protocol_type or "",
            "group_state": g.state.value,
        }
        for g in broker.groups.groups.values()
        if g.state is not GroupState.DEAD and (not states or g.state.value in states)
    ]
    return broker.reply(
        request, {"throttle_time": 0, "error_code": ErrorCode.none, "groups": groups}
    )


def handle_describe_groups(broker: Broker, request: Request) -> Outcome:
    described = []
    for group_id in request.payload.groups:
        group = broker.groups.groups.get(group_id)
        if group is None:
            described.append(
                {
                    "error_code": ErrorCode.none,
                    "group_id": group_id,
                    "group_state": GroupState.DEAD.value,
                    "protocol_type": "",
                    "protocol_data": "",
                    "members": (),
                    "authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
                }
            )
            continue
        stable = group.state is GroupState.STABLE
        described.append(
            {
                "error_code": ErrorCode.none,
                "group_id": group_id,
                "group_state": group.state.value,
                "protocol_type": group.protocol_type or "",
                "protocol_data": group.protocol_name or "",
                "members": [
                    {
                        "member_id": m.member_id,
                        "group_instance_id": m.group_instance_id,
                        "client_id": m.client_id,
                        "client_host": m.client_host,
                        "member_metadata": m.metadata_for(group.protocol_name or "")
                        if stable
                        else b"",
                        "member_assignment": m.assignment if stable else b"",
                    }
                    for m in group.members.values()
                ],
                "authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
            }
        )
    return broker.reply(request, {"throttle_time": 0, "groups": described})


def handle_delete_groups(broker: Broker, request: Request) -> Outcome:
    result = broker.groups.delete_groups(request.payload.groups_names)

    def describe(results: dict[str, ErrorCode]) -> dict[str, Any]:
        return {
            "throttle_time": 0,
            "results": [{"group_id": g, "error_code": e} for g, e in results.items()],
        }

    return answer(broker, request, result, describe)
