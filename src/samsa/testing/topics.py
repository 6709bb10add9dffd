"""Topics and offsets for tests and benchmarks, through a real client (confluent-kafka).

Every test and benchmark creates its topics and reads high watermarks the way an application
would, so these helpers use librdkafka rather than samsa's own admin client: what they prove
about samsa holds for the clients people run. They are written once here because each copy
had drifted a little (timeouts, replication factor, quiet logging).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic

ADMIN_TIMEOUT_S = 15.0
QUIET = {"log_level": 0}


def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    config: Mapping[str, str] | None = None,
    timeout_s: float = ADMIN_TIMEOUT_S,
) -> None:
    """Create each `name: partitions` topic (replication factor 1, same `config` for all) and
    wait until the broker has answered for every one; any error is raised."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    futures = admin.create_topics(
        [NewTopic(name, n, 1, config=dict(config or {})) for name, n in topics.items()],
        operation_timeout=timeout_s,
    )
    for future in futures.values():
        future.result(timeout=timeout_s)


def create_topic(
    bootstrap: str,
    topic: str,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    timeout_s: float = ADMIN_TIMEOUT_S,
) -> None:
    create_topics(bootstrap, {topic: partitions}, config, timeout_s)


def delete_topics(
    bootstrap: str, topics: Iterable[str], timeout_s: float = ADMIN_TIMEOUT_S
) -> None:
    """Delete each topic and wait until the broker has answered for every one; any error
    (an unknown topic too) is raised."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    futures = admin.delete_topics(list(topics), operation_timeout=timeout_s)
    for future in futures.values():
        future.result(timeout=timeout_s)


def watermarks(
    bootstrap: str, topic: str, partitions: int, timeout_s: float = ADMIN_TIMEOUT_S
) -> list[tuple[int, int]]:
    """Each partition's (low, high) watermark in partition order, asked of the broker (not
    librdkafka's cache)."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "samsa-testing-watermarks", **QUIET}
    )
    try:
        return [
            consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, p), timeout=timeout_s, cached=False
            )
            for p in range(partitions)
        ]
    finally:
        consumer.close()


def end_offsets(
    bootstrap: str, topic: str, partitions: int, timeout_s: float = ADMIN_TIMEOUT_S
) -> dict[int, int]:
    """Each partition's high watermark: the offset the next record will get."""
    return {
        p: high for p, (_, high) in enumerate(watermarks(bootstrap, topic, partitions, timeout_s))
    }


def placed(message: confluent_kafka.Message) -> tuple[int, int]:
    """(partition, offset) of a consumed or acknowledged message: the broker has placed it, so
    neither is None (librdkafka types both as optional for messages not yet produced)."""
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None, f"message not placed: {message}"
    return partition, offset


def value_of(message: confluent_kafka.Message) -> bytes:
    """The value of a record that was written with one (a null value is a test failure)."""
    value = message.value()
    assert value is not None, f"null value at {placed(message)}"
    return value
