"""Group and transaction requests at the protocol level (kio request objects over a raw socket),
for checks that real clients cannot make on demand: a commit with a stale generation, an
OffsetFetch with require_stable while a transaction is open."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from kio.schema.add_offsets_to_txn.v1.request import AddOffsetsToTxnRequest
from kio.schema.end_txn.v1.request import EndTxnRequest
from kio.schema.errors import ErrorCode
from kio.schema.heartbeat.v3.request import HeartbeatRequest
from kio.schema.init_producer_id.v1.request import InitProducerIdRequest
from kio.schema.join_group.v5.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.join_group.v5.response import JoinGroupResponse
from kio.schema.offset_commit.v7.request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kio.schema.offset_fetch.v7.request import OffsetFetchRequest, OffsetFetchRequestTopic
from kio.schema.sync_group.v3.request import SyncGroupRequest, SyncGroupRequestAssignment
from kio.schema.txn_offset_commit.v3.request import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestPartition,
    TxnOffsetCommitRequestTopic,
)
from kio.schema.types import GroupId, ProducerId, TopicName, TransactionalId
from kio.static.primitive import i16, i32, i32Timedelta, i64

from samsa.admin.client import AdminClient as Conn

SESSION = i32Timedelta.parse(datetime.timedelta(seconds=10))
REBALANCE = i32Timedelta.parse(datetime.timedelta(seconds=10))


@dataclass(frozen=True, slots=True)
class Membership:
    member_id: str
    generation_id: int
    leader: str


def join(conn: Conn, group: str, member_id: str = "", instance_id: str | None = None) -> Membership:
    """JoinGroup v5 (a new dynamic member first gets MEMBER_ID_REQUIRED and joins again)."""

    def request(member: str) -> JoinGroupResponse:
        response: JoinGroupResponse = conn.send(
            JoinGroupRequest(
                group_id=GroupId(group),
                session_timeout=SESSION,
                rebalance_timeout=REBALANCE,
                member_id=member,
                group_instance_id=instance_id,
                protocol_type="consumer",
                protocols=(JoinGroupRequestProtocol(name="range", metadata=b"\x00\x00"),),
            )
        )
        return response

    response = request(member_id)
    if response.error_code == ErrorCode.member_id_required:
        response = request(response.member_id)
    assert response.error_code == ErrorCode.none, response
    return Membership(response.member_id, int(response.generation_id), response.leader)


def sync(conn: Conn, group: str, member: Membership, instance_id: str | None = None) -> ErrorCode:
    """SyncGroup v3; the leader hands every member an empty assignment."""
    response = conn.send(
        SyncGroupRequest(
            group_id=GroupId(group),
            generation_id=i32(member.generation_id),
            member_id=member.member_id,
            group_instance_id=instance_id,
            assignments=(SyncGroupRequestAssignment(member_id=member.member_id, assignment=b""),)
            if member.member_id == member.leader
            else (),
        )
    )
    error: ErrorCode = response.error_code
    return error


def heartbeat(
    conn: Conn, group: str, member_id: str, generation_id: int, instance_id: str | None = None
) -> ErrorCode:
    response = conn.send(
        HeartbeatRequest(
            group_id=GroupId(group),
            generation_id=i32(generation_id),
            member_id=member_id,
            group_instance_id=instance_id,
        )
    )
    error: ErrorCode = response.error_code
    return error


@dataclass(frozen=True, slots=True)
class TxnProducer:
    transactional_id: str
    producer_id: int
    producer_epoch: int


def init_producer(conn: Conn, transactional_id: str) -> TxnProducer:
    response = conn.send(
        InitProducerIdRequest(
            transactional_id=TransactionalId(transactional_id),
            transaction_timeout=i32Timedelta.parse(datetime.timedelta(seconds=60)),
        )
    )
    assert response.error_code == ErrorCode.none, response
    return TxnProducer(transactional_id, int(response.producer_id), int(response.producer_epoch))


def add_offsets(conn: Conn, producer: TxnProducer, group: str) -> ErrorCode:
    response = conn.send(
        AddOffsetsToTxnRequest(
            transactional_id=TransactionalId(producer.transactional_id),
            producer_id=ProducerId(producer.producer_id),
            producer_epoch=i16(producer.producer_epoch),
            group_id=GroupId(group),
        )
    )
    error: ErrorCode = response.error_code
    return error


def txn_offset_commit(
    conn: Conn,
    producer: TxnProducer,
    group: str,
    offsets: dict[tuple[str, int], int],
    generation_id: int = -1,
    member_id: str = "",
    instance_id: str | None = None,
) -> dict[tuple[str, int], ErrorCode]:
    """TxnOffsetCommit v3 (KIP-447: with the consumer's generation and member id)."""
    topics: dict[str, list[TxnOffsetCommitRequestPartition]] = {}
    for (topic, partition), offset in offsets.items():
        topics.setdefault(topic, []).append(
            TxnOffsetCommitRequestPartition(
                partition_index=i32(partition),
                committed_offset=i64(offset),
                committed_metadata="",
            )
        )
    response = conn.send(
        TxnOffsetCommitRequest(
            transactional_id=TransactionalId(producer.transactional_id),
            group_id=GroupId(group),
            producer_id=ProducerId(producer.producer_id),
            producer_epoch=i16(producer.producer_epoch),
            generation_id=i32(generation_id),
            member_id=member_id,
            group_instance_id=instance_id,
            topics=tuple(
                TxnOffsetCommitRequestTopic(name=TopicName(t), partitions=tuple(ps))
                for t, ps in topics.items()
            ),
        )
    )
    return {
        (t.name, int(p.partition_index)): p.error_code
        for t in response.topics
        for p in t.partitions
    }


def end_txn(conn: Conn, producer: TxnProducer, commit: bool) -> ErrorCode:
    response = conn.send(
        EndTxnRequest(
            transactional_id=TransactionalId(producer.transactional_id),
            producer_id=ProducerId(producer.producer_id),
            producer_epoch=i16(producer.producer_epoch),
            committed=commit,
        )
    )
    error: ErrorCode = response.error_code
    return error


def offset_commit(conn: Conn, group: str, offsets: dict[tuple[str, int], int]) -> None:
    """A plain OffsetCommit v7 of a "simple" consumer (no generation, no member)."""
    topics: dict[str, list[OffsetCommitRequestPartition]] = {}
    for (topic, partition), offset in offsets.items():
        topics.setdefault(topic, []).append(
            OffsetCommitRequestPartition(
                partition_index=i32(partition),
                committed_offset=i64(offset),
                committed_metadata="",
            )
        )
    response = conn.send(
        OffsetCommitRequest(
            group_id=GroupId(group),
            generation_id_or_member_epoch=i32(-1),
            member_id="",
            group_instance_id=None,
            topics=tuple(
                OffsetCommitRequestTopic(name=TopicName(t), partitions=tuple(ps))
                for t, ps in topics.items()
            ),
        )
    )
    errors = {p.error_code for t in response.topics for p in t.partitions}
    assert errors == {ErrorCode.none}, response


def offset_fetch(
    conn: Conn, group: str, partitions: list[tuple[str, int]], require_stable: bool
) -> dict[tuple[str, int], tuple[int, ErrorCode]]:
    """OffsetFetch v7: {(topic, partition): (committed offset, error)}."""
    topics: dict[str, list[i32]] = {}
    for topic, partition in partitions:
        topics.setdefault(topic, []).append(i32(partition))
    response = conn.send(
        OffsetFetchRequest(
            group_id=GroupId(group),
            topics=tuple(
                OffsetFetchRequestTopic(name=TopicName(t), partition_indexes=tuple(ps))
                for t, ps in topics.items()
            ),
            require_stable=require_stable,
        )
    )
    assert response.error_code == ErrorCode.none, response
    return {
        (t.name, int(p.partition_index)): (int(p.committed_offset), p.error_code)
        for t in response.topics
        for p in t.partitions
    }
