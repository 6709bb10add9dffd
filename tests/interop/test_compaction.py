"""Compacted topics with real clients: librdkafka's 0077-compaction flow (its topic settings,
keyed records with tombstones, compressed batches) gets compacted within seconds, a consumer
part-way through the partition keeps reading across a cleaning, and records without a key are
refused as Kafka refuses them (INVALID_RECORD, KIP-467's record errors)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from kio.schema.errors import ErrorCode

from samsa.protocol.batch_writer import record_batch
from samsa.testing import EmbeddedBroker

from .support import DEADLINE_S, create_topic
from .test_admin import produce_one
from .test_record_validation import produce_raw

pytestmark = pytest.mark.interop

# librdkafka tests/0077-compaction.c's topic.
CONFIGS_0077 = {
    "cleanup.policy": "compact",
    "segment.ms": "10000",
    "segment.bytes": "10000",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "86400",
    "file.delete.delay.ms": "10000",
    "max.compaction.lag.ms": "100",
}
COMPACTION_WAIT_S = 20.0  # 0077 waits this long before it checks


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as started:
        yield started


def produce(
    bootstrap: str, topic: str, items: list[tuple[bytes, bytes | None]], **conf: str
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, **conf})
    errors: list[object] = []
    for key, value in items:
        producer.produce(
            topic,
            value,
            key,
            partition=0,
            on_delivery=lambda e, _m: errors.append(e) if e else None,
        )
    assert producer.flush(DEADLINE_S) == 0
    assert not errors, errors


def consume_all(
    bootstrap: str, topic: str, start: int = 0
) -> list[tuple[int, bytes | None, bytes | None]]:
    from confluent_kafka import TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{topic}-{start}-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([TopicPartition(topic, 0, start)])
    seen: list[tuple[int, bytes | None, bytes | None]] = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return seen
                raise AssertionError(error)
            offset = message.offset()
            assert offset is not None
            seen.append((offset, message.key(), message.value()))
    finally:
        consumer.close()
    raise AssertionError(f"no end of partition within {DEADLINE_S} s")


def fill(bootstrap: str, topic: str, count: int, size: int) -> None:
    """0077's produce_compactable_msgs: one key, the last record a tombstone, one per batch."""
    items: list[tuple[bytes, bytes | None]] = [(b"fill", b"x" * size)] * (count - 1)
    produce(bootstrap, topic, [*items, (b"fill", None)], **{"batch.num.messages": "1"})


@pytest.mark.parametrize("compression", ["none", "zstd", "gzip", "snappy", "lz4"])
def test_librdkafka_0077_compaction(broker: EmbeddedBroker, compression: str) -> None:
    topic = f"t0077-{compression}"
    create_topic(broker.bootstrap, topic, 1, CONFIGS_0077)
    fill(broker.bootstrap, topic, 20, 1000)
    keys: list[bytes | None] = [b"k1", b"k2", b"k3", None]
    items: list[tuple[bytes, bytes | None]] = []
    msgs_per_key = 10
    count = msgs_per_key * len(keys)
    for cnt in range(0, count, len(keys)):
        for k, key in enumerate(keys):
            n = cnt + k
            is_last = n + len(keys) >= count
            tombstone = k == 0 and (is_last or n % 7 == 0)
            items.append((key or b"%d" % n, None if tombstone else b"msg-%d" % n))
    first = 20
    produce(
        broker.bootstrap,
        topic,
        items,
        **{"compression.codec": compression, "message.max.bytes": "6000"},
    )
    # The expected result: the last record of k1, k2, k3 (k1's is a tombstone, kept within
    # delete.retention.ms), every uniquely keyed one.
    expected = [
        (first + n, key, value)
        for n, (key, value) in enumerate(items)
        if not key.startswith(b"k") or n + len(keys) >= count
    ]
    reader_position = first + 5
    before = consume_all(broker.bootstrap, topic, reader_position)
    assert before[0][0] == reader_position
    fill(broker.bootstrap, topic, 20, 1024)
    deadline = time.monotonic() + COMPACTION_WAIT_S
    while True:
        seen = [r for r in consume_all(broker.bootstrap, topic) if first <= r[0] < first + count]
        if seen == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert seen == expected
    # A consumer that was part-way through goes on from where it was, at the next record left.
    after = [
        r for r in consume_all(broker.bootstrap, topic, reader_position) if r[0] < first + count
    ]
    assert after == [r for r in expected if r[0] >= reader_position]


def test_records_without_a_key_are_refused_with_record_errors(broker: EmbeddedBroker) -> None:
    create_topic(broker.bootstrap, "keyless", 1, {"cleanup.policy": "compact"})
    error, _, _ = produce_one(broker.bootstrap, "keyless", b"no key")
    assert error is not None and error.code() == KafkaError.INVALID_RECORD
    batch = record_batch(
        [b"a", b"b", b"c"], keys=[b"k", None, None], timestamp_ms=int(time.time() * 1000)
    )
    response = produce_raw(broker.bootstrap, "keyless", batch)
    assert response.error_code == ErrorCode.invalid_record
    assert [int(e.batch_index) for e in response.record_errors] == [1, 2]
    assert all("key" in (e.batch_index_error_message or "") for e in response.record_errors)
    assert response.error_message
