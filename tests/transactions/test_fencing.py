"""Zombie fencing and hanging producers (KIP-98): a new instance of a transactional id fences the
old one; a transaction open past its timeout is aborted by the coordinator, which fences its
producer. Neither zombie's writes ever reach a read_committed reader."""

from __future__ import annotations

import asyncio
import time

import aiokafka
import confluent_kafka
import pytest
from aiokafka.errors import ProducerFenced

from samsa.admin.client import READ_COMMITTED, READ_UNCOMMITTED
from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.topics import create_topics

from .support import (
    all_partitions,
    assert_fenced,
    is_fenced,
    offsets,
    read_confluent,
    txn_producer,
    wait_stable,
)

pytestmark = pytest.mark.interop

TOPICS = {"fence": 2}
TPS = all_partitions(TOPICS)


def test_confluent_zombie_is_fenced(samsa_broker: EmbeddedBroker) -> None:
    bootstrap = samsa_broker.bootstrap
    create_topics(bootstrap, TOPICS)
    zombie = txn_producer(bootstrap, "fenced-id")
    zombie.init_transactions(30)
    zombie.begin_transaction()
    for p in range(2):
        zombie.produce("fence", b"zombie-before", partition=p)
    assert zombie.flush(30) == 0

    successor = txn_producer(bootstrap, "fenced-id")
    successor.init_transactions(30)  # fences the zombie and aborts its open transaction
    successor.begin_transaction()
    for p in range(2):
        successor.produce("fence", b"successor", partition=p)
    successor.commit_transaction(30)

    assert_fenced(zombie, "fence", range(2))

    ends = wait_stable(bootstrap, TPS)
    committed = read_confluent(bootstrap, TPS, "read_committed", ends)
    assert committed == {tp: [b"successor"] for tp in TPS}
    everything = read_confluent(bootstrap, TPS, "read_uncommitted", ends)
    for tp in TPS:
        assert b"zombie-after" not in everything[tp]  # refused, not just hidden
        assert everything[tp] == [b"zombie-before", b"successor"]


def test_aiokafka_zombie_is_fenced(samsa_broker: EmbeddedBroker) -> None:
    bootstrap = samsa_broker.bootstrap
    create_topics(bootstrap, TOPICS)

    async def main() -> None:
        zombie = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="aio")
        successor = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="aio")
        await zombie.start()
        try:
            await zombie.begin_transaction()
            await zombie.send_and_wait("fence", b"zombie-before", partition=0)
            await successor.start()
            async with successor.transaction():
                await successor.send_and_wait("fence", b"successor", partition=0)
            with pytest.raises(ProducerFenced):
                await zombie.send_and_wait("fence", b"zombie-after", partition=1)
                await zombie.commit_transaction()
        finally:
            await successor.stop()
            await zombie.stop()

    asyncio.run(main())
    ends = wait_stable(bootstrap, TPS)
    committed = read_confluent(bootstrap, TPS, "read_committed", ends)
    assert committed == {("fence", 0): [b"successor"], ("fence", 1): []}


def test_hanging_producer_is_aborted_and_fenced(samsa_broker: EmbeddedBroker) -> None:
    """transaction.timeout.ms=2000; the broker checks every second."""
    bootstrap = samsa_broker.bootstrap
    create_topics(bootstrap, TOPICS)
    hanging = txn_producer(bootstrap, "hangs", **{"transaction.timeout.ms": 2000})
    hanging.init_transactions(30)
    hanging.begin_transaction()
    started = time.monotonic()
    for p in range(2):
        hanging.produce("fence", b"hanging", partition=p)
    assert hanging.flush(30) == 0
    plain = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    for p in range(2):
        plain.produce("fence", b"after", partition=p)
    assert plain.flush(30) == 0

    # Held back: the open transaction starts at offset 0.
    assert offsets(bootstrap, TPS, READ_COMMITTED) == {tp: 0 for tp in TPS}
    assert offsets(bootstrap, TPS, READ_UNCOMMITTED) == {tp: 2 for tp in TPS}

    ends = wait_stable(bootstrap, TPS, timeout_s=10)
    waited = time.monotonic() - started
    assert waited >= 1.9, f"aborted after {waited:.1f} s, before its 2 s timeout"
    assert ends == {tp: 3 for tp in TPS}  # hanging, after, and the ABORT marker
    assert read_confluent(bootstrap, TPS, "read_committed", ends) == {tp: [b"after"] for tp in TPS}

    with pytest.raises(confluent_kafka.KafkaException) as raised:
        hanging.commit_transaction(10)
    assert is_fenced(raised.value.args[0]), raised.value.args[0]
