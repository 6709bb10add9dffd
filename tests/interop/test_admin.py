"""The admin surface through confluent-kafka's AdminClient, and the errors producers see:
create/delete topics, create partitions, describe configs and cluster, list offsets, topic
auto-creation, and oversized batches."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)
from kafka import KafkaProducer
from kafka.errors import UnknownTopicOrPartitionError
from kio.schema.describe_cluster.v1.request import DescribeClusterRequest

from samsa.testing import EmbeddedBroker
from samsa.testing.wire import Conn

from .support import DEADLINE_S, admin_error_code, create_topic

pytestmark = pytest.mark.interop


@pytest.fixture
def admin(samsa_broker: EmbeddedBroker) -> AdminClient:
    return AdminClient({"bootstrap.servers": samsa_broker.bootstrap})


def topic_names(admin: AdminClient) -> set[str]:
    """The topics Metadata lists, less the broker's internal ones (`__consumer_offsets`...)."""
    topics = admin.list_topics(timeout=DEADLINE_S).topics
    return {name for name in topics if not name.startswith("__")}


def produce_one(
    bootstrap: str,
    topic: str,
    value: bytes,
    partition: int = -1,
    timestamp: int = 0,
    **config: Any,
) -> tuple[KafkaError | None, int | None, int | None]:
    """Produce one record and wait for its delivery report: (error, partition, offset); the
    offset is None when the record was refused."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **config})
    reports: list[tuple[KafkaError | None, int | None, int | None]] = []
    producer.produce(
        topic,
        value=value,
        partition=partition,
        timestamp=timestamp,
        on_delivery=lambda err, msg: reports.append((err, msg.partition(), msg.offset())),
    )
    left = producer.flush(DEADLINE_S)
    assert left == 0, f"no delivery report for a record to {topic} in {DEADLINE_S} s"
    assert len(reports) == 1
    return reports[0]


def list_offsets(admin: AdminClient, requests: dict[TopicPartition, Any]) -> dict[int, Any]:
    """ListOffsets results by partition (each has .offset and .timestamp)."""
    futures = admin.list_offsets(requests, request_timeout=DEADLINE_S)
    return {tp.partition: future.result(timeout=DEADLINE_S) for tp, future in futures.items()}


# ----------------------------------------------------------------- CreateTopics
def test_create_topics(samsa_broker: EmbeddedBroker, admin: AdminClient) -> None:
    futures = admin.create_topics(
        [
            NewTopic("created", num_partitions=3, replication_factor=1),
            NewTopic("created-defaults"),  # partitions and replication from the broker
            NewTopic("created-configured", 2, 1, config={"retention.ms": "123456"}),
        ],
        request_timeout=DEADLINE_S,
    )
    for name, future in futures.items():
        assert future.result(timeout=DEADLINE_S) is None, name
    topics = admin.list_topics(timeout=DEADLINE_S).topics
    assert len(topics["created"].partitions) == 3
    assert len(topics["created-defaults"].partitions) == 1  # num.partitions defaults to 1
    assert len(topics["created-configured"].partitions) == 2
    for name in ("created", "created-defaults", "created-configured"):
        for partition in topics[name].partitions.values():
            assert partition.leader == 1
            assert partition.replicas == [1]
            assert partition.isrs == [1]
    # The topic exists on disk, one directory per partition.
    for index in range(3):
        assert os.path.isdir(os.path.join(samsa_broker.data_dir, f"created-{index}"))


def test_create_topics_errors(admin: AdminClient) -> None:
    create_topic(admin_bootstrap(admin), "existing")
    futures = admin.create_topics(
        [
            NewTopic("bad name!", 1, 1),
            NewTopic("existing", 1, 1),
            NewTopic("three-replicas", 1, 3),
            NewTopic("x" * 250, 1, 1),  # one character over the limit
        ],
        request_timeout=DEADLINE_S,
    )
    assert admin_error_code(futures["bad name!"]) == KafkaError.TOPIC_EXCEPTION
    assert admin_error_code(futures["existing"]) == KafkaError.TOPIC_ALREADY_EXISTS
    assert admin_error_code(futures["three-replicas"]) == KafkaError.INVALID_REPLICATION_FACTOR
    assert admin_error_code(futures["x" * 250]) == KafkaError.TOPIC_EXCEPTION
    assert topic_names(admin) == {"existing"}, "a failed CreateTopics left a topic behind"


def test_create_topics_validate_only(admin: AdminClient) -> None:
    futures = admin.create_topics(
        [NewTopic("only-validated", 2, 1), NewTopic("invalid/name", 1, 1)],
        validate_only=True,
        request_timeout=DEADLINE_S,
    )
    assert futures["only-validated"].result(timeout=DEADLINE_S) is None
    assert admin_error_code(futures["invalid/name"]) == KafkaError.TOPIC_EXCEPTION
    assert "only-validated" not in topic_names(admin)


def admin_bootstrap(admin: AdminClient) -> str:
    broker = next(iter(admin.list_topics(timeout=DEADLINE_S).brokers.values()))
    return f"{broker.host}:{broker.port}"


# ----------------------------------------------------------------- DeleteTopics
def test_delete_topics(samsa_broker: EmbeddedBroker, admin: AdminClient) -> None:
    bootstrap = samsa_broker.bootstrap
    create_topic(bootstrap, "doomed", partitions=2)
    create_topic(bootstrap, "survivor", partitions=1)
    error, _, offset = produce_one(bootstrap, "doomed", b"gone soon", partition=1)
    assert error is None and offset == 0

    futures = admin.delete_topics(["doomed", "never-existed"], request_timeout=DEADLINE_S)
    assert futures["doomed"].result(timeout=DEADLINE_S) is None
    assert admin_error_code(futures["never-existed"]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert topic_names(admin) == {"survivor"}
    assert not os.path.exists(os.path.join(samsa_broker.data_dir, "doomed-1"))

    # Deleted means deleted: a new topic of the same name starts empty.
    create_topic(bootstrap, "doomed", partitions=2)
    ends = list_offsets(admin, {TopicPartition("doomed", 1): OffsetSpec.latest()})
    assert ends[1].offset == 0


# ----------------------------------------------------------------- CreatePartitions
def test_create_partitions(samsa_broker: EmbeddedBroker, admin: AdminClient) -> None:
    bootstrap = samsa_broker.bootstrap
    create_topic(bootstrap, "growing", partitions=3)
    error, _, _ = produce_one(bootstrap, "growing", b"before", partition=2)
    assert error is None

    futures = admin.create_partitions([NewPartitions("growing", 5)], request_timeout=DEADLINE_S)
    assert futures["growing"].result(timeout=DEADLINE_S) is None
    assert (
        len(admin.list_topics(topic="growing", timeout=DEADLINE_S).topics["growing"].partitions)
        == 5
    )
    error, partition, offset = produce_one(bootstrap, "growing", b"new partition", partition=4)
    assert (error, partition, offset) == (None, 4, 0)

    futures = admin.create_partitions(
        [NewPartitions("growing", 4), NewPartitions("growing-unknown", 2)],
        request_timeout=DEADLINE_S,
    )
    assert admin_error_code(futures["growing"]) == KafkaError.INVALID_PARTITIONS
    assert admin_error_code(futures["growing-unknown"]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert (
        len(admin.list_topics(topic="growing", timeout=DEADLINE_S).topics["growing"].partitions)
        == 5
    )
    # The existing partitions kept their records.
    ends = list_offsets(admin, {TopicPartition("growing", 2): OffsetSpec.latest()})
    assert ends[2].offset == 1


# ----------------------------------------------------------------- DescribeConfigs
def describe(admin: AdminClient, resource: ConfigResource) -> dict[str, Any]:
    futures = admin.describe_configs([resource], request_timeout=DEADLINE_S)
    result: dict[str, Any] = futures[resource].result(timeout=DEADLINE_S)
    return result


def test_describe_topic_configs(samsa_broker: EmbeddedBroker, admin: AdminClient) -> None:
    create_topic(samsa_broker.bootstrap, "configured", 1, config={"retention.ms": "123456"})
    create_topic(samsa_broker.bootstrap, "plain", 1)
    configured = describe(admin, ConfigResource(ResourceType.TOPIC, "configured"))
    plain = describe(admin, ConfigResource(ResourceType.TOPIC, "plain"))

    assert configured["retention.ms"].value == "123456"
    assert configured["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # Not overridden: the broker's value, from its defaults.
    week_ms = str(7 * 24 * 3600 * 1000)
    assert plain["retention.ms"].value == week_ms
    assert plain["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configured["segment.bytes"].value == str(1 << 30)
    assert plain["cleanup.policy"].value == "delete"
    assert set(configured) == set(plain)

    missing = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, "no-such-topic")], request_timeout=DEADLINE_S
    )
    assert admin_error_code(next(iter(missing.values()))) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_describe_broker_configs(tmp_path: Any) -> None:
    settings = {"message.max.bytes": "2000000", "num.partitions": "4"}
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), settings=settings) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        configs = describe(admin, ConfigResource(ResourceType.BROKER, "1"))
        assert configs["message.max.bytes"].value == "2000000"
        assert configs["num.partitions"].value == "4"
        assert configs["auto.create.topics.enable"].value == "true"
        assert configs["num.partitions"].source == ConfigSource.STATIC_BROKER_CONFIG.value
        # A topic created without overrides inherits the broker's message.max.bytes.
        create_topic(broker.bootstrap, "inherits", 1)
        topic = describe(admin, ConfigResource(ResourceType.TOPIC, "inherits"))
        assert topic["max.message.bytes"].value == "2000000"


# ----------------------------------------------------------------- DescribeCluster
def test_describe_cluster(samsa_broker: EmbeddedBroker, admin: AdminClient) -> None:
    cluster = admin.describe_cluster(request_timeout=DEADLINE_S).result(timeout=DEADLINE_S)
    assert cluster.cluster_id, "empty cluster id"
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [
        (1, samsa_broker.host, samsa_broker.port)
    ]
    assert cluster.controller is not None and cluster.controller.id == 1
    # The same id Metadata hands out, and the one stored in the data dir.
    assert admin.list_topics(timeout=DEADLINE_S).cluster_id == cluster.cluster_id
    with open(os.path.join(samsa_broker.data_dir, "meta.properties")) as file:
        assert f"cluster.id={cluster.cluster_id}" in file.read().splitlines()


# ----------------------------------------------------------------- ListOffsets
BASE_TIMESTAMP = 1_700_000_000_000


def produce_timed(
    bootstrap: str, topic: str, count: int, one_batch_each: bool, compression: str = "none"
) -> None:
    """`count` records on partition 0 with timestamps BASE, BASE+10, ... BASE+10*(count-1)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 50,
            "compression.type": compression,
        }
    )
    errors: list[Any] = []
    for i in range(count):
        producer.produce(
            topic,
            value=f"v{i}".encode() * (50 if compression != "none" else 1),
            partition=0,
            timestamp=BASE_TIMESTAMP + 10 * i,
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
        if one_batch_each:
            assert producer.flush(DEADLINE_S) == 0
    assert producer.flush(DEADLINE_S) == 0
    assert not errors, errors


def offsets_of(admin: AdminClient, topic: str, spec: Any, partition: int = 0) -> tuple[int, int]:
    result = list_offsets(admin, {TopicPartition(topic, partition): spec})[partition]
    return result.offset, result.timestamp


def test_list_offsets(samsa_broker: EmbeddedBroker, admin: AdminClient) -> None:
    # One record per batch here; test_list_offsets_by_timestamp_inside_a_batch looks inside.
    create_topic(samsa_broker.bootstrap, "timed", partitions=2)
    produce_timed(samsa_broker.bootstrap, "timed", 30, one_batch_each=True)
    base = BASE_TIMESTAMP

    def offsets(spec: Any, partition: int = 0) -> tuple[int, int]:
        return offsets_of(admin, "timed", spec, partition)

    assert offsets(OffsetSpec.earliest())[0] == 0
    assert offsets(OffsetSpec.latest())[0] == 30
    assert offsets(OffsetSpec.for_timestamp(0)) == (0, base)
    assert offsets(OffsetSpec.for_timestamp(base)) == (0, base)
    # The first record at or after the timestamp.
    assert offsets(OffsetSpec.for_timestamp(base + 205)) == (21, base + 210)
    assert offsets(OffsetSpec.for_timestamp(base + 290)) == (29, base + 290)
    assert offsets(OffsetSpec.for_timestamp(base + 291))[0] == -1  # none that late
    assert offsets(OffsetSpec.max_timestamp()) == (29, base + 290)
    # The empty partition.
    assert offsets(OffsetSpec.earliest(), 1)[0] == 0
    assert offsets(OffsetSpec.latest(), 1)[0] == 0
    assert offsets(OffsetSpec.for_timestamp(base), 1)[0] == -1

    futures = admin.list_offsets(
        {TopicPartition("timed", 7): OffsetSpec.latest()}, request_timeout=DEADLINE_S
    )
    admin_error_code(next(iter(futures.values())))  # fails: the partition does not exist


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_list_offsets_by_timestamp_inside_a_batch(
    samsa_broker: EmbeddedBroker, admin: AdminClient, compression: str
) -> None:
    """Kafka answers with the first *record* at or after the timestamp, also inside one
    (possibly compressed) batch, and with the record holding the largest timestamp."""
    topic = f"batched-{compression}"
    create_topic(samsa_broker.bootstrap, topic, partitions=1)
    produce_timed(samsa_broker.bootstrap, topic, 30, one_batch_each=False, compression=compression)
    assert offsets_of(admin, topic, OffsetSpec.latest())[0] == 30
    codecs = stored_codecs(samsa_broker, topic)
    assert len(codecs) < 30, "the records were not batched"
    assert set(codecs) == {CODECS[compression]}, codecs
    target = OffsetSpec.for_timestamp(BASE_TIMESTAMP + 205)
    assert offsets_of(admin, topic, target) == (21, BASE_TIMESTAMP + 210)
    assert offsets_of(admin, topic, OffsetSpec.max_timestamp()) == (29, BASE_TIMESTAMP + 290)


CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def stored_codecs(broker: EmbeddedBroker, topic: str) -> list[int]:
    """The compression codec of each batch samsa stored."""
    log = broker.server.broker.topics.partition(topic, 0) if broker.server else None
    assert log is not None
    return [header.compression for segment in log.segments for _, header in segment.batches()]


# ----------------------------------------------------------------- auto-creation
@pytest.fixture
def broker_without_auto_create(tmp_path: Any) -> Iterator[EmbeddedBroker]:
    settings = {"auto.create.topics.enable": "false"}
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), settings=settings) as broker:
        yield broker


