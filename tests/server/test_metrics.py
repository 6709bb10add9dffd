"""The Prometheus endpoint of a real broker, scraped over HTTP and read with prometheus_client's
exposition-format parser, after real clients produced, consumed, transacted and committed."""

from __future__ import annotations

import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from samsa.testing import EmbeddedBroker
from samsa.testing.topics import create_topic

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(settings={"prometheus.listener": "127.0.0.1:0"}) as running:
        yield running


def scrape(broker: EmbeddedBroker) -> Samples:
    assert broker.server is not None and broker.server.exporter is not None
    url = f"http://127.0.0.1:{broker.server.exporter.port}/metrics"
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every label set that includes `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and wanted <= got)


def eventually(broker: EmbeddedBroker, check: Callable[[Samples], bool]) -> Samples:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        samples = scrape(broker)
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.02)


def topic_name() -> str:
    return f"metrics-{uuid.uuid4().hex[:8]}"


def test_produce_requests_are_counted_one_by_one_with_their_latency(broker: EmbeddedBroker) -> None:
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    producer.produce(topic, b"warm-up")
    producer.flush(TIMEOUT_S)
    before = scrape(broker)
    requests = 7
    for i in range(requests):
        producer.produce(topic, f"value-{i}".encode())
        producer.flush(TIMEOUT_S)  # one Produce request each
    after = scrape(broker)
    name = "samsa_request_duration_seconds_count"
    assert total(after, name, api="Produce") - total(before, name, api="Produce") == requests
    assert value(after, name, api="Produce", error="NONE") >= requests
    # Every one was answered within the slowest bucket, and took some time.
    buckets = "samsa_request_duration_seconds_bucket"
    assert value(after, buckets, api="Produce", error="NONE", le="+Inf") == value(
        after, name, api="Produce", error="NONE"
    )
    assert value(after, "samsa_request_duration_seconds_sum", api="Produce", error="NONE") > 0
    # acks=all waits for an fsync: the group commit timed them.
    assert value(after, "samsa_fsync_duration_seconds_count") > value(
        before, "samsa_fsync_duration_seconds_count"
    )
    assert value(after, "samsa_bytes_received_total") > value(before, "samsa_bytes_received_total")
    assert value(after, "samsa_bytes_sent_total") > value(before, "samsa_bytes_sent_total")
    assert value(after, "samsa_log_end_offset", topic=topic, partition="0") == requests + 1
    assert value(after, "samsa_high_watermark", topic=topic, partition="0") == requests + 1


def test_a_response_s_error_code_labels_its_request(broker: EmbeddedBroker) -> None:
    topic = topic_name()
    create_topic(broker.bootstrap, topic, config={"max.message.bytes": "200"})
    # A partition's error inside a Produce response labels the request.
    producer = Producer({"bootstrap.servers": broker.bootstrap, "retries": 0})
    errors: list[KafkaError | None] = []
    producer.produce(topic, b"x" * 1000, on_delivery=lambda error, _: errors.append(error))
    producer.flush(TIMEOUT_S)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    samples = scrape(broker)
    assert (
        value(
            samples,
            "samsa_request_duration_seconds_count",
            api="Produce",
            error="MESSAGE_TOO_LARGE",
        )
        == 1
    )
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
    future = admin.create_topics([NewTopic(topic, 1, 1)])[topic]
    with pytest.raises(KafkaException, match="already exists"):
        future.result(TIMEOUT_S)
    samples = scrape(broker)
    assert (
        value(
            samples,
            "samsa_request_duration_seconds_count",
            api="CreateTopics",
            error="TOPIC_ALREADY_EXISTS",
        )
        == 1
    )


def test_lso_lag_shows_an_open_transaction_until_it_commits(broker: EmbeddedBroker) -> None:
    topic = topic_name()
    create_topic(broker.bootstrap, topic)
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": f"tx-{topic}", "linger.ms": 0}
    )
    producer.init_transactions(TIMEOUT_S)
    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, f"in-txn-{i}".encode())
    producer.flush(TIMEOUT_S)
    where = {"topic": topic, "partition": "0"}
    samples = eventually(broker, lambda s: value(s, "samsa_high_watermark", **where) == 3)
    assert value(samples, "samsa_last_stable_offset", **where) == 0
    assert value(samples, "samsa_lso_lag", **where) == 3
    assert value(samples, "samsa_transactions_open") >= 1
    assert value(samples, "samsa_transactional_ids", state="Ongoing") >= 1
    assert value(samples, "samsa_producer_ids", **where) == 1
    time.sleep(0.05)
    assert value(scrape(broker), "samsa_transaction_oldest_open_age_seconds") > 0
    producer.commit_transaction(TIMEOUT_S)
    # The COMMIT marker is written after EndTxn is answered: wait for it.
    samples = eventually(broker, lambda s: value(s, "samsa_last_stable_offset", **where) == 4)
    assert value(samples, "samsa_high_watermark", **where) == 4  # 3 records and the marker
    assert value(samples, "samsa_lso_lag", **where) == 0
    assert value(samples, "samsa_transactional_ids", state="CompleteCommit") >= 1


def test_consumer_lag_is_what_was_produced_minus_what_was_committed(
    broker: EmbeddedBroker,
) -> None:
    topic, group = topic_name(), f"group-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    produced, committed = 10, 4
    for i in range(produced):
        producer.produce(topic, f"v{i}".encode())
    producer.flush(TIMEOUT_S)
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        read = 0
        deadline = time.monotonic() + TIMEOUT_S
        while read < committed and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                read += 1
        consumer.commit(offsets=[TopicPartition(topic, 0, committed)], asynchronous=False)
        samples = scrape(broker)
        where = {"group": group, "topic": topic, "partition": "0"}
        assert value(samples, "samsa_consumer_group_committed_offset", **where) == committed
        assert value(samples, "samsa_consumer_group_lag", **where) == produced - committed
        assert value(samples, "samsa_groups", type="classic", state="Stable") >= 1
        assert value(samples, "samsa_connections_open") >= 2
    finally:
        consumer.close()
    samples = eventually(
        broker, lambda s: value(s, "samsa_groups", type="classic", state="Empty") >= 1
    )
    assert value(samples, "samsa_groups", type="classic", state="Empty") >= 1
    assert value(samples, "samsa_connections_closed_total") >= 1
    assert value(samples, "samsa_connections_accepted_total") >= value(
        samples, "samsa_connections_open"
    ) + value(samples, "samsa_connections_closed_total")


def test_connections_refused_over_max_connections_are_counted() -> None:
    settings = {"prometheus.listener": "127.0.0.1:0", "max.connections": "1"}
    with EmbeddedBroker(settings=settings) as limited:
        address = ("127.0.0.1", limited.port)
        with socket.create_connection(address, TIMEOUT_S):
            for _ in range(3):
                with socket.create_connection(address, TIMEOUT_S) as over:
                    over.settimeout(TIMEOUT_S)
                    assert over.recv(1) == b""  # closed at once
            samples = eventually(
                limited, lambda s: value(s, "samsa_connections_accepted_total") == 1
            )
        assert value(samples, "samsa_connections_refused_total") == 3
        assert value(samples, "samsa_connections_open") == 1
        assert value(samples, "samsa_connections_accepted_total") == 1
