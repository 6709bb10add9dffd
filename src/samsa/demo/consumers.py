"""The consume side of `samsa demo guarantees`: where a crash lands between processing a record
and committing its offset decides what the guarantee is.

A processor reads an input topic and writes each record to an output topic ("processing"), and
is crashed (its clients abandoned, nothing closed cleanly or committed) at seeded points, then
restarted from the committed offsets, three times over:

- at-most-once: commit the offsets, then process. A crash in between loses the batch.
- at-least-once: process (output flushed), then commit. A crash in between repeats the batch.
- exactly-once: consume-transform-produce in one transaction with the offsets
  (send_offsets_to_transaction); a crash before the commit aborts it all (the next instance of
  the transactional id fences and aborts it) and the batch is redone once. read_committed
  readers of the output see each record once.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import confluent_kafka

from samsa.demo.guarantees import (
    COMMON_CONFIG,
    PARTITIONS,
    Tally,
    create_topic,
    produce,
    record_values,
    tally,
)
from samsa.progress import QUIET, Progress

BATCH_RECORDS = 100
CRASH_PROBABILITY = 0.2
POLL_TIMEOUT_S = 0.3
IDLE_POLLS_MAX = 5  # consecutive empty polls that mean the input is done
READ_TIMEOUT_S = 30.0


class Crash(Exception):
    """The processor dies here: nothing after this point of the batch happens."""


@dataclass(frozen=True, slots=True)
class ConsumeMode:
    key: str
    title: str
    step: Callable[[Processor, list[Any]], None]


class Processor:
    """One instance: a consumer on every input partition from the committed offsets, and a
    producer of the output."""

    def __init__(
        self,
        bootstrap: str,
        mode: str,
        source: str,
        sink: str,
        group: str,
        crash: Callable[[], bool],
    ) -> None:
        self.source, self.sink, self.crash = source, sink, crash
        self.consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "log_level": 0,
            }
        )
        # From the committed offsets (librdkafka fetches them), or the start if none.
        self.consumer.assign(
            [
                confluent_kafka.TopicPartition(source, p, confluent_kafka.OFFSET_STORED)
                for p in range(PARTITIONS)
            ]
        )
        config: dict[str, Any] = {"bootstrap.servers": bootstrap, "acks": "all", "log_level": 0}
        if mode == "exactly_once":
            config["transactional.id"] = f"{group}-processor"
        else:
            config["enable.idempotence"] = True
        self.producer = confluent_kafka.Producer(config)
        if mode == "exactly_once":
            self.producer.init_transactions(10)  # fences a crashed predecessor, aborting its work

    def emit(self, messages: list[Any]) -> None:
        for message in messages:
            self.producer.produce(self.sink, message.value(), partition=message.partition())

    def positions(self, messages: list[Any]) -> list[confluent_kafka.TopicPartition]:
        last: dict[int, int] = {}
        for message in messages:
            last[message.partition()] = message.offset()
        return [confluent_kafka.TopicPartition(self.source, p, o + 1) for p, o in last.items()]

    def abandon(self) -> None:
        """A crash: no commit, no flush of anything not yet sent."""
        self.producer.purge()
        self.consumer.close()  # enable.auto.commit is off: closing commits nothing


def at_most_once(processor: Processor, messages: list[Any]) -> None:
    processor.consumer.commit(offsets=processor.positions(messages), asynchronous=False)
    if processor.crash():
        raise Crash
    processor.emit(messages)
    processor.producer.flush(30)


def at_least_once(processor: Processor, messages: list[Any]) -> None:
    processor.emit(messages)
    processor.producer.flush(30)
    if processor.crash():
        raise Crash
    processor.consumer.commit(offsets=processor.positions(messages), asynchronous=False)


def exactly_once(processor: Processor, messages: list[Any]) -> None:
    producer = processor.producer
    producer.begin_transaction()
    processor.emit(messages)
    producer.send_offsets_to_transaction(
        processor.positions(messages), processor.consumer.consumer_group_metadata(), 30
    )
    producer.flush(30)
    if processor.crash():
        raise Crash
    producer.commit_transaction(30)


CONSUME_MODES = (
    ConsumeMode("at_most_once", "at-most-once", at_most_once),
    ConsumeMode("at_least_once", "at-least-once", at_least_once),
    ConsumeMode("exactly_once", "exactly-once", exactly_once),
)


def process_all(
    bootstrap: str, mode: ConsumeMode, source: str, sink: str, seed: int
) -> tuple[int, int]:
    """Run processors until the input is exhausted; (records processed, crashes)."""
    rng = random.Random(seed)
    group = f"demo-{mode.key}-{uuid.uuid4().hex[:8]}"
    crashes = processed = idle = 0
    processor = Processor(
        bootstrap, mode.key, source, sink, group, lambda: rng.random() < CRASH_PROBABILITY
    )
    while idle < IDLE_POLLS_MAX:
        messages = [
            m
            for m in processor.consumer.consume(BATCH_RECORDS, POLL_TIMEOUT_S)
            if m.error() is None
        ]
        if not messages:
            idle += 1
            continue
        idle = 0
        try:
            mode.step(processor, messages)
            processed += len(messages)
        except Crash:
            crashes += 1
            processor.abandon()
            processor = Processor(
                bootstrap, mode.key, source, sink, group, lambda: rng.random() < CRASH_PROBABILITY
            )
    processor.consumer.close()
    processor.producer.flush(30)
    return processed, crashes


def read_committed(bootstrap: str, topic: str) -> list[bytes]:
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "samsa-demo-reader",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "log_level": 0,
        }
    )
    try:
        consumer.assign([confluent_kafka.TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        values: list[bytes] = []
        idle, deadline = 0, time.monotonic() + READ_TIMEOUT_S
        while idle < IDLE_POLLS_MAX and time.monotonic() < deadline:
            messages = consumer.consume(1000, POLL_TIMEOUT_S)
            idle = 0 if messages else idle + 1
            values.extend(m.value() or b"" for m in messages if m.error() is None)
        return values
    finally:
        consumer.close()


def run(bootstrap: str, records: int, seed: int, progress: Progress = QUIET) -> dict[str, Tally]:
    """Each consume mode over the same input and the same seeded crash points."""
    progress.phase(f"consuming: writing {records} input records")
    values = record_values(records, "order")
    source = f"guarantees-input-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, source)
    written = produce(
        bootstrap, source, values, {**COMMON_CONFIG, "acks": "all", "enable.idempotence": True}
    )
    if written.fatal_errors or len(written.acknowledged) != records:
        raise RuntimeError(f"the input was not written whole: {written.delivery_errors[:3]}")
    results = {}
    for mode in CONSUME_MODES:
        progress.phase(f"consuming {mode.title}: a processor crashed at seeded points, restarted")
        sink = f"guarantees-output-{mode.key.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, sink)
        processed, crashes = process_all(bootstrap, mode, source, sink, seed)
        results[mode.key] = tally(
            values, processed, read_committed(bootstrap, sink), {"crashes": crashes}
        )
    return results
