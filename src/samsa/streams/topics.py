"""Creating the topics an application needs (output and changelog) and checking partitions.

Creation goes through the Admin API (CreateTopics). Clusters without it (librdkafka's mock
cluster) or where the application may not create topics: the failure is logged and the
topics must exist already or be auto-created on first produce.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

log = logging.getLogger("samsa.streams")

CREATE_TIMEOUT_S = 10.0


def partition_counts(admin: AdminClient, names: Iterable[str]) -> dict[str, int]:
    metadata = admin.list_topics(timeout=CREATE_TIMEOUT_S)
    counts: dict[str, int] = {}
    for name in names:
        topic = metadata.topics.get(name)
        if topic is not None and topic.error is None and topic.partitions:
            counts[name] = len(topic.partitions)
    return counts


def ensure(admin: AdminClient, wanted: dict[str, tuple[int, dict[str, str]]]) -> None:
    """Create each missing topic: name -> (partitions, configs)."""
    existing = partition_counts(admin, wanted)
    missing = [
        NewTopic(name, partitions, config=dict(configs))
        for name, (partitions, configs) in sorted(wanted.items())
        if name not in existing
    ]
    if not missing:
        return
    futures: dict[str, Any] = admin.create_topics(
        missing, operation_timeout=CREATE_TIMEOUT_S, request_timeout=CREATE_TIMEOUT_S
    )
    for name, future in futures.items():
        try:
            future.result(timeout=CREATE_TIMEOUT_S + 5)
            log.info("created topic %s", name)
        except KafkaException as exc:
            log.warning("could not create topic %s (%s); relying on it existing", name, exc)
        except Exception as exc:  # e.g. concurrent.futures.TimeoutError on the mock cluster
            log.warning("could not create topic %s (%r); relying on it existing", name, exc)
