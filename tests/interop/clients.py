"""The clients' produce and consume loops, shared by the round-trip and restart tests."""

from __future__ import annotations

import asyncio
import functools
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AIOTopicPartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from samsa.testing.topics import placed, value_of

from .support import DEADLINE_S, PARTITIONS, Deadline, Record, Stored, normalize_headers


# ----------------------------------------------------------------- confluent-kafka (librdkafka)
def confluent_produce(
    bootstrap: str, topic: str, records: list[Record], **config: Any
) -> dict[int, tuple[int, int]]:
    """Produce with the key partitioner; (partition, offset) of each record by its index."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **config})
    placed: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def delivered(index: int, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            errors.append(f"record {index}: {err}")
        else:
            placed[index] = (msg.partition(), msg.offset())

    for index, record in enumerate(records):
        while True:
            try:
                producer.produce(
                    topic,
                    key=record.key,
                    value=record.value,
                    headers=list(record.headers),
                    on_delivery=functools.partial(delivered, index),
                )
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(DEADLINE_S)
    assert left == 0, f"{left} records still unacknowledged after {DEADLINE_S} s"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    return placed


def confluent_consume(
    bootstrap: str, topic: str, count: int, partitions: int = PARTITIONS
) -> list[Stored]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            # assign() needs no group, but librdkafka insists on a group.id; nothing is committed.
            "group.id": "samsa-interop-unused",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.wait.max.ms": 100,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        read: list[Stored] = []
        deadline = Deadline()
        while len(read) < count:
            deadline.check(f"confluent consumer read {len(read)} of {count} records")
            for msg in consumer.consume(num_messages=1000, timeout=0.2):
                error = msg.error()
                assert error is None, f"consume error: {error}"
                key = msg.key()
                assert key is not None, f"null key at {placed(msg)}"
                # A consumed message's headers are (str, bytes) pairs; the stub's wider type is
                # what produce() accepts.
                headers = cast("list[tuple[str, bytes | None]] | None", msg.headers())
                read.append(
                    Stored(*placed(msg), Record(key, value_of(msg), normalize_headers(headers)))
                )
        # Nothing beyond what was sent.
        extra = consumer.consume(num_messages=10, timeout=0.3)
        assert not extra, f"read {len(extra)} records more than the {count} sent"
        return read
    finally:
        consumer.close()


# ----------------------------------------------------------------- aiokafka
async def aiokafka_roundtrip(
    bootstrap: str,
    topic: str,
    records: list[Record],
    compression: str | None = None,
    already_there: int = 0,
) -> tuple[dict[int, tuple[int, int]], list[Stored]]:
    """Produce `records`, then read the topic from the beginning: `already_there` records that
    were in it before, and these. (partition, offset) of each record by index, and what was read."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, compression_type=compression
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, r.value, key=r.key, headers=list(r.headers)) for r in records
        ]
        metadata = await asyncio.wait_for(asyncio.gather(*futures), DEADLINE_S)
    finally:
        await producer.stop()
    placed = {i: (m.partition, m.offset) for i, m in enumerate(metadata)}

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        consumer.assign([AIOTopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        read: list[Stored] = []
        deadline = Deadline()
        total = already_there + len(records)
        while len(read) < total:
            deadline.check(f"aiokafka consumer read {len(read)} of {total} records")
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            for tp, messages in batches.items():
                for m in messages:
                    headers = normalize_headers(m.headers)
                    read.append(Stored(tp.partition, m.offset, Record(m.key, m.value, headers)))
        extra = await consumer.getmany(timeout_ms=300)
        assert not any(extra.values()), "read more records than were sent"
    finally:
        await consumer.stop()
    return placed, read
