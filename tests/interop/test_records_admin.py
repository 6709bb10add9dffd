"""The admin calls real clients make that samsa once did not serve (issue 15): DeleteRecords,
DescribeLogDirs, DescribeTopicPartitions, ListGroups v5's type filter, and Metadata v10's
cluster authorized operations (librdkafka's describe_cluster)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import (
    OFFSET_END,
    Consumer,
    ConsumerGroupState,
    ConsumerGroupType,
    IsolationLevel,
    KafkaError,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AclOperation, AdminClient, OffsetSpec
from kafka import KafkaAdminClient
from kafka import TopicPartition as KafkaTopicPartition
from kio.schema.errors import ErrorCode
from kio.schema.list_groups.v5.request import ListGroupsRequest

from samsa.testing import EmbeddedBroker
from samsa.testing.wire import Conn

from .support import DEADLINE_S, admin_error_code, create_topic

pytestmark = pytest.mark.interop


@pytest.fixture
def admin(samsa_broker: EmbeddedBroker) -> AdminClient:
    return AdminClient({"bootstrap.servers": samsa_broker.bootstrap})


def produce(bootstrap: str, topic: str, count: int, **config: object) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, **config})
    for i in range(count):
        producer.produce(topic, value=f"v{i}".encode(), partition=0)
    assert producer.flush(DEADLINE_S) == 0


def consume(bootstrap: str, topic: str, count: int, **config: object) -> list[int]:
    """The offsets a new group's consumer (auto.offset.reset=earliest) reads from partition 0."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic}-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            **config,
        }
    )
    consumer.assign([TopicPartition(topic, 0)])
    read: list[int] = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while len(read) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                offset = message.offset()
                assert offset is not None
                read.append(offset)
    finally:
        consumer.close()
    return read


def earliest(admin: AdminClient, topic: str) -> int:
    tp = TopicPartition(topic, 0)
    offset: int = admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result(DEADLINE_S).offset
    return offset


# ----------------------------------------------------------------- DeleteRecords
def test_delete_records_and_consumers_start_at_the_new_log_start(
    samsa_broker: EmbeddedBroker, admin: AdminClient
) -> None:
    bootstrap = samsa_broker.bootstrap
    create_topic(bootstrap, "deleted", partitions=1)
    produce(bootstrap, "deleted", 10)
    futures = admin.delete_records([TopicPartition("deleted", 0, 4)])
    (result,) = (f.result(DEADLINE_S) for f in futures.values())
    assert result.low_watermark == 4
    assert earliest(admin, "deleted") == 4
    assert consume(bootstrap, "deleted", 6) == [4, 5, 6, 7, 8, 9]
    # OFFSET_END (-1): up to the high watermark.
    futures = admin.delete_records([TopicPartition("deleted", 0, OFFSET_END)])
    (result,) = (f.result(DEADLINE_S) for f in futures.values())
    assert result.low_watermark == 10
    produce(bootstrap, "deleted", 2)
    assert consume(bootstrap, "deleted", 2) == [10, 11]


def test_delete_records_errors(samsa_broker: EmbeddedBroker, admin: AdminClient) -> None:
    create_topic(samsa_broker.bootstrap, "few", partitions=1)
    produce(samsa_broker.bootstrap, "few", 3)
    futures = admin.delete_records([TopicPartition("few", 0, 4)])
    assert admin_error_code(next(iter(futures.values()))) == KafkaError.OFFSET_OUT_OF_RANGE
    assert earliest(admin, "few") == 0


def test_delete_records_into_an_open_transaction(
    samsa_broker: EmbeddedBroker, admin: AdminClient
) -> None:
    """Kafka bounds DeleteRecords by the high watermark, not the last stable offset; the LSO
    then moves up to the log start, and read_committed readers start there."""
    bootstrap = samsa_broker.bootstrap
    create_topic(bootstrap, "txn-cut", partitions=1)
    produce(bootstrap, "txn-cut", 2)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "cut"})
    producer.init_transactions(DEADLINE_S)
    producer.begin_transaction()
    for i in range(4):
        producer.produce("txn-cut", value=f"t{i}".encode(), partition=0)
    assert producer.flush(DEADLINE_S) == 0  # offsets 2-5, open

    futures = admin.delete_records([TopicPartition("txn-cut", 0, 4)])
    (result,) = (f.result(DEADLINE_S) for f in futures.values())
    assert result.low_watermark == 4
    tp = TopicPartition("txn-cut", 0)
    latest = admin.list_offsets(
        {tp: OffsetSpec.latest()}, isolation_level=IsolationLevel.READ_COMMITTED
    )[tp].result(DEADLINE_S)
    assert latest.offset == 4  # the LSO: not below the log start (it was 2)

    producer.commit_transaction(DEADLINE_S)
    assert consume(bootstrap, "txn-cut", 2, **{"isolation.level": "read_committed"}) == [4, 5]


