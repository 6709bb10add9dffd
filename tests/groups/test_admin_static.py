"""Group administration through real admin clients (ListGroups, DescribeGroups, DeleteGroups,
OffsetCommit/OffsetFetch through alter/list_consumer_group_offsets, OffsetDelete), and static
membership (KIP-345): a restarted static member gets its assignment back without a rebalance of
the others; a second instance with the same group.instance.id fences the first."""

from __future__ import annotations

import threading
import time

import confluent_kafka
import kafka
import kafka.admin
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka.errors import GroupSubscribedToTopicError, NoError

import samsa.server.server
from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.topics import create_topics

from .support import BROKER_SETTINGS, DEADLINE_S, produce_values, wait_for

pytestmark = pytest.mark.interop

TOPIC = "admin-groups"
OTHER = "admin-other"


def group_consumer(bootstrap: str, group: str, **extra: object) -> confluent_kafka.Consumer:
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6_000,
        "heartbeat.interval.ms": 300,
        "log_level": 0,
    }
    config.update(extra)
    return confluent_kafka.Consumer(config)


def poll_until_assigned(c: confluent_kafka.Consumer, count: int) -> list[TopicPartition]:
    deadline = time.monotonic() + DEADLINE_S
    while len(c.assignment()) != count:
        assert time.monotonic() < deadline, f"assignment {c.assignment()} never had {count}"
        c.poll(0.1)
    return list(c.assignment())


def listed(admin: AdminClient) -> dict[str, str]:
    result = admin.list_consumer_groups(request_timeout=10).result(timeout=15)
    assert not result.errors, result.errors
    return {g.group_id: g.state.name for g in result.valid}


def test_admin_client_group_operations(tmp_path: object) -> None:
    with EmbeddedBroker(str(tmp_path) + "/data", BROKER_SETTINGS) as broker:
        bootstrap = broker.bootstrap
        create_topics(bootstrap, {TOPIC: 3, OTHER: 1})
        produce_values(bootstrap, TOPIC, 3, 10)
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})

        active = group_consumer(bootstrap, "admin-active", **{"client.id": "active-client"})
        active.subscribe([TOPIC])
        poll_until_assigned(active, 3)
        # A member may commit an offset of a topic it is not subscribed to.
        active.commit(offsets=[TopicPartition(OTHER, 0, 3)], asynchronous=False)

        # alter_consumer_group_offsets (OffsetCommit as a "simple" consumer) creates a group.
        offsets = [TopicPartition(TOPIC, 0, 5), TopicPartition(TOPIC, 1, 6)]
        [altered] = admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions("admin-idle", offsets)], request_timeout=10
        ).values()
        assert {(tp.partition, tp.offset) for tp in altered.result(15).topic_partitions} == {
            (0, 5),
            (1, 6),
        }
        [fetched] = admin.list_consumer_group_offsets(
            [
                ConsumerGroupTopicPartitions(
                    "admin-idle", [TopicPartition(TOPIC, p) for p in (0, 1, 2)]
                )
            ]
        ).values()
        assert {tp.partition: tp.offset for tp in fetched.result(15).topic_partitions} == {
            0: 5,
            1: 6,
            2: confluent_kafka.OFFSET_INVALID,
        }

        groups = listed(admin)
        assert groups["admin-active"] == "STABLE"
        assert groups["admin-idle"] == "EMPTY"

        described = admin.describe_consumer_groups(["admin-active", "admin-idle"])
        active_description = described["admin-active"].result(15)
        assert active_description.state.name == "STABLE"
        assert active_description.partition_assignor in ("range", "roundrobin")
        [member] = active_description.members
        assert member.client_id == "active-client"
        # Where the member connects from, as Kafka writes it (the HOST column of
        # kafka-consumer-groups --describe). Before: "" for every member.
        assert member.host == "/127.0.0.1"
        assert {tp.partition for tp in member.assignment.topic_partitions} == {0, 1, 2}
        idle_description = described["admin-idle"].result(15)
        assert idle_description.state.name == "EMPTY" and idle_description.members == []

        # OffsetDelete (kafka-python): refused for a topic the group's members subscribe to.
        kp_admin = kafka.admin.KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            result = kp_admin.delete_group_offsets(
                "admin-active",
                [kafka.TopicPartition(TOPIC, 0), kafka.TopicPartition(OTHER, 0)],
            )
            assert result[kafka.TopicPartition(TOPIC, 0)] is GroupSubscribedToTopicError
            assert result[kafka.TopicPartition(OTHER, 0)] is NoError
        finally:
            kp_admin.close()
        [fetched] = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions("admin-active", [TopicPartition(OTHER, 0)])]
        ).values()
        [other] = fetched.result(15).topic_partitions
        assert other.offset == confluent_kafka.OFFSET_INVALID

        # DeleteGroups: a group with members is refused; an empty one goes, offsets and all.
        deleted = admin.delete_consumer_groups(["admin-active", "admin-idle"], request_timeout=10)
        with pytest.raises(confluent_kafka.KafkaException) as raised:
            deleted["admin-active"].result(15)
        assert raised.value.args[0].code() == confluent_kafka.KafkaError.NON_EMPTY_GROUP
        deleted["admin-idle"].result(15)
        assert "admin-idle" not in listed(admin)
        [fetched] = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions("admin-idle", [TopicPartition(TOPIC, 0)])]
        ).values()
        assert [tp.offset for tp in fetched.result(15).topic_partitions] == [
            confluent_kafka.OFFSET_INVALID
        ]

        active.close()  # LeaveGroup: the group is empty now and can be deleted
        wait_for(lambda: listed(admin).get("admin-active") == "EMPTY", "the group to empty")
        admin.delete_consumer_groups(["admin-active"])["admin-active"].result(15)
        assert "admin-active" not in listed(admin)
        # Deleting it again: GROUP_ID_NOT_FOUND.
        with pytest.raises(confluent_kafka.KafkaException) as raised:
            admin.delete_consumer_groups(["admin-active"])["admin-active"].result(15)
        assert raised.value.args[0].code() == confluent_kafka.KafkaError.GROUP_ID_NOT_FOUND

        # Offsets survive a restart; the deletions do too.
        broker.restart()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
        assert "admin-idle" not in listed(admin)


