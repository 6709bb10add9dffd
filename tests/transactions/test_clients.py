"""Transactional producers of three clients against samsa, read back at both isolation levels.

Each client runs the same script of transactions over 2 topics x 2 partitions: some committed,
some aborted after their records were really written (flushed). A read_committed reader must
return exactly the committed records, in order within each partition; a read_uncommitted one
returns every record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiokafka
import confluent_kafka
import kafka
import pytest

from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.topics import create_topics

from .support import TP, Txn, all_partitions, expected, make_script, read_confluent, wait_stable

pytestmark = pytest.mark.interop

TOPICS = {"txn-a": 2, "txn-b": 2}
TPS = all_partitions(TOPICS)
# The first two cover "one committed transaction" and "one aborted transaction" on their own.
DECISIONS = "CAACCACA"


def run_confluent(bootstrap: str, transactional_id: str, script: list[Txn]) -> None:
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "log_level": 0}
    )
    producer.init_transactions(30)
    for txn in script:
        producer.begin_transaction()
        for topic, p, value in txn.records:
            producer.produce(topic, value, partition=p)
        if txn.commit:
            producer.commit_transaction(30)
        else:
            assert producer.flush(30) == 0  # the aborted records are really in the log
            producer.abort_transaction(30)


class Abandon(Exception):
    """Raised inside `async with producer.transaction()` to make aiokafka abort."""


def run_aiokafka(bootstrap: str, transactional_id: str, script: list[Txn]) -> None:
    async def main() -> None:
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=bootstrap, transactional_id=transactional_id
        )
        await producer.start()
        try:
            for n, txn in enumerate(script):
                if txn.commit or n % 2:
                    # Commit on leaving the block; abort when an exception leaves it.
                    try:
                        async with producer.transaction():
                            for topic, p, value in txn.records:
                                await producer.send_and_wait(topic, value, partition=p)
                            if not txn.commit:
                                raise Abandon
                    except Abandon:
                        pass
                else:
                    await producer.begin_transaction()
                    for topic, p, value in txn.records:
                        await producer.send_and_wait(topic, value, partition=p)
                    await producer.abort_transaction()
        finally:
            await producer.stop()

    asyncio.run(main())


def run_kafka_python(bootstrap: str, transactional_id: str, script: list[Txn]) -> None:
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id)
    try:
        producer.init_transactions()
        for txn in script:
            producer.begin_transaction()
            for topic, p, value in txn.records:
                producer.send(topic, value, partition=p)
            if txn.commit:
                producer.commit_transaction()
            else:
                producer.flush(30)
                producer.abort_transaction()
    finally:
        producer.close(10)


def read_aiokafka_committed(bootstrap: str, ends: dict[TP, int]) -> dict[TP, list[bytes]]:
    """aiokafka's own read_committed consumer (its aborted-transaction filtering differs from
    librdkafka's)."""

    async def main() -> dict[TP, list[bytes]]:
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        found: dict[TP, list[bytes]] = {tp: [] for tp in ends}
        try:
            parts = [aiokafka.TopicPartition(t, p) for t, p in ends]
            consumer.assign(parts)
            for part in parts:
                consumer.seek(part, 0)

            async def behind() -> bool:
                for (t, p), end in ends.items():
                    if await consumer.position(aiokafka.TopicPartition(t, p)) < end:
                        return True
                return False

            async def drain() -> None:
                while await behind():
                    batches = await consumer.getmany(timeout_ms=200)
                    for part, messages in batches.items():
                        for m in messages:
                            found[(part.topic, part.partition)].append(m.value)

            await asyncio.wait_for(drain(), 30)
        finally:
            await consumer.stop()
        return found

    return asyncio.run(main())


PRODUCERS: dict[str, Callable[[str, str, list[Txn]], None]] = {
    "confluent": run_confluent,
    "aiokafka": run_aiokafka,
    "kafka-python": run_kafka_python,
}


@pytest.mark.parametrize("client", sorted(PRODUCERS))
def test_committed_visible_aborted_not(samsa_broker: EmbeddedBroker, client: str) -> None:
    bootstrap = samsa_broker.bootstrap
    create_topics(bootstrap, TOPICS)
    script = make_script(client, TPS, DECISIONS)
    PRODUCERS[client](bootstrap, f"txn-{client}", script)

    ends = wait_stable(bootstrap, TPS)
    committed = read_confluent(bootstrap, TPS, "read_committed", ends)
    everything = read_confluent(bootstrap, TPS, "read_uncommitted", ends)
    assert committed == expected(script, committed_only=True)
    assert everything == expected(script, committed_only=False)
    # Every transaction ends with one marker per partition: data records plus markers.
    records_per_partition = len(script) * 3
    assert ends == {tp: records_per_partition + len(script) for tp in TPS}
    assert read_aiokafka_committed(bootstrap, ends) == expected(script, committed_only=True)
