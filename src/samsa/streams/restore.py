"""Restoring a store partition from its changelog: read the changelog partition from the start
to its end at read_committed, latest value per key. The end is where librdkafka reports
partition EOF, which for a read_committed consumer is the last stable offset: records of an
open transaction (a crashed owner's, not yet aborted) are never applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from samsa.streams.errors import StreamsError
from samsa.streams.store import KeyValueStore

BATCH_RECORDS = 10_000
METADATA_TIMEOUT_S = 10.0


def restore(
    consumer: Consumer,
    stores: Sequence[tuple[str, KeyValueStore]],
    timeout_ms: int,
    stopping: Callable[[], bool] = lambda: False,
    starts: Mapping[tuple[str, int], int] | None = None,
) -> int:
    """Fill each (changelog topic, store) from changelog partition `store.partition`, from
    the start or from `starts[(topic, partition)]` (a checkpoint); the number of records
    applied. Returns early (stores incomplete) once `stopping()`."""
    metadata = consumer.list_topics(timeout=METADATA_TIMEOUT_S).topics
    # A changelog partition that does not exist yet has nothing to restore (on clusters
    # without CreateTopics it appears with the first write).
    by_tp = {
        (topic, store.partition): store
        for topic, store in stores
        if topic in metadata and store.partition in metadata[topic].partitions
    }
    if not by_tp:
        return 0
    begin = starts or {}
    consumer.assign([TopicPartition(t, p, begin.get((t, p), OFFSET_BEGINNING)) for t, p in by_tp])
    pending = set(by_tp)
    applied = 0
    deadline = time.monotonic() + timeout_ms / 1000
    try:
        while pending and not stopping():
            if time.monotonic() > deadline:
                raise StreamsError(
                    f"restoring {sorted(pending)} did not reach the changelog end in "
                    f"{timeout_ms} ms; is a transaction on it held open?"
                )
            batch: dict[tuple[str, int], dict[bytes, bytes | None]] = {}
            for message in consumer.consume(BATCH_RECORDS, 0.2):
                tp = (message.topic(), message.partition())
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(tp)
                        continue
                    if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        pending.discard(tp)  # no changelog yet: nothing to restore
                        continue
                    raise StreamsError(f"restoring {tp}: {error}")
                key = message.key()
                if key is None or tp not in by_tp:
                    continue
                batch.setdefault(tp, {})[key] = message.value()
                applied += 1
            for tp, changes in batch.items():
                by_tp[tp].restore_many(changes)
    finally:
        consumer.unassign()
    return applied
