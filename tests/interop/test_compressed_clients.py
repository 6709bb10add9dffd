"""Every codec from every client still passes record validation: aiokafka and kafka-python
compress in Python (their own gzip, snappy, lz4 and zstd framing), kcat through librdkafka. Each
produces keyed records with headers, compressed, and reads them back; the stored batches really
carry the codec. (confluent-kafka's codecs are in test_roundtrip.py.)"""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KPTopicPartition

from samsa.testing import EmbeddedBroker
from samsa.testing.requirements import require_binary

from .clients import aiokafka_roundtrip
from .support import (
    DEADLINE_S,
    PARTITIONS,
    Deadline,
    Record,
    Stored,
    assert_same_partitions,
    create_topic,
    expected_by_partition,
    group_by_partition,
    make_records,
    normalize_headers,
    stored_compression,
)

pytestmark = pytest.mark.interop

CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
RECORDS = 2_000


def assert_stored_with(broker: EmbeddedBroker, topic: str, codec: str) -> None:
    """Nearly every record was stored compressed with `codec`. Not all: a client may send a
    batch uncompressed when compressing it saves nothing (kafka-python does, for a lone record
    at a batch's start)."""
    for partition in range(PARTITIONS):
        by_codec = stored_compression(broker.data_dir, topic, partition)
        assert set(by_codec) <= {0, CODECS[codec]}, f"{topic}-{partition}: {by_codec}"
        total = sum(by_codec.values())
        assert by_codec.get(CODECS[codec], 0) >= 0.9 * total, f"{topic}-{partition}: {by_codec}"


@pytest.mark.parametrize("codec", ["gzip", "snappy", "zstd"])  # lz4: test_roundtrip.py
def test_aiokafka_compressed(samsa_broker: EmbeddedBroker, codec: str) -> None:
    topic = f"aiokafka-{codec}"
    create_topic(samsa_broker.bootstrap, topic)
    records = make_records("aiokafka", RECORDS)
    placed, read = asyncio.run(aiokafka_roundtrip(samsa_broker.bootstrap, topic, records, codec))
    assert_same_partitions(expected_by_partition(records, placed), group_by_partition(read))
    assert_stored_with(samsa_broker, topic, codec)


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_kafka_python_compressed(samsa_broker: EmbeddedBroker, codec: str) -> None:
    bootstrap = samsa_broker.bootstrap
    topic = f"kafka-python-{codec}"
    create_topic(bootstrap, topic)
    records = make_records("kafka-python", RECORDS)
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, compression_type=codec
    )
    try:
        futures = [
            producer.send(topic, key=r.key, value=r.value, headers=list(r.headers)) for r in records
        ]
        producer.flush(timeout=DEADLINE_S)
        placed = {}
        for i, future in enumerate(futures):
            metadata = future.get(timeout=DEADLINE_S)
            placed[i] = (metadata.partition, metadata.offset)
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    try:
        consumer.assign([KPTopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        read: list[Stored] = []
        deadline = Deadline()
        while len(read) < len(records):
            deadline.check(f"kafka-python consumer read {len(read)} of {len(records)} records")
            for tp, messages in consumer.poll(timeout_ms=200, max_records=2000).items():
                for m in messages:
                    headers = normalize_headers(m.headers)
                    read.append(Stored(tp.partition, m.offset, Record(m.key, m.value, headers)))
    finally:
        consumer.close(autocommit=False)
    assert_same_partitions(expected_by_partition(records, placed), group_by_partition(read))
    assert_stored_with(samsa_broker, topic, codec)


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_kcat_compressed(samsa_broker: EmbeddedBroker, codec: str) -> None:
    kcat = require_binary("kcat")
    bootstrap = samsa_broker.bootstrap
    topic = f"kcat-{codec}"
    create_topic(bootstrap, topic, partitions=1)
    lines = b"".join(f"key-{i}\tvalue-{i}-".encode() + b"x" * (i % 50) + b"\n" for i in range(500))
    produced = subprocess.run(
        [kcat, "-b", bootstrap, "-P", "-t", topic, "-p", "0", "-K", "\t", "-z", codec,
         "-X", "acks=all", "-X", "linger.ms=5"],
        input=lines, capture_output=True, timeout=DEADLINE_S, check=False,
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr.decode()[-2000:]
    consumed = subprocess.run(
        [kcat, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
         "-f", "%k\\t%s\\n", "-X", "fetch.wait.max.ms=100"],
        capture_output=True, timeout=DEADLINE_S, check=False,
    )  # fmt: skip
    assert consumed.returncode == 0, consumed.stderr.decode()[-2000:]
    assert consumed.stdout == lines
    by_codec = stored_compression(samsa_broker.data_dir, topic, 0)
    assert set(by_codec) == {CODECS[codec]}, by_codec
