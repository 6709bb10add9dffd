"""The consumer group protocol (KIP-848) byte by byte (samsa.testing.wire.Conn) against a real
samsa broker: Kafka's fencing errors and messages, classic and consumer groups side by side
(one type per group id), and offsets checked against member epochs, plain and transactional."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kio.schema.consumer_group_describe.v1.request import ConsumerGroupDescribeRequest
from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest
from kio.schema.delete_groups.v2.request import DeleteGroupsRequest
from kio.schema.errors import ErrorCode
from kio.schema.join_group.v9.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.list_groups.v4.request import ListGroupsRequest
from kio.schema.offset_commit.v9.request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kio.schema.txn_offset_commit.v3.request import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestPartition,
    TxnOffsetCommitRequestTopic,
)
from kio.schema.types import GroupId, ProducerId, TopicName, TransactionalId
from kio.static.primitive import i16, i32, i64

from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.topics import create_topics
from samsa.testing.wire import Conn, ms

pytestmark = pytest.mark.interop

TOPIC = "wire848"


@pytest.fixture
def conn(tmp_path: object) -> Iterator[Conn]:
    with EmbeddedBroker(data_dir=f"{tmp_path}/data") as broker:
        create_topics(broker.bootstrap, {TOPIC: 2})
        with Conn(broker.bootstrap) as connection:
            yield connection


def heartbeat(
    conn: Conn, group: str, member: str, epoch: int, instance: str | None = None, **extra: Any
) -> Any:
    joining = epoch == 0
    return conn.request(
        ConsumerGroupHeartbeatRequest(
            group_id=GroupId(group),
            member_id=member,
            member_epoch=i32(epoch),
            instance_id=instance,
            rebalance_timeout=ms(30_000 if joining else -1),
            subscribed_topic_names=(TopicName(TOPIC),) if joining else None,
            topic_partitions=() if joining else None,
            **extra,
        )
    )


def commit(conn: Conn, group: str, member: str, epoch: int) -> ErrorCode:
    answer = conn.request(
        OffsetCommitRequest(
            group_id=GroupId(group),
            generation_id_or_member_epoch=i32(epoch),
            member_id=member,
            topics=(
                OffsetCommitRequestTopic(
                    name=TopicName(TOPIC),
                    partitions=(
                        OffsetCommitRequestPartition(
                            partition_index=i32(0), committed_offset=i64(1), committed_metadata=""
                        ),
                    ),
                ),
            ),
        )
    )
    error: ErrorCode = answer.topics[0].partitions[0].error_code
    return error


def test_fencing_errors(conn: Conn) -> None:
    member = str(uuid.uuid4())
    joined = heartbeat(conn, "g", member, 0)
    assert (joined.error_code, joined.member_epoch) == (ErrorCode.none, 1)
    ahead = heartbeat(conn, "g", member, 7)
    assert ahead.error_code == ErrorCode.fenced_member_epoch
    assert ahead.error_message.startswith("The consumer group member has a greater member epoch")
    unknown = heartbeat(conn, "g", "nobody", 1)
    assert (unknown.error_code, unknown.error_message) == (
        ErrorCode.unknown_member_id,
        "Member nobody is not a member of group g.",
    )
    missing = heartbeat(conn, "nogroup", member, 1)
    assert (missing.error_code, missing.error_message) == (
        ErrorCode.group_id_not_found,
        "Consumer group nogroup not found.",
    )
    no_member_id = heartbeat(conn, "g", "", 0)
    assert (no_member_id.error_code, no_member_id.error_message) == (
        ErrorCode.invalid_request,
        "MemberId can't be empty.",
    )
    assert heartbeat(conn, "g", "s1", 0, instance="i").error_code == ErrorCode.none
    taken = heartbeat(conn, "g", "s2", 0, instance="i")
    assert taken.error_code == ErrorCode.unreleased_instance_id
    assert heartbeat(conn, "g", "s2", 2, instance="i").error_code == ErrorCode.fenced_instance_id
    left = heartbeat(conn, "g", member, -1)
    assert (left.error_code, left.member_id, left.member_epoch) == (ErrorCode.none, member, -1)


def test_a_group_id_is_one_type(conn: Conn) -> None:
    heartbeat(conn, "cg", "m", 0)
    join = JoinGroupRequest(
        group_id=GroupId("cg"),
        session_timeout=ms(10_000),
        rebalance_timeout=ms(10_000),
        member_id="",
        protocol_type="consumer",
        protocols=(JoinGroupRequestProtocol(name="range", metadata=b""),),
    )
    assert conn.request(join).error_code == ErrorCode.inconsistent_group_protocol
    listed = conn.request(ListGroupsRequest())
    assert [(g.group_id, g.protocol_type, g.group_state) for g in listed.groups] == [
        ("cg", "consumer", "Stable")
    ]
    deleted = conn.request(DeleteGroupsRequest(groups_names=(GroupId("cg"),)))
    assert deleted.results[0].error_code == ErrorCode.non_empty_group
    heartbeat(conn, "cg", "m", -1)  # empty now: a classic member may take the id over
    first = conn.request(join)
    assert first.error_code == ErrorCode.member_id_required
    joined = conn.request(dataclasses.replace(join, member_id=first.member_id))
    assert joined.error_code == ErrorCode.none
    described = conn.request(
        ConsumerGroupDescribeRequest(
            group_ids=(GroupId("cg"),), include_authorized_operations=False
        )
    )
    assert (described.groups[0].error_code, described.groups[0].error_message) == (
        ErrorCode.group_id_not_found,
        "Group cg is not a consumer group.",
    )
    # ... and a consumer member may not join a classic group that has members.
    refused = heartbeat(conn, "cg", "m2", 0)
    assert (refused.error_code, refused.error_message) == (
        ErrorCode.group_id_not_found,
        "Group cg is not a consumer group.",
    )


def test_an_empty_classic_group_becomes_a_consumer_group(conn: Conn) -> None:
    assert commit(conn, "simple", "", -1) == ErrorCode.none  # a simple group, Empty, classic
    upgraded = heartbeat(conn, "simple", "m", 0)
    assert (upgraded.error_code, upgraded.member_epoch) == (ErrorCode.none, 1)
    assert commit(conn, "simple", "m", 1) == ErrorCode.none


def test_offsets_are_checked_against_member_epochs(conn: Conn) -> None:
    heartbeat(conn, "og", "m", 0)
    assert commit(conn, "og", "m", 1) == ErrorCode.none
    assert commit(conn, "og", "m", 2) == ErrorCode.stale_member_epoch
    assert commit(conn, "og", "other", 1) == ErrorCode.unknown_member_id
    assert commit(conn, "nog", "m", 1) == ErrorCode.group_id_not_found
    txn = conn.request(
        TxnOffsetCommitRequest(
            transactional_id=TransactionalId("t"),
            group_id=GroupId("og"),
            producer_id=ProducerId(1),
            producer_epoch=i16(0),
            generation_id=i32(5),
            member_id="m",
            topics=(
                TxnOffsetCommitRequestTopic(
                    name=TopicName(TOPIC),
                    partitions=(
                        TxnOffsetCommitRequestPartition(
                            partition_index=i32(0), committed_offset=i64(1), committed_metadata=""
                        ),
                    ),
                ),
            ),
        )
    )
    assert txn.topics[0].partitions[0].error_code == ErrorCode.illegal_generation


def test_an_empty_consumer_group_is_deleted_for_good(tmp_path: object) -> None:
    with EmbeddedBroker(data_dir=f"{tmp_path}/data") as broker:
        create_topics(broker.bootstrap, {TOPIC: 2})
        with Conn(broker.bootstrap) as conn:
            heartbeat(conn, "dg", "m", 0)
            assert commit(conn, "dg", "m", 1) == ErrorCode.none
            heartbeat(conn, "dg", "m", -1)
            deleted = conn.request(DeleteGroupsRequest(groups_names=(GroupId("dg"),)))
            assert deleted.results[0].error_code == ErrorCode.none
        broker.restart()
        with Conn(broker.bootstrap) as conn:
            described = conn.request(
                ConsumerGroupDescribeRequest(
                    group_ids=(GroupId("dg"),), include_authorized_operations=False
                )
            )
            assert described.groups[0].error_code == ErrorCode.group_id_not_found
            assert conn.request(ListGroupsRequest()).groups == ()
            again = heartbeat(conn, "dg", "m2", 0)  # a new group, from epoch 1
            assert (again.error_code, again.member_epoch) == (ErrorCode.none, 1)
