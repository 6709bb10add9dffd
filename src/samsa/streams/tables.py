"""Reading a task's tables before its streams (`app.table` + `stream.join`).

A join reads the table's partition p beside the stream's partition p. When a task is newly
assigned, its stream partitions are paused until its table partitions have been read to the end
offsets they had at that moment, so the first stream records are joined with the table as it
stood, not with whatever part of it the consumer happened to fetch first (Kafka Streams waits
the same way for a task's partitions with known lag, KIP-695). Records of a paused partition
fetched before the pause are dropped and their partition rewound. After the catch-up, records
are processed in the order they are fetched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import Consumer, Message, TopicPartition

log = logging.getLogger("samsa.streams")

TP = tuple[str, int]
CLIENT_TIMEOUT_S = 30.0


class TableCatchUp:
    def __init__(self, table_topics: set[str], name: str, timeout_s: float) -> None:
        self.table_topics = table_topics
        self.name = name  # the instance, for the log
        self.timeout_s = timeout_s  # then go on: the end may be a marker nobody returns
        self._fresh: set[int] = set()  # newly assigned partitions with tables
        self._held: dict[int, dict[TP, int]] = {}  # partition -> table tp -> end to reach
        self._since: dict[int, float] = {}

    def assigned(self, tps: set[TP]) -> None:
        self._fresh |= {p for t, p in tps if t in self.table_topics}

    def dropped(self, owned: set[int], tps: set[TP]) -> None:
        for partition in list(self._held):
            if partition not in owned or any(tp in tps for tp in self._held[partition]):
                del self._held[partition]  # a reassignment holds it again if need be

    def filter(
        self,
        consumer: Consumer,
        assigned: set[TP],
        messages: list[Message],
        where: Callable[[Message], tuple[str, int, int]],
        seek: Callable[[str, int, int], None],
    ) -> list[Message]:
        """Pause the newly assigned tasks' streams; the records that may be processed."""
        self._hold_fresh(consumer, assigned)
        kept: list[Message] = []
        rewind: dict[TP, int] = {}
        reached: dict[TP, int] = {}
        for m in messages:
            topic, partition, offset = where(m)
            if topic in self.table_topics:
                reached[(topic, partition)] = offset + 1
            if partition in self._held and topic not in self.table_topics:
                rewind.setdefault((topic, partition), offset)
            else:
                kept.append(m)
        for (topic, partition), offset in sorted(rewind.items()):
            seek(topic, partition, offset)
        if self._held:
            self._release(consumer, assigned, reached)
        return kept

    def _streams(self, assigned: set[TP], partition: int) -> list[TopicPartition]:
        return [
            TopicPartition(t, p)
            for t, p in sorted(assigned)
            if p == partition and t not in self.table_topics
        ]

    def _hold_fresh(self, consumer: Consumer, assigned: set[TP]) -> None:
        fresh, self._fresh = sorted(self._fresh), set()
        for partition in fresh:
            tables = [
                TopicPartition(t, p)
                for t, p in sorted(assigned)
                if p == partition and t in self.table_topics
            ]
            if not tables:
                continue
            waiting: dict[TP, int] = {}
            for tp in consumer.committed(tables, timeout=CLIENT_TIMEOUT_S):
                low, high = consumer.get_watermark_offsets(
                    tp, timeout=CLIENT_TIMEOUT_S, cached=False
                )
                start = tp.offset if tp.offset >= 0 else low
                if start < high:
                    waiting[(tp.topic, tp.partition)] = high
            if waiting:
                self._held[partition] = waiting
                self._since[partition] = time.monotonic()
                consumer.pause(self._streams(assigned, partition))
                log.info("%s: partition %d waits for its tables %s", self.name, partition, waiting)
            else:
                consumer.resume(self._streams(assigned, partition))  # a past hold's pause

    def _release(self, consumer: Consumer, assigned: set[TP], reached: dict[TP, int]) -> None:
        for partition, waiting in list(self._held.items()):
            for tp, end in list(waiting.items()):
                if reached.get(tp, -1) >= end:
                    del waiting[tp]
            if waiting and time.monotonic() - self._since[partition] > self.timeout_s:
                # The end may be an aborted transaction's records or a commit marker, which
                # a read_committed consumer never returns.
                log.warning("%s: tables %s not read to their end; going on", self.name, waiting)
                waiting.clear()
            if not waiting:
                del self._held[partition]
                consumer.resume(self._streams(assigned, partition))
                log.info("%s: partition %d tables read: resumed", self.name, partition)