class Rebalances:
    """Counts the assign/revoke callbacks a consumer sees."""

    def __init__(self) -> None:
        self.events: list[tuple[str, frozenset[int]]] = []
        self.lock = threading.Lock()

    def on_assign(self, _: object, partitions: list[TopicPartition]) -> None:
        with self.lock:
            self.events.append(("assign", frozenset(tp.partition for tp in partitions)))

    def on_revoke(self, _: object, partitions: list[TopicPartition]) -> None:
        with self.lock:
            self.events.append(("revoke", frozenset(tp.partition for tp in partitions)))


def test_static_member_restart_and_fencing(tmp_path: object) -> None:
    with EmbeddedBroker(str(tmp_path) + "/data", BROKER_SETTINGS) as broker:
        bootstrap = broker.bootstrap
        create_topics(bootstrap, {TOPIC: 4})
        group = "static-group"

        def static(instance: str) -> confluent_kafka.Consumer:
            return group_consumer(bootstrap, group, **{"group.instance.id": instance})

        # "leader" joins first and stays the group leader throughout.
        leader_events = Rebalances()
        leader = static("static-leader")
        leader.subscribe(
            [TOPIC], on_assign=leader_events.on_assign, on_revoke=leader_events.on_revoke
        )
        poll_until_assigned(leader, 4)
        follower = static("static-follower")
        follower.subscribe([TOPIC])

        def polls() -> None:
            leader.poll(0.05)
            follower.poll(0.05)

        def split() -> bool:
            polls()
            return len(leader.assignment()) == 2 and len(follower.assignment()) == 2

        wait_for(split, "the two static members to split four partitions", step_s=0)
        follower_partitions = {tp.partition for tp in follower.assignment()}
        settled = list(leader_events.events)

        # A static member's close() sends no LeaveGroup; a new process with the same
        # group.instance.id gets the same partitions back, and the leader sees no rebalance.
        follower.close()
        restarted = static("static-follower")
        follower_events = Rebalances()
        restarted.subscribe(
            [TOPIC], on_assign=follower_events.on_assign, on_revoke=follower_events.on_revoke
        )
        deadline = time.monotonic() + DEADLINE_S
        while len(restarted.assignment()) != 2:
            assert time.monotonic() < deadline, "the restarted static member got no assignment"
            restarted.poll(0.05)
            leader.poll(0.05)
        assert {tp.partition for tp in restarted.assignment()} == follower_partitions
        for _ in range(20):  # time for a rebalance of the leader to show, if there were one
            leader.poll(0.05)
            restarted.poll(0.05)
        assert leader_events.events == settled
        assert len(leader.assignment()) == 2

        # The same for the leader itself: a restarted static leader keeps its partitions and
        # the follower sees no rebalance (KIP-345; Kafka answers it with the old leader id).
        leader_partitions = {tp.partition for tp in leader.assignment()}
        follower_settled = list(follower_events.events)
        leader.close()
        leader = static("static-leader")
        leader.subscribe([TOPIC])
        deadline = time.monotonic() + DEADLINE_S
        while len(leader.assignment()) != 2:
            assert time.monotonic() < deadline, "the restarted static leader got no assignment"
            leader.poll(0.05)
            restarted.poll(0.05)
        assert {tp.partition for tp in leader.assignment()} == leader_partitions
        for _ in range(20):
            leader.poll(0.05)
            restarted.poll(0.05)
        assert follower_events.events == follower_settled
        assert len(restarted.assignment()) == 2

        # A second instance with the same id fences the running one: FENCED_INSTANCE_ID, fatal.
        duplicate = static("static-follower")
        duplicate.subscribe([TOPIC])
        fenced: confluent_kafka.KafkaError | None = None
        deadline = time.monotonic() + DEADLINE_S
        while fenced is None:
            assert time.monotonic() < deadline, "the older instance was never fenced"
            duplicate.poll(0.05)
            leader.poll(0.05)
            try:
                message = restarted.poll(0.05)
            except confluent_kafka.KafkaException as exc:
                fenced = exc.args[0]
                break
            if message is not None and message.error() is not None:
                fenced = message.error()
        assert fenced is not None
        # librdkafka raises the broker's FENCED_INSTANCE_ID as a fatal consumer error.
        assert fenced.fatal() or fenced.code() == confluent_kafka.KafkaError._FATAL, fenced
        assert "fenced by other consumer with same group.instance.id" in fenced.str(), fenced
        for c in (restarted, duplicate, leader):
            c.close()