def test_kafka_python_delete_records_and_describe_log_dirs(
    samsa_broker: EmbeddedBroker,
) -> None:
    bootstrap = samsa_broker.bootstrap
    create_topic(bootstrap, "kp", partitions=2)
    produce(bootstrap, "kp", 5)
    client = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        deleted = client.delete_records({KafkaTopicPartition("kp", 0): 3})
        assert deleted[KafkaTopicPartition("kp", 0)]["low_watermark"] == 3
        (broker,) = client.describe_log_dirs()
        (log_dir,) = broker["log_dirs"]
        assert log_dir["error_code"] == 0 and log_dir["log_dir"] == samsa_broker.data_dir
        sizes = {
            p["partition_index"]: p["partition_size"]
            for t in log_dir["topics"]
            if t["name"] == "kp"
            for p in t["partitions"]
        }
        assert sizes[0] > 0 and sizes[1] == 0
        described = client.describe_topic_partitions(["kp", "unknown-topic"])
        topics = {t["name"]: t for t in described["topics"]}
        assert [p["partition_index"] for p in topics["kp"]["partitions"]] == [0, 1]
        assert topics["unknown-topic"]["error_code"] == KafkaError.UNKNOWN_TOPIC_OR_PART
    finally:
        client.close()
    assert consume(bootstrap, "kp", 2) == [3, 4]


# ----------------------------------------------------------------- describe
def test_describe_cluster_with_authorized_operations(admin: AdminClient) -> None:
    """librdkafka asks with Metadata v10 (the flag's last version): before, samsa dropped it."""
    described = admin.describe_cluster(include_authorized_operations=True).result(DEADLINE_S)
    assert set(described.authorized_operations) == {
        AclOperation.CREATE,
        AclOperation.ALTER,
        AclOperation.DESCRIBE,
        AclOperation.CLUSTER_ACTION,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
        AclOperation.IDEMPOTENT_WRITE,
    }
    plain = admin.describe_cluster(include_authorized_operations=False).result(DEADLINE_S)
    assert plain.authorized_operations is None


def test_describe_topics(samsa_broker: EmbeddedBroker, admin: AdminClient) -> None:
    create_topic(samsa_broker.bootstrap, "described", partitions=3)
    futures = admin.describe_topics(
        TopicCollection(["described"]), include_authorized_operations=True
    )
    described = futures["described"].result(DEADLINE_S)
    assert [p.id for p in described.partitions] == [0, 1, 2]
    assert AclOperation.DELETE in described.authorized_operations


# ----------------------------------------------------------------- ListGroups
@pytest.fixture
def stable_group(samsa_broker: EmbeddedBroker) -> Iterator[str]:
    bootstrap = samsa_broker.bootstrap
    create_topic(bootstrap, "grouped", partitions=1)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "listed"})
    consumer.subscribe(["grouped"])
    deadline = time.monotonic() + DEADLINE_S
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.2)
    assert consumer.assignment(), "the consumer never joined its group"
    yield "listed"
    consumer.close()


def test_list_consumer_groups_by_type(admin: AdminClient, stable_group: str) -> None:
    def listed(**filters: object) -> dict[str, object]:
        result = admin.list_consumer_groups(request_timeout=DEADLINE_S, **filters)
        return {g.group_id: g for g in result.result(DEADLINE_S).valid}

    group = listed()[stable_group]
    assert group.type == ConsumerGroupType.CLASSIC  # type: ignore[attr-defined]
    assert group.state == ConsumerGroupState.STABLE  # type: ignore[attr-defined]
    assert stable_group in listed(types={ConsumerGroupType.CLASSIC})
    assert stable_group not in listed(types={ConsumerGroupType.CONSUMER})
    assert stable_group in listed(states={ConsumerGroupState.STABLE})
    assert stable_group not in listed(states={ConsumerGroupState.EMPTY})
    assert stable_group in listed(
        types={ConsumerGroupType.CLASSIC}, states={ConsumerGroupState.STABLE}
    )


def test_list_groups_filters_ignore_case(samsa_broker: EmbeddedBroker, stable_group: str) -> None:
    """As Kafka's GroupMetadataManager.listGroups: " stable " finds Stable groups (v4+), "CLASSIC"
    classic ones (v5), and a type Kafka does not know finds none."""
    with Conn(samsa_broker.bootstrap) as conn:
        for states, types, found in (
            ((" stable ",), (), True),
            (("STABLE",), ("CLASSIC",), True),
            ((), ("Classic", "share"), True),
            ((), ("no-such-type",), False),
            (("empty",), (), False),
        ):
            answer = conn.request(ListGroupsRequest(states_filter=states, types_filter=types))
            assert answer.error_code == ErrorCode.none
            listed = {g.group_id: g for g in answer.groups}
            assert (stable_group in listed) == found, (states, types)
            if found:
                assert listed[stable_group].group_type == "classic"
                assert listed[stable_group].group_state == "Stable"