def test_produce_to_unknown_topic_without_auto_create(
    broker_without_auto_create: EmbeddedBroker,
) -> None:
    bootstrap = broker_without_auto_create.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(topic="nowhere", timeout=DEADLINE_S)
    error = metadata.topics["nowhere"].error
    assert error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    error, _, _ = produce_one(
        bootstrap,
        "nowhere",
        b"lost",
        # librdkafka holds records for a topic it has not seen for this long before failing them.
        **{"topic.metadata.propagation.max.ms": 200, "message.timeout.ms": 10_000},
    )
    assert error is not None, "produce to a missing topic succeeded"
    assert error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, error
    assert "nowhere" not in topic_names(admin)
    # Explicit creation still works.
    create_topic(bootstrap, "somewhere", 1)
    assert produce_one(bootstrap, "somewhere", b"kept")[0] is None


def test_produce_request_to_deleted_topic(broker_without_auto_create: EmbeddedBroker) -> None:
    """The Produce response itself says UNKNOWN_TOPIC_OR_PARTITION (librdkafka checks metadata
    first; kafka-python sends on its cached metadata, and with retries=0 reports the answer)."""
    bootstrap = broker_without_auto_create.bootstrap
    create_topic(bootstrap, "vanishing", 1)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=0)
    try:
        assert producer.send("vanishing", b"kept").get(timeout=DEADLINE_S).offset == 0
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.delete_topics(["vanishing"])["vanishing"].result(timeout=DEADLINE_S)
        with pytest.raises(UnknownTopicOrPartitionError):
            producer.send("vanishing", b"lost").get(timeout=DEADLINE_S)
    finally:
        producer.close(timeout=5)
    assert "vanishing" not in topic_names(admin), "Produce re-created a deleted topic"


