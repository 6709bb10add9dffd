"""Restart survival: what was acknowledged before a clean restart is all there after it, at the
same offsets, and clients carry on where they left off."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from samsa.testing import EmbeddedBroker

from .clients import aiokafka_roundtrip, confluent_consume, confluent_produce
from .support import (
    DEADLINE_S,
    PARTITIONS,
    assert_same_partitions,
    create_topic,
    expected_by_partition,
    group_by_partition,
    make_records,
)

pytestmark = pytest.mark.interop

TOPIC = "survivor"


def test_records_survive_restart(samsa_broker: EmbeddedBroker) -> None:
    bootstrap = samsa_broker.bootstrap
    create_topic(bootstrap, TOPIC, config={"retention.ms": "86400000"})
    cluster_id = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5).cluster_id
    records = make_records("restart")
    placed = confluent_produce(bootstrap, TOPIC, records, **{"compression.type": "zstd"})

    samsa_broker.restart()
    assert samsa_broker.bootstrap == bootstrap

    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=DEADLINE_S)
    assert metadata.cluster_id == cluster_id, "the cluster id changed across the restart"
    assert len(metadata.topics[TOPIC].partitions) == PARTITIONS
    read = confluent_consume(bootstrap, TOPIC, len(records))
    assert_same_partitions(expected_by_partition(records, placed), group_by_partition(read))

    # Appends continue after the last offset of each partition, and the first batch is intact.
    more = make_records("after-restart", count=300)
    placed_more = confluent_produce(bootstrap, TOPIC, more)
    ends = {p: len(items) for p, items in expected_by_partition(records, placed).items()}
    for i, (partition, offset) in placed_more.items():
        assert offset >= ends[partition], (
            f"record {i} after the restart got offset {offset} of partition {partition}, "
            f"which already held offsets up to {ends[partition] - 1}"
        )
    everything = confluent_consume(bootstrap, TOPIC, len(records) + len(more))
    assert_same_partitions(
        expected_by_partition(
            records + more, {**placed, **{len(records) + i: v for i, v in placed_more.items()}}
        ),
        group_by_partition(everything),
    )


def test_producer_carries_on_across_restart(samsa_broker: EmbeddedBroker) -> None:
    """One producer, alive across the restart: it reconnects and its records land after the
    ones from before, in order."""
    bootstrap = samsa_broker.bootstrap
    create_topic(bootstrap, TOPIC)
    records = make_records("long-lived", count=2000)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "reconnect.backoff.ms": 10}
    )
    placed: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def send(first: int, last: int) -> None:
        for index in range(first, last):
            record = records[index]

            def delivered(err: object, msg: object, index: int = index) -> None:
                if err is not None:
                    errors.append(f"record {index}: {err}")
                else:
                    placed[index] = (msg.partition(), msg.offset())  # type: ignore[attr-defined]

            producer.produce(
                TOPIC,
                key=record.key,
                value=record.value,
                headers=list(record.headers),
                on_delivery=delivered,
            )
        assert producer.flush(DEADLINE_S) == 0, "records unacknowledged"

    send(0, 1000)
    samsa_broker.restart()
    send(1000, 2000)
    assert not errors, errors[:3]
    read = confluent_consume(bootstrap, TOPIC, len(records))
    assert_same_partitions(expected_by_partition(records, placed), group_by_partition(read))


def test_aiokafka_reads_after_restart(samsa_broker: EmbeddedBroker) -> None:
    """A different client on each side of the restart."""
    bootstrap = samsa_broker.bootstrap
    create_topic(bootstrap, TOPIC)
    records = make_records("aiokafka-restart", count=3000)
    placed = confluent_produce(bootstrap, TOPIC, records)
    samsa_broker.restart()
    # aiokafka_roundtrip produces its records, then reads back the whole topic.
    more = make_records("aiokafka-after", count=300)
    placed_more, read = asyncio.run(
        aiokafka_roundtrip(bootstrap, TOPIC, more, already_there=len(records))
    )
    combined = {**placed, **{len(records) + i: v for i, v in placed_more.items()}}
    assert_same_partitions(
        expected_by_partition(records + more, combined), group_by_partition(read)
    )
