"""A zombie copier with real clients (issue 5, part 3): a consumer holds uncommitted work while a
rebalance gives its partitions to another member; its send_offsets_to_transaction with the old
group metadata fails (KIP-447) and its transaction cannot commit the output."""

from __future__ import annotations

import time

import confluent_kafka
import pytest

from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.topics import create_topics, end_offsets, placed, value_of

from .support import BROKER_SETTINGS, DEADLINE_S, committed_offsets, produce_values
from .test_copier import read_all_committed

pytestmark = pytest.mark.interop

INPUT = "copy-in"
OUTPUT = "copy-out"
GROUP = "zombie-clients"


def consumer(bootstrap: str, name: str) -> confluent_kafka.Consumer:
    return confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "client.id": name,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 2_000,
            "heartbeat.interval.ms": 200,
            # The zombie stops polling: after this long it is out of the group.
            "max.poll.interval.ms": 2_000,
            "log_level": 0,
        }
    )


def producer(bootstrap: str, transactional_id: str) -> confluent_kafka.Producer:
    return confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "log_level": 0}
    )


def consume_some(c: confluent_kafka.Consumer, at_least: int) -> list[confluent_kafka.Message]:
    found: list[confluent_kafka.Message] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(found) < at_least:
        assert time.monotonic() < deadline, f"consumed only {len(found)}"
        found += [m for m in c.consume(100, 0.2) if m.error() is None]
    return found


def test_zombie_cannot_commit_offsets_or_output(tmp_path: object) -> None:
    with EmbeddedBroker(str(tmp_path) + "/data", BROKER_SETTINGS) as broker:
        bootstrap = broker.bootstrap
        create_topics(bootstrap, {INPUT: 2, OUTPUT: 2})
        expected = produce_values(bootstrap, INPUT, 2, 50, "in")

        zombie_consumer = consumer(bootstrap, "zombie")
        zombie_consumer.subscribe([INPUT])
        zombie = producer(bootstrap, "zombie-txn")
        zombie.init_transactions(DEADLINE_S)
        messages = consume_some(zombie_consumer, 100)  # it owns both partitions
        assert {m.partition() for m in messages} == {0, 1}
        positions = zombie_consumer.position(zombie_consumer.assignment())
        stale_metadata = zombie_consumer.consumer_group_metadata()
        zombie.begin_transaction()
        for m in messages:
            zombie.produce(OUTPUT, b"zombie:" + value_of(m), partition=placed(m)[0])
        zombie.flush(DEADLINE_S)

        # The zombie stops polling (a long GC pause, say); another member takes over.
        successor_consumer = consumer(bootstrap, "successor")
        successor_consumer.subscribe([INPUT])
        successor = producer(bootstrap, "successor-txn")
        successor.init_transactions(DEADLINE_S)
        copied = consume_some(successor_consumer, 100)
        assert {tp.partition for tp in successor_consumer.assignment()} == {0, 1}
        successor.begin_transaction()
        for m in copied:
            successor.produce(OUTPUT, value_of(m), partition=placed(m)[0])
        successor.send_offsets_to_transaction(
            successor_consumer.position(successor_consumer.assignment()),
            successor_consumer.consumer_group_metadata(),
            DEADLINE_S,
        )
        successor.commit_transaction(DEADLINE_S)

        # The zombie wakes up with its old generation: the group coordinator refuses it.
        with pytest.raises(confluent_kafka.KafkaException) as raised:
            zombie.send_offsets_to_transaction(positions, stale_metadata, DEADLINE_S)
        error = raised.value.args[0]
        assert error.code() in (
            confluent_kafka.KafkaError.ILLEGAL_GENERATION,
            confluent_kafka.KafkaError.UNKNOWN_MEMBER_ID,
        ), error
        assert error.txn_requires_abort() and not error.fatal(), error
        with pytest.raises(confluent_kafka.KafkaException):
            zombie.commit_transaction(DEADLINE_S)
        zombie.abort_transaction(DEADLINE_S)

        assert committed_offsets(bootstrap, GROUP, INPUT, 2) == {0: 50, 1: 50}
        final = read_all_committed(bootstrap, end_offsets(bootstrap, OUTPUT, 2))
        assert final == expected  # the successor's copy, once, and nothing of the zombie's
        successor_consumer.close()
        zombie_consumer.close()
