"""Bounded cost per request: what one CreateTopics, CreatePartitions or Fetch can make the broker
do, over the wire against a real broker.

Before: one CreateTopics of 10,000 partitions stalled every other client for seconds, needed
two descriptors per partition (so it ran out of them, dropped the connection and left 4,996
directories behind); a Fetch with max_bytes -1 closed the connection with a traceback; and
topics `a.b` and `a_b` could both exist.
"""

from __future__ import annotations

import datetime
import os
import select
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from kio.schema.create_partitions.v3.request import (
    CreatePartitionsRequest,
    CreatePartitionsTopic,
)
from kio.schema.create_topics.v7.request import CreatableTopic, CreateTopicsRequest
from kio.schema.errors import ErrorCode
from kio.schema.types import TopicName
from kio.static.primitive import i16, i32, i32Timedelta

from protocol.wire import Conn, create_topics_request, fetch_request, make_batch, produce_request
from samsa.broker.topics import EXCESSIVE_BATCH, METADATA_FILE
from samsa.testing import EmbeddedBroker
from samsa.testing.process import BrokerProcess

TIMEOUT = datetime.timedelta(seconds=60)


def _topic(name: str, partitions: int) -> CreatableTopic:
    return CreatableTopic(
        name=TopicName(name),
        num_partitions=i32(partitions),
        replication_factor=i16(1),
        assignments=(),
        configs=(),
    )


def _create(*topics: CreatableTopic) -> CreateTopicsRequest:
    return CreateTopicsRequest(topics=topics, timeout=i32Timedelta.parse(TIMEOUT))


def _errors(response: object) -> dict[str, tuple[ErrorCode, str | None]]:
    return {t.name: (t.error_code, t.error_message) for t in response.topics}  # type: ignore[attr-defined]


def _partition_dirs(data_dir: str, topic: str) -> list[str]:
    return [name for name in os.listdir(data_dir) if name.startswith(f"{topic}-")]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(str(tmp_path / "data"), {"max.broker.partitions": "60"}) as running:
        yield running


def test_a_request_for_more_than_10000_partitions_is_refused_whole(
    broker: EmbeddedBroker,
) -> None:
    """Kafka's controller refuses a request that would write over 10,000 partition records,
    every topic in it, invalid ones too, with POLICY_VIOLATION."""
    with Conn(broker.bootstrap) as conn:
        response = conn.request(_create(_topic("half", 5_000), _topic("more", 5_001)))
        expected = (ErrorCode.policy_violation, EXCESSIVE_BATCH)
        assert _errors(response) == {"half": expected, "more": expected}
    assert not _partition_dirs(broker.data_dir, "half")
    assert not _partition_dirs(broker.data_dir, "more")


def test_partitions_past_max_broker_partitions_are_refused(broker: EmbeddedBroker) -> None:
    # The broker made its two internal topics' partitions at start: 58 of 60 are left.
    with Conn(broker.bootstrap) as conn:
        response = conn.request(_create(_topic("fits", 50), _topic("too-many", 9)))
        errors = _errors(response)
        assert errors["fits"] == (ErrorCode.none, None)
        assert errors["too-many"][0] == ErrorCode.policy_violation
        assert "max.broker.partitions=60" in str(errors["too-many"][1])
        grow = CreatePartitionsRequest(
            topics=(
                CreatePartitionsTopic(name=TopicName("fits"), count=i32(59), assignments=None),
            ),
            timeout=i32Timedelta.parse(TIMEOUT),
            validate_only=False,
        )
        refused = conn.request(grow).results[0]
        assert refused.error_code == ErrorCode.policy_violation
        assert "max.broker.partitions" in str(refused.error_message)
    assert len(_partition_dirs(broker.data_dir, "fits")) == 50
    assert not _partition_dirs(broker.data_dir, "too-many")


