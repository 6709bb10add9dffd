"""The console against librdkafka's 3-broker mock cluster: what it can serve, routed to each
partition's leader, and what it says where the mock lacks an API (docs/console.md lists them)."""

from __future__ import annotations

from collections.abc import Iterator

import confluent_kafka
import pytest

from samsa.console.server import ConsoleServer, ConsoleSettings

from .conftest import TEST_POLL_INTERVAL_S, TEST_REQUESTS_PER_S
from .pages import batch_kinds, get, text

TOPIC = "mocked"
PARTITIONS = 4  # what the mock gives an auto-created topic
# The mock places an auto-created topic's leaders at random: all four on one broker once in 27.
CLUSTER_ATTEMPTS = 10


def spread_mock_cluster() -> tuple[confluent_kafka.Producer, str]:
    """A 3-broker mock cluster (its owner, its bootstrap) in which TOPIC, auto-created, has
    leaders on more than one broker, so that reading each partition needs routing."""
    for _ in range(CLUSTER_ATTEMPTS):
        owner = confluent_kafka.Producer({"test.mock.num.brokers": 3, "log_level": 0})
        brokers = owner.list_topics(timeout=10).brokers.values()
        bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers)
        probe = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "log_level": 0})
        partitions = probe.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions
        del probe
        if len({p.leader for p in partitions.values()}) > 1:
            return owner, bootstrap
        del owner
    raise AssertionError(f"{CLUSTER_ATTEMPTS} mock clusters put every leader on one broker")


@pytest.fixture(scope="module")
def mock_console() -> Iterator[ConsoleServer]:
    owner, bootstrap = spread_mock_cluster()
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": "mocked", "log_level": 0}
    )
    producer.init_transactions(15)
    for commit in (True, False):
        producer.begin_transaction()
        for partition in range(PARTITIONS):
            producer.produce(TOPIC, b"kept" if commit else b"dropped", partition=partition)
        producer.flush(15)
        (producer.commit_transaction if commit else producer.abort_transaction)(15)
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "mocked-group", "log_level": 0}
    )
    consumer.commit(offsets=[confluent_kafka.TopicPartition(TOPIC, 0, 1)], asynchronous=False)
    consumer.close()
    settings = ConsoleSettings(
        bootstrap,
        port=0,
        poll_interval_s=TEST_POLL_INTERVAL_S,
        requests_per_s=TEST_REQUESTS_PER_S,
    )
    try:
        with ConsoleServer(settings) as console:
            yield console
    finally:
        producer.flush(5)
        del owner


def test_overview_shows_three_brokers_and_the_leaders(mock_console: ConsoleServer) -> None:
    metadata = mock_console.cluster.metadata()
    assert len(metadata.brokers) == 3
    leaders = {metadata.partitions[(TOPIC, p)].leader for p in range(PARTITIONS)}
    assert len(leaders) > 1  # the partitions are spread, so routing matters
    words = text(get(mock_console.url, "/").body)
    assert "mockCluster" in words and words.count("127.0.0.1:") >= 3


def test_partition_view_from_each_leader(mock_console: ConsoleServer) -> None:
    """Each partition read from its own leader (the others answer NOT_LEADER_OR_FOLLOWER)."""
    for partition in range(PARTITIONS):
        kinds = batch_kinds(get(mock_console.url, f"/topics/{TOPIC}/{partition}").body)
        assert kinds == {0: "committed", 1: "commit-marker", 2: "aborted", 3: "abort-marker"}


def test_mock_markers_fail_their_crc(mock_console: ConsoleServer) -> None:
    """The mock's control batches carry a CRC that does not match; the hover says so."""
    body = get(mock_console.url, f"/topics/{TOPIC}/0?from=0&batch=1").body
    assert "CRC MISMATCH" in text(body)


def test_views_the_mock_cannot_serve_say_which_api_is_missing(
    mock_console: ConsoleServer,
) -> None:
    assert "does not support LIST_TRANSACTIONS (api key 66)" in text(
        get(mock_console.url, "/transactions").body
    )
    assert "does not support DESCRIBE_PRODUCERS (api key 61)" in text(
        get(mock_console.url, "/producers").body
    )
    assert "does not support LIST_GROUPS (api key 16)" in text(
        get(mock_console.url, "/groups").body
    )
    group = text(get(mock_console.url, "/groups/mocked-group").body)
    assert "does not support DESCRIBE_GROUPS (api key 15)" in group
    # OffsetFetch the mock has: the committed offset and its lag still show.
    assert f"{TOPIC}-0 1 4 4 3 3" in group