def test_metadata_auto_creates_topics(tmp_path: Any) -> None:
    settings = {"num.partitions": "2"}
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), settings=settings) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        assert "auto-created" not in topic_names(admin)
        error, partition, offset = produce_one(broker.bootstrap, "auto-created", b"first")
        assert error is None, error
        assert offset == 0
        topic = admin.list_topics(topic="auto-created", timeout=DEADLINE_S).topics["auto-created"]
        assert topic.error is None
        assert len(topic.partitions) == 2  # num.partitions
        assert partition in (0, 1)
        # An illegal name is refused, not created.
        metadata = admin.list_topics(topic="bad name", timeout=DEADLINE_S)
        error = metadata.topics["bad name"].error
        assert error is not None and error.code() == KafkaError.TOPIC_EXCEPTION
        assert topic_names(admin) == {"auto-created"}


# ----------------------------------------------------------------- message.max.bytes
def test_message_too_large(tmp_path: Any) -> None:
    settings = {"message.max.bytes": "10000"}
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), settings=settings) as broker:
        bootstrap = broker.bootstrap
        create_topic(bootstrap, "limited", 1)
        create_topic(bootstrap, "roomy", 1, config={"max.message.bytes": "100000"})
        big = os.urandom(20_000)  # incompressible anyway; sent uncompressed

        error, _, _ = produce_one(bootstrap, "limited", big)
        assert error is not None, "a 20 kB batch was accepted with message.max.bytes=10000"
        assert error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error
        # The topic-level override raises the limit for that topic only.
        assert produce_one(bootstrap, "roomy", big)[0] is None
        # A small record still goes through, at offset 0: nothing of the big one was stored.
        error, _, offset = produce_one(bootstrap, "limited", b"small")
        assert (error, offset) == (None, 0)


