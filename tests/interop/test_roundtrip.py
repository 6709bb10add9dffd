"""Each real client produces 10,000 keyed records with headers over 3 partitions (acks=all) and
reads them back by manual assignment: every partition must hold exactly what was sent, in send
order, at the offsets the producer was acknowledged."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KPTopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from samsa.testing import EmbeddedBroker
from samsa.testing.requirements import require_binary

from .clients import aiokafka_roundtrip, confluent_consume, confluent_produce
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

TOPIC = "interop"


# ----------------------------------------------------------------- confluent-kafka (librdkafka)
def confluent_roundtrip(bootstrap: str, topic: str, **config: Any) -> None:
    create_topic(bootstrap, topic)
    records = make_records("confluent")
    placed = confluent_produce(bootstrap, topic, records, **config)
    read = confluent_consume(bootstrap, topic, len(records))
    assert_same_partitions(expected_by_partition(records, placed), group_by_partition(read))


def test_confluent_kafka_roundtrip(samsa_broker: EmbeddedBroker) -> None:
    confluent_roundtrip(samsa_broker.bootstrap, TOPIC)


CODEC_IDS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@pytest.mark.parametrize("codec", sorted(CODEC_IDS))
def test_confluent_kafka_compressed_roundtrip(samsa_broker: EmbeddedBroker, codec: str) -> None:
    topic = f"{TOPIC}-{codec}"
    confluent_roundtrip(samsa_broker.bootstrap, topic, **{"compression.type": codec})
    # The batches really were compressed with this codec, and stored as produced. librdkafka
    # silently sends uncompressed batches when it thinks the broker lacks a codec: KAFKA-18659,
    # and LZ4, which it enables only when the broker advertises FindCoordinator.
    assert_compressed(samsa_broker, topic, codec)


def assert_compressed(broker: EmbeddedBroker, topic: str, codec: str) -> None:
    """Nearly every record is in a batch compressed with `codec`. Not all: a producer sends a
    batch uncompressed when compressing does not make it smaller (a lone record, say)."""
    for partition in range(PARTITIONS):
        by_codec = stored_compression(broker.data_dir, topic, partition)
        total = sum(by_codec.values())
        assert set(by_codec) <= {0, CODEC_IDS[codec]}, (
            f"{topic}-{partition}: records by codec {by_codec}, expected {codec} or none"
        )
        assert by_codec.get(CODEC_IDS[codec], 0) >= 0.9 * total, (
            f"{topic}-{partition}: records by codec {by_codec}; expected {codec} "
            f"(id {CODEC_IDS[codec]}) for at least 90%"
        )


# ----------------------------------------------------------------- aiokafka
# aiokafka compresses in Python (cramjam): the same codec from a second implementation.
@pytest.mark.parametrize("codec", [None, "lz4"])
def test_aiokafka_roundtrip(samsa_broker: EmbeddedBroker, codec: str | None) -> None:
    create_topic(samsa_broker.bootstrap, TOPIC)
    records = make_records("aiokafka")
    placed, read = asyncio.run(aiokafka_roundtrip(samsa_broker.bootstrap, TOPIC, records, codec))
    assert_same_partitions(expected_by_partition(records, placed), group_by_partition(read))
    if codec is not None:
        assert_compressed(samsa_broker, TOPIC, codec)
    else:
        for partition in range(PARTITIONS):
            by_codec = stored_compression(samsa_broker.data_dir, TOPIC, partition)
            assert set(by_codec) == {0}, by_codec


# ----------------------------------------------------------------- kafka-python
def test_kafka_python_roundtrip(samsa_broker: EmbeddedBroker) -> None:
    bootstrap = samsa_broker.bootstrap
    # kafka-python's own admin client creates the topic (CreateTopics v5+: the response
    # describes the new topic's partitions and settings).
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        created = admin.create_topics(
            [NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)]
        )
    finally:
        admin.close()
    [topic] = created["topics"]
    assert (topic["name"], topic["error_code"]) == (TOPIC, 0)
    assert (topic["num_partitions"], topic["replication_factor"]) == (PARTITIONS, 1)
    assert "retention.ms" in topic["configs"], sorted(topic["configs"])

    records = make_records("kafka-python")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [
            producer.send(TOPIC, key=r.key, value=r.value, headers=list(r.headers)) for r in records
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
        consumer.assign([KPTopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        read: list[Stored] = []
        deadline = Deadline()
        while len(read) < len(records):
            deadline.check(f"kafka-python consumer read {len(read)} of {len(records)} records")
            for tp, messages in consumer.poll(timeout_ms=200, max_records=2000).items():
                for m in messages:
                    headers = normalize_headers(m.headers)
                    read.append(Stored(tp.partition, m.offset, Record(m.key, m.value, headers)))
        extra = consumer.poll(timeout_ms=300)
        assert not any(extra.values()), "read more records than were sent"
    finally:
        consumer.close(autocommit=False)
    assert_same_partitions(expected_by_partition(records, placed), group_by_partition(read))


# ----------------------------------------------------------------- kcat
KCAT_CHUNKS = 6  # chunk j goes to partition j % 3, with its own headers


def _kcat(kcat: str, *args: str, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(
        [kcat, *args], input=stdin, capture_output=True, timeout=DEADLINE_S, check=False
    )
    assert result.returncode == 0, (
        f"kcat {' '.join(args)} exited {result.returncode}: {result.stderr.decode()[-2000:]}"
    )
    return result.stdout


def test_kcat_roundtrip(samsa_broker: EmbeddedBroker) -> None:
    kcat = require_binary("kcat")
    bootstrap = samsa_broker.bootstrap
    create_topic(bootstrap, TOPIC)
    # kcat's -H applies to every record of one run, so records go in chunks: one run per chunk,
    # each pinned to a partition (-p) with headers naming the chunk. Input: "key<TAB>value" lines.
    records = make_records("kcat", text_only=True)
    size = -(-len(records) // KCAT_CHUNKS)
    expected: dict[int, list[Record]] = {p: [] for p in range(PARTITIONS)}
    for chunk in range(KCAT_CHUNKS):
        partition = chunk % PARTITIONS
        headers = (("chunk", str(chunk).encode()), ("tool", b"kcat"))
        part = [Record(r.key, r.value, headers) for r in records[chunk * size : (chunk + 1) * size]]
        lines = b"".join(r.key + b"\t" + r.value + b"\n" for r in part)
        header_args = [
            arg for name, value in headers for arg in ("-H", f"{name}={(value or b'').decode()}")
        ]
        _kcat(
            kcat,
            "-b", bootstrap, "-P", "-t", TOPIC, "-p", str(partition), "-K", "\\t",
            *header_args,
            "-X", "acks=all", "-X", "linger.ms=5",
            stdin=lines,
        )  # fmt: skip
        expected[partition].extend(part)

    # One run reads every partition from the beginning and exits at the end of all of them (-e).
    # Fields are tab-separated, records newline-terminated (no tabs or newlines in the data).
    out = _kcat(
        kcat,
        "-b", bootstrap, "-C", "-t", TOPIC, "-o", "beginning", "-e", "-q",
        "-c", str(len(records) + 1),
        "-X", "fetch.wait.max.ms=100",
        "-f", "%p\\t%o\\t%k\\t%s\\t%h\\n",
    )  # fmt: skip
    text_lines = out.decode().split("\n")
    assert text_lines[-1] == "", f"kcat output does not end with a newline: {text_lines[-1]!r}"
    read: list[Stored] = []
    for line in text_lines[:-1]:
        fields = line.split("\t")
        assert len(fields) == 5, f"unexpected kcat output line {line!r}"
        partition_text, offset_text, key, value, header_text = fields
        read_headers = tuple(
            (name, value_text.encode())
            for name, _, value_text in (h.partition("=") for h in header_text.split(","))
        )
        read.append(
            Stored(
                int(partition_text),
                int(offset_text),
                Record(key.encode(), value.encode(), read_headers),
            )
        )
    assert_same_partitions(
        {p: [Stored(p, offset, r) for offset, r in enumerate(rs)] for p, rs in expected.items()},
        group_by_partition(read),
    )
