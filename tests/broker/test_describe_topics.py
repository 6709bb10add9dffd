"""DescribeTopicPartitions (KIP-966) on the wire: Kafka's paging by a partition limit and a
cursor, topics sorted by name, unknown topics answered, a bad cursor refused."""

from __future__ import annotations

import pytest
from kio.schema.describe_topic_partitions.v0.request import (
    Cursor,
    DescribeTopicPartitionsRequest,
    TopicRequest,
)
from kio.schema.errors import ErrorCode
from kio.schema.types import TopicName
from kio.static.primitive import i32

from samsa.broker.metadata import AUTHORIZED_OPERATIONS_OMITTED, TOPIC_OPERATIONS
from samsa.testing import EmbeddedBroker
from samsa.testing.wire import Conn, create_topics_request

Page = list[tuple[str, list[int]]]


def describe(
    conn: Conn, names: list[str], limit: int = 2000, cursor: tuple[str, int] | None = None
) -> tuple[Page, tuple[str, int] | None, list[object]]:
    """(each topic's name and partition indexes, the next cursor, the topics as answered)."""
    answer = conn.request(
        DescribeTopicPartitionsRequest(
            topics=tuple(TopicRequest(name=TopicName(n)) for n in names),
            response_partition_limit=i32(limit),
            cursor=None
            if cursor is None
            else Cursor(topic_name=TopicName(cursor[0]), partition_index=i32(cursor[1])),
        )
    )
    page = [(t.name, [p.partition_index for p in t.partitions]) for t in answer.topics]
    after = answer.next_cursor
    return (
        page,
        None if after is None else (after.topic_name, after.partition_index),
        list(answer.topics),
    )


@pytest.fixture
def conn(samsa_broker: EmbeddedBroker) -> Conn:
    conn = Conn(samsa_broker.bootstrap)
    for name, partitions in (("b", 3), ("a", 2), ("c", 1)):
        answer = conn.request(create_topics_request(name, partitions))
        assert answer.topics[0].error_code == ErrorCode.none
    return conn


def test_named_topics_come_sorted_with_every_partition(conn: Conn) -> None:
    page, after, topics = describe(conn, ["c", "a", "b"])
    assert page == [("a", [0, 1]), ("b", [0, 1, 2]), ("c", [0])]
    assert after is None
    first = topics[0]
    assert first.error_code == ErrorCode.none  # type: ignore[attr-defined]
    assert first.topic_id is not None  # type: ignore[attr-defined]
    # No include flag: Kafka always answers the operations (all of them, without authorizer).
    assert first.topic_authorized_operations == TOPIC_OPERATIONS  # type: ignore[attr-defined]
    partition = first.partitions[0]  # type: ignore[attr-defined]
    assert (partition.leader_id, partition.replica_nodes, partition.isr_nodes) == (1, (1,), (1,))


def test_pages_follow_the_cursor_across_topics(conn: Conn) -> None:
    """Kafka's paging: a topic cut short names its next partition; a full page names the next
    topic from partition 0."""
    names = ["a", "b", "c"]
    page, after, _ = describe(conn, names, limit=3)
    assert (page, after) == ([("a", [0, 1]), ("b", [0])], ("b", 1))
    page, after, _ = describe(conn, names, limit=2, cursor=after)
    assert (page, after) == ([("b", [1, 2])], ("c", 0))
    page, after, _ = describe(conn, names, limit=2, cursor=after)
    assert (page, after) == ([("c", [0])], None)


def test_listing_all_topics_pages_too_and_skips_nothing(conn: Conn) -> None:
    seen: Page = []
    cursor = None
    for _ in range(20):
        page, cursor, _ = describe(conn, [], limit=1, cursor=cursor)
        seen += page
        if cursor is None:
            break
    names = [name for name, _ in seen]
    assert names == sorted(names)
    ours = [(n, p) for n, p in seen if not n.startswith("__")]
    assert ours == [("a", [0]), ("a", [1]), ("b", [0]), ("b", [1]), ("b", [2]), ("c", [0])]


def test_a_limit_below_one_is_one_and_unknown_topics_are_answered(conn: Conn) -> None:
    page, after, topics = describe(conn, ["zz-unknown", "a", "bad/name"], limit=0)
    assert page == [("a", [0])] and after == ("a", 1)
    page, after, topics = describe(conn, ["zz-unknown", "c", "bad/name"])
    assert page == [("bad/name", []), ("c", [0]), ("zz-unknown", [])]
    errors = [t.error_code for t in topics]  # type: ignore[attr-defined]
    assert errors == [
        ErrorCode.invalid_topic_exception,
        ErrorCode.none,
        ErrorCode.unknown_topic_or_partition,
    ]


def test_a_cursor_outside_the_request_is_refused(conn: Conn) -> None:
    for cursor in (("b", 0), ("a", -1)):
        page, after, topics = describe(conn, ["a", "c"], cursor=cursor)
        assert page == [("a", []), ("c", [])] and after is None
        for topic in topics:
            assert topic.error_code == ErrorCode.invalid_request  # type: ignore[attr-defined]
            assert (
                topic.topic_authorized_operations  # type: ignore[attr-defined]
                == AUTHORIZED_OPERATIONS_OMITTED
            )
