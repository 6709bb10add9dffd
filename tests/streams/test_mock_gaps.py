"""The two gaps of librdkafka's mock cluster that keep exactly_once recovery tests off it
(docs/streams.md). Each test checks the gap, on the mock and, as a control, on samsa, where
the opposite must hold. If the mock is fixed, the mock case fails: update the docs."""

from __future__ import annotations

import confluent_kafka
import pytest

from . import support


def _consumer(bootstrap: str, group: str, **extra: object) -> confluent_kafka.Consumer:
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "log_level": 0,
    }
    config.update(extra)
    return confluent_kafka.Consumer(config)


def test_transactional_offset_commit_is_kept(backend: support.Backend) -> None:
    topic = "gap-offsets"
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": backend.bootstrap, "transactional.id": "gap", "log_level": 0}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, b"x", partition=0)
    consumer = _consumer(backend.bootstrap, "gap-group")
    consumer.subscribe([topic])
    for _ in range(100):
        if consumer.assignment():
            break
        consumer.consume(1, 0.1)
    assert consumer.assignment(), "no assignment"
    offsets = [confluent_kafka.TopicPartition(topic, 0, 1)]
    producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
    producer.commit_transaction(30)
    committed = consumer.committed([confluent_kafka.TopicPartition(topic, 0)], timeout=10)
    consumer.close()
    if backend.name == "mock":
        assert committed[0].offset == confluent_kafka.OFFSET_INVALID  # dropped
    else:
        assert committed[0].offset == 1


@pytest.mark.parametrize("isolation", ["read_committed"])
def test_read_committed_hides_aborted_records(backend: support.Backend, isolation: str) -> None:
    topic = "gap-aborted"
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": backend.bootstrap, "transactional.id": "gap2", "log_level": 0}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, b"aborted", partition=0)
    assert producer.flush(30) == 0  # written to the log, not just purged from the queue
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, b"committed", partition=0)
    producer.commit_transaction(30)
    values = [v for _p, _k, v in support.read_all(backend.bootstrap, topic, isolation, 1.5)]
    if backend.name == "mock":
        assert values == [b"aborted", b"committed"]  # the mock shows the aborted record
    else:
        assert values == [b"committed"]