def test_a_topic_whose_name_collides_after_dots_become_underscores_is_refused(
    broker: EmbeddedBroker,
) -> None:
    with Conn(broker.bootstrap) as conn:
        assert _errors(conn.request(_create(_topic("rb.collide", 1))))["rb.collide"][0] == 0
        errors = _errors(conn.request(_create(_topic("rb_collide", 1), _topic("x.y", 1))))
        assert errors["rb_collide"][0] == ErrorCode.invalid_topic_exception
        assert "collides with existing topic 'rb.collide'" in str(errors["rb_collide"][1])
        assert errors["x.y"][0] == ErrorCode.none
        # Two colliding names in one request: the second collides with the first.
        errors = _errors(conn.request(_create(_topic("p.q", 1), _topic("p_q", 1))))
        assert errors == {
            "p.q": (ErrorCode.none, None),
            "p_q": (ErrorCode.invalid_topic_exception, errors["p_q"][1]),
        }
        # The same name twice: Kafka refuses both as an invalid request.
        errors = _errors(conn.request(_create(_topic("twice", 1), _topic("twice", 1))))
        assert [error for error, _ in errors.values()] == [ErrorCode.invalid_request]
    assert not _partition_dirs(broker.data_dir, "rb_collide")
    assert not _partition_dirs(broker.data_dir, "twice")


@pytest.mark.parametrize("where", ["request", "partition"])
def test_a_negative_fetch_size_gets_an_error_and_the_connection_stays(
    broker: EmbeddedBroker, where: str
) -> None:
    """As Kafka's log read: a negative size is an IllegalArgumentException, answered as
    UNKNOWN_SERVER_ERROR for the partition; other partitions are answered empty."""
    with Conn(broker.bootstrap) as conn:
        conn.request(create_topics_request("sized", 2))
        batch = make_batch([b"kept"])
        assert conn.request(produce_request("sized", {0: batch, 1: batch})).responses
        request = fetch_request("sized", [0, 1])
        if where == "request":
            request = replace(request, max_bytes=i32(-1))
        else:
            topic = request.topics[0]
            negative = replace(topic.partitions[0], partition_max_bytes=i32(-1))
            topic = replace(topic, partitions=(negative, topic.partitions[1]))
            request = replace(request, topics=(topic,))
        partitions = conn.request(request).responses[0].partitions
        assert partitions[0].error_code == ErrorCode.unknown_server_error
        assert partitions[1].error_code == ErrorCode.none
        # The connection still serves.
        again = conn.request(fetch_request("sized", [0])).responses[0].partitions[0]
        assert again.error_code == ErrorCode.none and again.records


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _answered(conn: Conn) -> bool:
    return bool(select.select([conn.sock], [], [], 0)[0])


def test_10000_partitions_cost_bounded_descriptors_and_stall_no_other_client(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    process = BrokerProcess(str(data_dir), {"log.open.files.max": "64"}).start()
    try:
        pid = process.process.pid  # type: ignore[union-attr]
        fds_before = _fds(pid)
        with Conn(process.bootstrap, timeout_s=120) as creator, Conn(process.bootstrap) as other:
            other.request(create_topics_request("busy", 1))
            correlation = creator.send(create_topics_request("wide", 10_000))
            time.sleep(0.2)  # the creation is under way
            served = 0
            while not _answered(creator) and served < 3:
                # Admin requests queue behind it (as in Kafka's controller); the rest do not.
                stored = other.request(produce_request("busy", {0: make_batch([b"b"])}))
                assert stored.responses[0].partition_responses[0].error_code == 0
                fetched = other.request(fetch_request("busy", [0]))
                assert fetched.responses[0].partitions[0].records
                served += 1
                assert _fds(pid) <= fds_before + 64 + 8, "log files past log.open.files.max"
            assert served == 3, "other clients waited for the 10,000-partition creation"
            got, response = creator.recv(CreateTopicsRequest)
            assert got == correlation
            assert response.topics[0].error_code == ErrorCode.none
            assert response.topics[0].num_partitions == 10_000
            batch = make_batch([b"far"])
            written = other.request(produce_request("wide", {9_999: batch, 0: batch}))
            assert [p.error_code for p in written.responses[0].partition_responses] == [0, 0]
            assert _fds(pid) <= fds_before + 64 + 8
        assert len(_partition_dirs(str(data_dir), "wide")) == 10_000
    finally:
        process.kill9()
    # Everything the creation made is in topics.json, and a restart serves it.
    assert "wide" in (data_dir / METADATA_FILE).read_text()
    restarted = BrokerProcess(str(data_dir), {"log.open.files.max": "64"}).start()
    try:
        with Conn(restarted.bootstrap) as conn:
            partition = conn.request(fetch_request("wide", [9_999])).responses[0].partitions[0]
            assert partition.error_code == ErrorCode.none and partition.records
    finally:
        restarted.kill9()
