"""Record validation seen from real clients and a real broker (issue 13): poison batches sent
by a raw client are refused with Kafka's codes and leave nothing stored, while a confluent-kafka
consumer on the same partition keeps reading; decompression bombs are refused with the broker
process's memory bounded; timestamps are what Kafka would make of them."""

from __future__ import annotations

import datetime
import functools
import struct
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import (
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from kio.schema.errors import ErrorCode
from kio.schema.produce.v6 import request as v6
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.schema.types import TopicName
from kio.static.primitive import Records, i16, i32, i32Timedelta

from samsa.admin.client import AdminClient
from samsa.protocol.batch_writer import record_batch
from samsa.protocol.compression import ZSTD
from samsa.testing import BrokerProcess, EmbeddedBroker
from samsa.testing.memory import proc_status, reset_peak
from samsa.testing.poison import POISON, compressed, gzip_bomb, reseal, zstd_bomb
from samsa.testing.topics import value_of

from .support import DEADLINE_S, Deadline, create_topic

pytestmark = pytest.mark.interop

TOPIC = "validation"


def produce_raw(bootstrap: str, topic: str, batch: bytes, partition: int = 0) -> Any:
    """One Produce v9 (acks=all) of `batch`; the partition's response."""
    request = ProduceRequest(
        transactional_id=None,
        acks=i16(-1),
        timeout=i32Timedelta.parse(datetime.timedelta(seconds=10)),
        topic_data=(
            TopicProduceData(
                name=TopicName(topic),
                partition_data=(
                    PartitionProduceData(index=i32(partition), records=Records(batch)),
                ),
            ),
        ),
    )
    with AdminClient(bootstrap, timeout_s=DEADLINE_S) as client:
        response = client.send(request)
    [partition_response] = response.responses[0].partition_responses
    return partition_response


def log_end(bootstrap: str, topic: str, partition: int = 0) -> int:
    with AdminClient(bootstrap) as client:
        return client.list_offsets({topic: [partition]}, 0)[(topic, partition)]


def produce_values(bootstrap: str, topic: str, values: list[bytes], **config: Any) -> list[Any]:
    """Produce to partition 0 with confluent-kafka; the delivery errors (None for success)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **config})
    results: list[Any] = []
    for value in values:
        producer.produce(topic, value, partition=0, on_delivery=lambda e, m: results.append(e))
    assert producer.flush(DEADLINE_S) == 0
    return results


@pytest.fixture
def consumer(samsa_broker: EmbeddedBroker) -> Iterator[Consumer]:
    consumer = Consumer(
        {
            "bootstrap.servers": samsa_broker.bootstrap,
            "group.id": "samsa-validation-unused",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
        }
    )
    yield consumer
    consumer.close()


def read(consumer: Consumer, count: int) -> list[bytes]:
    values: list[bytes] = []
    deadline = Deadline()
    while len(values) < count:
        deadline.check(f"the consumer read {len(values)} of {count} records")
        message = consumer.poll(0.2)
        if message is None:
            continue
        assert message.error() is None, message.error()
        values.append(value_of(message))
    return values


def test_poison_batches_are_refused_and_a_consumer_keeps_reading(
    samsa_broker: EmbeddedBroker, consumer: Consumer
) -> None:
    bootstrap = samsa_broker.bootstrap
    create_topic(bootstrap, TOPIC, partitions=1)
    consumer.assign([TopicPartition(TOPIC, 0, 0)])
    assert produce_values(bootstrap, TOPIC, [b"before"]) == [None]
    assert read(consumer, 1) == [b"before"]
    for number, poison in enumerate(POISON):
        end = log_end(bootstrap, TOPIC)
        response = produce_raw(bootstrap, TOPIC, poison.build())
        assert response.error_code == poison.error, poison.name
        assert response.error_message, poison.name
        assert log_end(bootstrap, TOPIC) == end, f"{poison.name}: something was stored"
        value = f"after {number}".encode()
        assert produce_values(bootstrap, TOPIC, [value]) == [None]
        assert read(consumer, 1) == [value], poison.name
    assert log_end(bootstrap, TOPIC) == 1 + len(POISON)


# ----------------------------------------------------------------- decompression bombs
@pytest.fixture(scope="module")
def broker_process() -> Iterator[BrokerProcess]:
    with tempfile.TemporaryDirectory() as data_dir:
        broker = BrokerProcess(data_dir).start()
        try:
            yield broker
        finally:
            broker.stop()


# What the broker process may grow by, at its peak, while refusing a bomb: the inflation bound
# (message.decompressed.max.bytes, 16 MiB by default) and change. Before issue 13 the gzip bomb
# cost 1 GB and the zstd bomb aborted the broker.
PEAK_GROWTH_MAX_KB = 96 * 1024


@pytest.mark.parametrize(
    ("name", "build", "inflated"),
    [("zstd", zstd_bomb, 4 << 30), ("gzip", gzip_bomb, 512 << 20)],
)
def test_a_decompression_bomb_is_refused_with_memory_bounded(
    broker_process: BrokerProcess, name: str, build: Any, inflated: int
) -> None:
    bootstrap = broker_process.bootstrap
    topic = f"bomb-{name}"
    create_topic(bootstrap, topic, partitions=1)
    assert produce_values(bootstrap, topic, [b"before"]) == [None]
    assert broker_process.process is not None
    pid = broker_process.process.pid
    bomb = build(inflated)
    assert len(bomb) < 1_000_000  # under message.max.bytes: only the bound stops it
    reset_peak(pid)
    before = proc_status(pid)
    started = time.monotonic()
    response = produce_raw(bootstrap, topic, bomb)
    elapsed = time.monotonic() - started
    after = proc_status(pid)
    assert response.error_code == ErrorCode.corrupt_message
    assert "message.decompressed.max.bytes" in response.error_message
    peak_growth_kb = after["VmHWM"] - before["VmRSS"]
    assert peak_growth_kb < PEAK_GROWTH_MAX_KB, f"{name} bomb: RSS {before} -> {after}"
    assert elapsed < 5.0, f"the {name} bomb took {elapsed:.1f} s to refuse"
    assert log_end(bootstrap, topic) == 1
    # The broker still serves: another write lands after the bomb.
    assert produce_values(bootstrap, topic, [b"after"]) == [None]
    assert log_end(bootstrap, topic) == 2


# ----------------------------------------------------------------- timestamps
def test_a_sarama_batch_with_max_timestamp_minus_one_is_found_by_timestamp(
    samsa_broker: EmbeddedBroker, consumer: Consumer
) -> None:
    bootstrap = samsa_broker.bootstrap
    create_topic(bootstrap, TOPIC, partitions=1)
    base = int(time.time() * 1000) - 60_000
    stamps = [base, base + 20, base + 10]
    batch = bytearray(record_batch([b"a", b"b", b"c"], timestamp_ms=base, timestamps_ms=stamps))
    struct.pack_into(">q", batch, 35, -1)  # max timestamp, as Sarama (Go) writes it
    response = produce_raw(bootstrap, TOPIC, reseal(batch))
    assert response.error_code == ErrorCode.none
    # offsets_for_times: the first record at or after base + 15 is offset 1 (base + 20).
    [found] = consumer.offsets_for_times([TopicPartition(TOPIC, 0, base + 15)], timeout=10)
    assert found.error is None
    assert found.offset == 1
    [latest] = consumer.offsets_for_times([TopicPartition(TOPIC, 0, base + 21)], timeout=10)
    assert latest.offset == -1  # past every record: the end (librdkafka reports -1)


def test_log_append_time_topic_stamps_records_with_the_broker_clock(
    samsa_broker: EmbeddedBroker, consumer: Consumer
) -> None:
    bootstrap = samsa_broker.bootstrap
    topic = "log-append-time"
    create_topic(bootstrap, topic, partitions=1, config={"message.timestamp.type": "LogAppendTime"})
    long_ago = 1_000_000_000_000  # 2001
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": "lz4"})
    errors: list[KafkaError | None] = []
    before = int(time.time() * 1000)
    for i in range(5):
        producer.produce(
            topic,
            f"v{i}".encode(),
            partition=0,
            timestamp=long_ago,
            on_delivery=lambda e, m: errors.append(e),
        )
    assert producer.flush(DEADLINE_S) == 0
    after = int(time.time() * 1000)
    assert errors == [None] * 5
    consumer.assign([TopicPartition(topic, 0, 0)])
    stamps: list[tuple[int, int]] = []
    deadline = Deadline()
    while len(stamps) < 5:
        deadline.check(f"read {len(stamps)} of 5")
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            stamps.append(message.timestamp())
    assert {kind for kind, _ in stamps} == {TIMESTAMP_LOG_APPEND_TIME}
    assert all(before <= stamp <= after for _, stamp in stamps), (before, stamps, after)


def test_kip_937_timestamp_bounds_refuse_records_outside_them(
    samsa_broker: EmbeddedBroker, consumer: Consumer
) -> None:
    bootstrap = samsa_broker.bootstrap
    topic = "bounded-timestamps"
    create_topic(
        bootstrap,
        topic,
        partitions=1,
        config={
            "message.timestamp.before.max.ms": "3600000",
            "message.timestamp.after.max.ms": "60000",
        },
    )
    now = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "retries": 0})
    results: dict[str, Any] = {}

    def keep_error(name: str, error: KafkaError | None, _message: object) -> None:
        results[name] = error

    for name, stamp in (
        ("now", now),
        ("two hours ago", now - 2 * 3_600_000),
        ("ten minutes ahead", now + 600_000),
        ("half a minute ahead", now + 30_000),
    ):
        producer.produce(
            topic,
            name.encode(),
            partition=0,
            timestamp=stamp,
            on_delivery=functools.partial(keep_error, name),
        )
        producer.flush(DEADLINE_S)
    assert results["now"] is None
    assert results["half a minute ahead"] is None
    for name in ("two hours ago", "ten minutes ahead"):
        assert results[name] is not None and results[name].code() == KafkaError.INVALID_TIMESTAMP
    consumer.assign([TopicPartition(topic, 0, 0)])
    assert read(consumer, 2) == [b"now", b"half a minute ahead"]
    assert log_end(bootstrap, topic) == 2


def test_the_default_refuses_records_more_than_an_hour_ahead(samsa_broker: EmbeddedBroker) -> None:
    """Kafka 4.0's default log.message.timestamp.after.max.ms (one hour)."""
    bootstrap = samsa_broker.bootstrap
    create_topic(bootstrap, TOPIC, partitions=1)
    ahead = int(time.time() * 1000) + 2 * 3_600_000
    response = produce_raw(bootstrap, TOPIC, record_batch([b"x"], timestamp_ms=ahead))
    assert response.error_code == ErrorCode.invalid_timestamp
    assert [int(e.batch_index) for e in response.record_errors] == [0]
    assert log_end(bootstrap, TOPIC) == 0


def test_zstd_needs_produce_v7(samsa_broker: EmbeddedBroker) -> None:
    """KIP-110: a client that sends zstd must speak Produce v7+ (older ones cannot read it)."""
    bootstrap = samsa_broker.bootstrap
    create_topic(bootstrap, TOPIC, partitions=1)
    batch = compressed(record_batch([b"z"], timestamp_ms=int(time.time() * 1000)), ZSTD)
    request = v6.ProduceRequest(
        transactional_id=None,
        acks=i16(-1),
        timeout=i32Timedelta.parse(datetime.timedelta(seconds=10)),
        topic_data=(
            v6.TopicProduceData(
                name=TopicName(TOPIC),
                partition_data=(v6.PartitionProduceData(index=i32(0), records=Records(batch)),),
            ),
        ),
    )
    with AdminClient(bootstrap) as client:
        response = client.send(request)
    error = response.responses[0].partition_responses[0].error_code
    assert error == ErrorCode.unsupported_compression_type
    assert produce_raw(bootstrap, TOPIC, batch).error_code == ErrorCode.none  # v9
