"""Clients that send the versions Kafka 4.0 removed and Kafka 3.9 served (KIP-896, issue 15).

kafka-python, told the broker's version (`api_version`), sends no ApiVersions request and uses
that version's table: as Kafka 1.0, DescribeConfigs v0 (Sarama 1.22 sends it too); as Kafka
0.8.2, OffsetCommit and OffsetFetch v1 (Sarama 1.22 commits with v1). librdkafka with
`api.version.request=false` and `broker.version.fallback=0.8.2` lists offsets with ListOffsets v0
and commits with OffsetCommit v1."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as RdTopicPartition
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.protocol.broker_version_data import BROKER_API_VERSIONS
from kafka.structs import OffsetAndMetadata

from samsa.protocol.apis import ApiKey
from samsa.testing import EmbeddedBroker

from .support import DEADLINE_S

pytestmark = pytest.mark.interop

TOPIC = "old-clients"
KAFKA_1_0 = (1, 0)
KAFKA_0_8_2 = (0, 8, 2)


def _max_version(broker_version: tuple[int, ...], api_key: ApiKey) -> int:
    return int(BROKER_API_VERSIONS[broker_version][api_key][1])


def test_the_pinned_versions_are_the_removed_ones() -> None:
    assert _max_version(KAFKA_1_0, ApiKey.DESCRIBE_CONFIGS) == 0
    assert _max_version(KAFKA_0_8_2, ApiKey.OFFSET_COMMIT) == 1
    assert _max_version(KAFKA_0_8_2, ApiKey.OFFSET_FETCH) == 1


def test_a_kafka_1_0_client_produces_consumes_commits_and_describes_configs(
    samsa_broker: EmbeddedBroker,
) -> None:
    bootstrap = samsa_broker.bootstrap
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, api_version=KAFKA_1_0)
    try:
        admin.create_topics([NewTopic(TOPIC, 2, 1, topic_configs={"retention.ms": "3600000"})])
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC)])
    finally:
        admin.close()
    configs = described["topic"][TOPIC]
    assert configs["retention.ms"]["value"] == "3600000"
    assert configs["cleanup.policy"]["value"] == "delete"
    # v0 carries no source: Kafka 3.9 sends IsDefault false, which the client reads as set.
    assert not any(c["is_default"] for c in configs.values())

    producer = KafkaProducer(bootstrap_servers=bootstrap, api_version=KAFKA_1_0, acks="all")
    try:
        for i in range(20):
            producer.send(TOPIC, key=b"k", value=f"v{i}".encode(), partition=i % 2)
        producer.flush(timeout=DEADLINE_S)
    finally:
        producer.close(timeout=5)

    consumer = KafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        api_version=KAFKA_1_0,
        group_id="old-1-0",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        consumer_timeout_ms=int(DEADLINE_S * 1000),
    )
    try:
        values = []
        for message in consumer:
            values.append(message.value)
            if len(values) == 20:
                break
        consumer.commit()
        committed = {p: consumer.committed(TopicPartition(TOPIC, p)) for p in range(2)}
    finally:
        consumer.close()
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(20))
    assert committed == {0: 10, 1: 10}


def test_a_kafka_0_8_2_client_commits_and_fetches_offsets(samsa_broker: EmbeddedBroker) -> None:
    """OffsetCommit v1 outside any generation, as a "simple" consumer commits, read back with
    OffsetFetch v1; a second group does not see it."""
    admin = KafkaAdminClient(bootstrap_servers=samsa_broker.bootstrap, api_version=KAFKA_1_0)
    try:
        admin.create_topics([NewTopic(TOPIC, 2, 1)])
    finally:
        admin.close()

    def consumer(group: str) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=samsa_broker.bootstrap,
            api_version=KAFKA_0_8_2,
            group_id=group,
            enable_auto_commit=False,
        )

    partition = TopicPartition(TOPIC, 1)
    first = consumer("old-0-8-2")
    try:
        first.commit({partition: OffsetAndMetadata(7, "from 0.8.2", -1)})
        assert first.committed(partition) == 7
        assert first.committed(TopicPartition(TOPIC, 0)) is None
    finally:
        first.close()
    other = consumer("another")
    try:
        assert other.committed(partition) is None
    finally:
        other.close()


def test_librdkafka_as_for_kafka_0_8_2_lists_and_commits_offsets(
    samsa_broker: EmbeddedBroker,
) -> None:
    bootstrap = samsa_broker.bootstrap
    producer = Producer({"bootstrap.servers": bootstrap})  # current versions: v0-2 are gone
    for _ in range(5):
        producer.produce(TOPIC, b"x", partition=0)
    assert producer.flush(DEADLINE_S) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "old-rdkafka",
            "api.version.request": False,
            "broker.version.fallback": "0.8.2",
            "enable.auto.commit": False,
        }
    )
    try:
        partition = RdTopicPartition(TOPIC, 0)
        assert consumer.get_watermark_offsets(partition, timeout=DEADLINE_S) == (0, 5)
        [committed] = consumer.commit(offsets=[RdTopicPartition(TOPIC, 0, 4)], asynchronous=False)
        assert committed.error is None
        [read] = consumer.committed([partition], timeout=DEADLINE_S)
        assert (read.offset, read.error) == (4, None)
    finally:
        consumer.close()
