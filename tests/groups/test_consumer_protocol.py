"""The consumer group protocol (KIP-848, `group.protocol=consumer`) with real librdkafka
consumers against a real samsa broker (issue 15): members split the partitions, one leaves and
the other gets them all, rebalance callbacks fire, offsets are committed (OffsetCommit v9) and
fetched (OffsetFetch v9), AdminClient describes (ConsumerGroupDescribe) and lists the group, and
the group survives a broker restart (its records are replayed)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import confluent_kafka
import pytest
from confluent_kafka import ConsumerGroupType, TopicPartition
from confluent_kafka.admin import AdminClient, ConsumerGroupDescription

from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.topics import create_topics

from .support import DEADLINE_S, produce_values, wait_for

pytestmark = pytest.mark.interop

TOPIC = "kip848"
PARTITIONS = 4
GROUP = "kip848-group"


class Member:
    """A consumer-protocol consumer, polled by the test; records its rebalance callbacks."""

    def __init__(self, bootstrap: str, name: str, group: str = GROUP) -> None:
        self.name = name
        self.events: list[tuple[str, list[int]]] = []
        self.values: list[bytes] = []
        self.consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "group.protocol": "consumer",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "log_level": 0,
            }
        )
        self.consumer.subscribe(
            [TOPIC],
            on_assign=lambda _, parts: self._event("assign", parts),
            on_revoke=lambda _, parts: self._event("revoke", parts),
        )

    def _event(self, kind: str, parts: list[TopicPartition]) -> None:
        self.events.append((kind, sorted(p.partition for p in parts)))

    def poll(self, timeout_s: float = 0.05) -> None:
        message = self.consumer.poll(timeout_s)
        if message is not None and message.error() is None:
            self.values.append(message.value() or b"")

    def assigned(self) -> set[int]:
        return {p.partition for p in self.consumer.assignment()}


def poll_until(members: list[Member], condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for member in members:
            member.poll()


@pytest.fixture
def broker(tmp_path: object) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(data_dir=f"{tmp_path}/data") as running:
        create_topics(running.bootstrap, {TOPIC: PARTITIONS})
        yield running


def describe(bootstrap: str, group: str = GROUP) -> ConsumerGroupDescription:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    [future] = admin.describe_consumer_groups([group], request_timeout=10).values()
    description: ConsumerGroupDescription = future.result(timeout=15)
    return description


def test_members_split_partitions_and_the_last_one_gets_all(broker: EmbeddedBroker) -> None:
    sent = produce_values(broker.bootstrap, TOPIC, PARTITIONS, 10)
    one = Member(broker.bootstrap, "one")
    poll_until([one], lambda: len(one.values) == 10 * PARTITIONS, "one to read everything")
    assert one.events[0] == ("assign", [0, 1, 2, 3])
    assert sorted(one.values) == sorted(v for vs in sent.values() for v in vs)

    two = Member(broker.bootstrap, "two")
    both = [one, two]
    poll_until(
        both,
        lambda: len(one.assigned()) == 2 and len(two.assigned()) == 2,
        "the partitions to be split",
    )
    assert one.assigned() | two.assigned() == set(range(PARTITIONS))
    assert ("revoke", sorted(two.assigned())) in one.events  # revoked before given away
    assert two.events[-1] == ("assign", sorted(two.assigned()))

    description = describe(broker.bootstrap)
    assert description.type == ConsumerGroupType.CONSUMER
    assert description.state == confluent_kafka.ConsumerGroupState.STABLE
    described = {
        m.member_id: {tp.partition for tp in m.assignment.topic_partitions}
        for m in description.members
    }
    assert sorted(map(frozenset, described.values()), key=sorted) == sorted(
        [frozenset(one.assigned()), frozenset(two.assigned())], key=sorted
    )

    two.consumer.close()  # leaves with member epoch -1
    poll_until([one], lambda: one.assigned() == set(range(PARTITIONS)), "one to get everything")
    one.consumer.close()


def test_offsets_are_committed_and_fetched_with_member_epochs(broker: EmbeddedBroker) -> None:
    produce_values(broker.bootstrap, TOPIC, PARTITIONS, 5)
    one = Member(broker.bootstrap, "one")
    poll_until([one], lambda: len(one.values) == 5 * PARTITIONS, "one to read everything")
    one.consumer.commit(asynchronous=False)  # OffsetCommit v9 with the member epoch
    committed = one.consumer.committed(
        [TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=15
    )  # OffsetFetch v9 with the member id and epoch
    assert {tp.partition: tp.offset for tp in committed} == dict.fromkeys(range(PARTITIONS), 5)
    one.consumer.close()

    # A new member of the group starts from the committed offsets.
    produce_values(broker.bootstrap, TOPIC, PARTITIONS, 1, label="after")
    again = Member(broker.bootstrap, "again")
    poll_until([again], lambda: len(again.values) == PARTITIONS, "the new records")
    assert all(v.startswith(b"after") for v in again.values)
    again.consumer.close()


def test_list_and_describe_report_the_group_type(broker: EmbeddedBroker) -> None:
    classic = confluent_kafka.Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "classic-group", "log_level": 0}
    )
    classic.subscribe([TOPIC])
    one = Member(broker.bootstrap, "one")
    poll_until([one], lambda: one.assigned() == set(range(PARTITIONS)), "the assignment")
    wait_for(lambda: bool(classic.poll(0.1) or classic.assignment()), "the classic member")

    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
    listed = admin.list_consumer_groups(request_timeout=10).result(timeout=15)
    states = {g.group_id: g.state for g in listed.valid}
    assert states[GROUP] == confluent_kafka.ConsumerGroupState.STABLE
    assert "classic-group" in states
    # describe_consumer_groups asks ConsumerGroupDescribe, and DescribeGroups for a classic one
    assert describe(broker.bootstrap, "classic-group").type == ConsumerGroupType.CLASSIC
    assert describe(broker.bootstrap).type == ConsumerGroupType.CONSUMER
    classic.close()
    one.consumer.close()


def test_the_group_survives_a_restart(tmp_path: object) -> None:
    with EmbeddedBroker(data_dir=f"{tmp_path}/data") as broker:
        create_topics(broker.bootstrap, {TOPIC: PARTITIONS})
        one = Member(broker.bootstrap, "one")
        poll_until([one], lambda: one.assigned() == set(range(PARTITIONS)), "the assignment")
        before = describe(broker.bootstrap)
        broker.restart()
        after = describe(broker.bootstrap)
        assert [m.member_id for m in after.members] == [m.member_id for m in before.members]
        assert after.state == confluent_kafka.ConsumerGroupState.STABLE
        # the member goes on heartbeating with its epoch: it is not fenced
        for _ in range(40):
            one.poll(0.05)
        assert one.assigned() == set(range(PARTITIONS))
        assert [e for e in one.events if e[0] == "revoke"] == []
        one.consumer.close()


def test_a_regex_subscription_takes_new_topics(tmp_path: object) -> None:
    """librdkafka sends `subscribe(["^rx-.*"])` as SubscribedTopicRegex; the broker matches it
    against every topic name (whole), and a topic created later joins at the next heartbeat."""
    settings = {"group.consumer.heartbeat.interval.ms": "300"}
    with EmbeddedBroker(data_dir=f"{tmp_path}/data", settings=settings) as broker:
        create_topics(broker.bootstrap, {"rx-a": 2, "rx-b": 1, "other": 1})
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "regex-group",
                "group.protocol": "consumer",
                "log_level": 0,
            }
        )
        consumer.subscribe(["^rx-.*"])

        def assigned() -> list[tuple[str, int]]:
            consumer.poll(0.1)
            return sorted((p.topic, p.partition) for p in consumer.assignment())

        wait_for(lambda: assigned() == [("rx-a", 0), ("rx-a", 1), ("rx-b", 0)], "the matches")
        create_topics(broker.bootstrap, {"rx-c": 1})
        wait_for(lambda: ("rx-c", 0) in assigned(), "the new topic")
        assert all(topic != "other" for topic, _ in assigned())
        consumer.close()


def test_a_static_member_comes_back_to_its_partitions_without_a_rebalance(
    broker: EmbeddedBroker,
) -> None:
    """`group.instance.id`: closing leaves with epoch -2 (the member keeps its partitions while
    away); a new instance takes them back under its new member id, the group epoch unchanged."""

    def static(instance: str) -> confluent_kafka.Consumer:
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "static-group",
                "group.protocol": "consumer",
                "group.instance.id": instance,
                "log_level": 0,
            }
        )
        consumer.subscribe([TOPIC])
        return consumer

    def owned(consumer: confluent_kafka.Consumer) -> set[int]:
        return {p.partition for p in consumer.assignment()}

    def group_state() -> tuple[int, dict[str, int]]:
        def read() -> tuple[int, dict[str, int]]:
            group = broker.server.broker.groups.consumer.groups["static-group"]  # type: ignore[union-attr]
            members = {m.instance_id or "": m.member_epoch for m in group.members.values()}
            return group.group_epoch, members

        return broker.call(read)

    one, two = static("i1"), static("i2")

    def split() -> bool:
        one.poll(0.05)
        two.poll(0.05)
        return len(owned(one)) == 2 and len(owned(two)) == 2

    wait_for(split, "the two instances to split the partitions")
    mine = owned(one)
    epoch, _ = group_state()
    one.close()
    assert group_state() == (epoch, {"i1": -2, "i2": epoch})
    back = static("i1")

    def returned() -> bool:
        back.poll(0.05)
        two.poll(0.05)
        return owned(back) == mine

    wait_for(returned, "the new instance to get the same partitions")
    assert group_state() == (epoch, {"i1": epoch, "i2": epoch})
    back.close()
    two.close()
