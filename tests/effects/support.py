"""Kafka helpers for the effects tests: confluent-kafka against the embedded samsa broker."""

from __future__ import annotations

import json
import uuid
from typing import Any

import confluent_kafka

from samsa.testing import topics

QUIET = {"log_level": 0}


def create_topic(bootstrap: str, partitions: int = 1) -> str:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    topics.create_topic(bootstrap, topic, partitions)
    return topic


def produce(bootstrap: str, topic: str, values: list[dict[str, Any]], partition: int = 0) -> None:
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, **QUIET}
    )
    for value in values:
        producer.produce(topic, json.dumps(value).encode(), partition=partition)
    assert producer.flush(15) == 0


def consumer(bootstrap: str, group: str, **extra: Any) -> confluent_kafka.Consumer:
    return confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            **QUIET,
            **extra,
        }
    )


def committed(bootstrap: str, group: str, topic: str, partition: int = 0) -> int:
    probe = consumer(bootstrap, group)
    try:
        [tp] = probe.committed([confluent_kafka.TopicPartition(topic, partition)], 15)
        return int(tp.offset)
    finally:
        probe.close()