def test_delete_groups_expires_a_static_member_whose_session_just_ended(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A static member's close sends no LeaveGroup; once its session has ended the group is
    Empty and DeleteGroups deletes it, even before the broker's periodic tick has run (Kafka
    expires each member on its own timer). The tick is slowed to an hour to show it."""
    monkeypatch.setattr(samsa.server.server, "GROUP_TICK_MS", 3_600_000)
    with EmbeddedBroker(str(tmp_path) + "/data", BROKER_SETTINGS) as broker:
        create_topics(broker.bootstrap, {TOPIC: 1})
        consumer = group_consumer(broker.bootstrap, "expiring", **{"group.instance.id": "static-1"})
        consumer.subscribe([TOPIC])
        poll_until_assigned(consumer, 1)
        consumer.close()  # a static member: no LeaveGroup, the session has to end
        time.sleep(6.5)  # session.timeout.ms 6000
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
        deleted = admin.delete_consumer_groups(["expiring"], request_timeout=10)
        deleted["expiring"].result(timeout=15)


def test_groups_with_only_committed_offsets_are_listed_empty(tmp_path: object) -> None:
    """As Kafka: a commit from outside any membership, plain (OffsetCommit) or inside a
    transaction (TxnOffsetCommit), makes an Empty group, which ListGroups and DescribeGroups
    show, before a restart and after it (Kafka's loader makes an Empty group for offsets)."""
    with EmbeddedBroker(str(tmp_path) + "/data", BROKER_SETTINGS) as broker:
        create_topics(broker.bootstrap, {TOPIC: 1})
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
        plain = {TopicPartition(TOPIC, 0, 3)}
        admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions("offsets-plain", list(plain))]
        )["offsets-plain"].result(DEADLINE_S)
        producer = confluent_kafka.Producer(
            {"bootstrap.servers": broker.bootstrap, "transactional.id": "t-offsets", "log_level": 0}
        )
        producer.init_transactions(DEADLINE_S)
        producer.begin_transaction()
        outsider = group_consumer(broker.bootstrap, "offsets-txn")  # never joins the group
        metadata = outsider.consumer_group_metadata()
        producer.send_offsets_to_transaction([TopicPartition(TOPIC, 0, 5)], metadata, DEADLINE_S)
        producer.commit_transaction(DEADLINE_S)
        outsider.close()

        def states() -> dict[str, str]:
            groups = ["offsets-plain", "offsets-txn"]
            described = admin.describe_consumer_groups(groups)
            return {g: described[g].result(DEADLINE_S).state.name for g in groups}

        assert {g: listed(admin).get(g) for g in ("offsets-plain", "offsets-txn")} == {
            "offsets-plain": "EMPTY",
            "offsets-txn": "EMPTY",
        }
        assert states() == {"offsets-plain": "EMPTY", "offsets-txn": "EMPTY"}
        broker.restart()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
        assert {g: listed(admin).get(g) for g in ("offsets-plain", "offsets-txn")} == {
            "offsets-plain": "EMPTY",
            "offsets-txn": "EMPTY",
        }
        assert states() == {"offsets-plain": "EMPTY", "offsets-txn": "EMPTY"}