def test_authorized_operations_are_every_supported_one_without_an_authorizer(
    samsa_broker: EmbeddedBroker, admin: AdminClient
) -> None:
    """As Kafka without an authorizer (librdkafka's test 0081): asked for, the authorized
    operations are all that the resource type supports. Before: none were returned."""
    create_topic(samsa_broker.bootstrap, "described", 1)
    topic = admin.describe_topics(
        TopicCollection(["described"]), include_authorized_operations=True
    )["described"].result(timeout=DEADLINE_S)
    assert {op.name for op in topic.authorized_operations} == {
        "READ",
        "WRITE",
        "CREATE",
        "DELETE",
        "ALTER",
        "DESCRIBE",
        "DESCRIBE_CONFIGS",
        "ALTER_CONFIGS",
    }
    group = admin.describe_consumer_groups(["nobody-here"], include_authorized_operations=True)[
        "nobody-here"
    ].result(timeout=DEADLINE_S)
    assert {op.name for op in group.authorized_operations} == {"READ", "DELETE", "DESCRIBE"}
    # DescribeCluster (librdkafka's describe_cluster asks Metadata v10 instead, which samsa does
    # not answer with cluster operations yet: issue 15).
    with Conn(samsa_broker.bootstrap) as conn:
        cluster = conn.request(DescribeClusterRequest(include_cluster_authorized_operations=True))
        no_ops = conn.request(DescribeClusterRequest(include_cluster_authorized_operations=False))
    # CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE
    assert cluster.cluster_authorized_operations == sum(1 << c for c in (5, 7, 8, 9, 10, 11, 12))
    assert no_ops.cluster_authorized_operations == -(2**31)
