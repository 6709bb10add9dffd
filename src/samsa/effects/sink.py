"""Offsets in the database: the handler's writes and the consumer's position commit in one
database transaction, and the consumer seeks to the stored position on every assignment.

This is how Kafka Connect sinks get exactly-once (`SinkTaskContext.offset(...)` on start and on
rebalance, with the offsets kept in the destination): Kafka's own committed offsets are never
read, so a crash at any point either loses the whole transaction (and the batch is consumed
again from the stored position) or keeps it (and the stored position has moved past the batch).
No dedup key is needed; the effect must be a write to the same database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import confluent_kafka

from samsa.effects.db import Database, Tx

log = logging.getLogger("samsa.effects")

BATCH_MESSAGES_MAX = 500
POLL_TIMEOUT_S = 0.2

SCHEMA = """CREATE TABLE IF NOT EXISTS samsa_sink_offsets (
    sink TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (sink, topic, partition))"""


class TransactionalSink:
    """`handler(tx, message)` writes through `tx`; the batch's writes and the next offsets of its
    partitions commit together. `sink` names the offsets (one name per logical sink, like a
    Connect connector's name). A partition with no stored position starts at `start_offset`
    (`OFFSET_BEGINNING` or `OFFSET_END`). Create the consumer with `enable.auto.commit=false`."""

    def __init__(
        self,
        consumer: confluent_kafka.Consumer,
        database: Database,
        handler: Callable[[Tx, Any], None],
        *,
        sink: str,
        start_offset: int = confluent_kafka.OFFSET_BEGINNING,
        batch_messages_max: int = BATCH_MESSAGES_MAX,
    ) -> None:
        self.consumer = consumer
        self.database = database
        self.handler = handler
        self.sink = sink
        self.start_offset = start_offset
        self.batch_messages_max = batch_messages_max
        self.applied = 0
        with database.transaction() as tx:
            tx.execute(SCHEMA)

    # -- positions

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        with self.database.transaction() as tx:
            rows = tx.fetchall(
                "SELECT topic, partition, next_offset FROM samsa_sink_offsets WHERE sink = ?",
                (self.sink,),
            )
        return {(str(topic), int(partition)): int(offset) for topic, partition, offset in rows}

    def _positioned(
        self, partitions: Sequence[confluent_kafka.TopicPartition]
    ) -> list[confluent_kafka.TopicPartition]:
        stored = self.stored_offsets()
        positioned = []
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            # Never written: `start_offset`, never Kafka's committed offset (the database is the
            # only record of what was applied; a commit in Kafka may come from anyone).
            position = self.start_offset if offset is None else offset
            positioned.append(confluent_kafka.TopicPartition(tp.topic, tp.partition, position))
        return positioned

    def subscribe(self, topics: list[str]) -> None:
        """Subscribe through the consumer group; every assignment seeks to the database."""

        def on_assign(consumer: Any, partitions: list[confluent_kafka.TopicPartition]) -> None:
            consumer.assign(self._positioned(partitions))

        self.consumer.subscribe(topics, on_assign=on_assign)

    def assign(self, partitions: Sequence[confluent_kafka.TopicPartition]) -> None:
        """Manual assignment, positioned from the database."""
        self.consumer.assign(self._positioned(partitions))

    # -- the loop

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll_once()

    def poll_once(self, timeout_s: float = POLL_TIMEOUT_S) -> int:
        messages: list[Any] = [
            m
            for m in self.consumer.consume(self.batch_messages_max, timeout_s)
            if m.error() is None
        ]
        if not messages:
            return 0
        positions: dict[tuple[str, int], int] = {}
        with self.database.transaction() as tx:
            for message in messages:
                self.handler(tx, message)
                positions[(message.topic(), message.partition())] = message.offset() + 1
            for (topic, partition), offset in positions.items():
                tx.execute(
                    """INSERT INTO samsa_sink_offsets (sink, topic, partition, next_offset)
                       VALUES (?, ?, ?, ?)
                       ON CONFLICT (sink, topic, partition)
                       DO UPDATE SET next_offset = excluded.next_offset""",
                    (self.sink, topic, partition, offset),
                )
        self.applied += len(messages)
        return len(messages)
