"""`samsa demo guarantees`: at-most-once, at-least-once and exactly-once, side by side.

The same workload (N unique records over three partitions) is produced three times by
confluent-kafka through a chaos proxy in front of an embedded broker, each time under the same
seeded fault schedule on Produce requests: responses dropped after the broker wrote the batch
(the lost acknowledgment), and connections cut before or after a request is forwarded. Each
topic is then read back and compared with what was sent:

- at-most-once (acks=0, no retries): a request cut before it reaches the broker is gone, though
  the client already counted it as sent, so records are *lost*;
- at-least-once (acks=all, retries, idempotence off): a batch whose acknowledgment was lost is
  sent again and written again, so records are *duplicated*;
- exactly-once (the idempotent producer): the broker recognises a retry by its producer id and
  sequence numbers and answers with the original offsets, so neither happens.

Small batches (`BATCH_RECORDS_MAX`) make many Produce requests, so the schedule bites often
enough that a run of a couple of thousand records shows every effect.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import confluent_kafka
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from samsa.chaos import Schedule, proxied_broker
from samsa.chaos.stats import FaultStats
from samsa.progress import QUIET, Progress
from samsa.protocol.apis import ApiKey

RECORDS_DEFAULT = 2000
SEED_DEFAULT = 7
PARTITIONS = 3
BATCH_RECORDS_MAX = 10
ROUND_RECORDS = 20
DROP_RESPONSE_PROBABILITY = 0.04
CUT_PROBABILITY = 0.06  # half before forwarding the request, half after
DELIVERY_TIMEOUT_S = 60.0
READ_TIMEOUT_S = 30.0
ADMIN_TIMEOUT_S = 15.0

# Every mode: small batches, fast reconnects, quiet logs. The modes differ only in MODES.
COMMON_CONFIG: dict[str, Any] = {
    "linger.ms": 1,
    "max.in.flight.requests.per.connection": 5,
    "batch.num.messages": BATCH_RECORDS_MAX,
    "retry.backoff.ms": 10,
    "reconnect.backoff.ms": 10,
    "reconnect.backoff.max.ms": 100,
    "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000),
    # librdkafka >= 2.10 re-bootstraps when its only broker connection drops, and then waits for
    # its 1 s timer to reconnect; with one broker that is only a stall after every cut.
    "metadata.recovery.strategy": "none",
    "log_level": 0,
}


@dataclass(frozen=True, slots=True)
class Mode:
    key: str  # the JSON key
    title: str
    config: Mapping[str, Any]


MODES = (
    Mode(
        "at_most_once",
        "at-most-once",
        {"acks": 0, "enable.idempotence": False, "message.send.max.retries": 0},
    ),
    Mode(
        "at_least_once",
        "at-least-once",
        {"acks": "all", "enable.idempotence": False, "message.send.max.retries": 1_000_000},
    ),
    Mode("exactly_once", "exactly-once", {"acks": "all", "enable.idempotence": True}),
)


def fault_schedule(seed: int) -> Schedule:
    """The faults every mode meets: on Produce requests only, so reading back is undisturbed."""
    return Schedule(
        seed,
        drop_response_probability=DROP_RESPONSE_PROBABILITY,
        cut_probability=CUT_PROBABILITY,
        api_keys=[int(ApiKey.PRODUCE)],
    )


def fault_counts(before: FaultStats, after: FaultStats) -> dict[str, int]:
    """The faults injected between two snapshots of the proxy's counters, by kind."""
    return {
        "dropped_responses": after.dropped_responses - before.dropped_responses,
        "cuts": after.cuts - before.cuts,
    }


# --------------------------------------------------------------------- the workload
def record_values(count: int, prefix: str = "record") -> list[bytes]:
    """`count` distinct values; record i goes to partition i % PARTITIONS, so the send order of
    each partition is the order of the numbers in its values."""
    return [f"{prefix}-{i:07d}".encode() for i in range(count)]


@dataclass(slots=True)
class ProduceResult:
    """What the producer reported: acknowledged values (partition, offset), failed deliveries,
    and any error librdkafka reported as fatal (the producer is unusable after one).

    Filled by client callbacks on the thread that polls the client, and without a lock:
    confluent-kafka may run the error callback nested inside a delivery callback, and a
    non-reentrant lock held there deadlocks. Readers on other threads only take `len()` or a
    `dict()` copy, each atomic under the GIL.
    """

    acknowledged: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    delivery_errors: list[str] = field(default_factory=list)
    fatal_errors: list[str] = field(default_factory=list)
    unflushed: int = 0


def produce(
    bootstrap: str,
    topic: str,
    values: Sequence[bytes],
    config: Mapping[str, Any],
    partitions: int = PARTITIONS,
    round_records: int | None = None,
    flush_timeout_s: float = DELIVERY_TIMEOUT_S,
) -> ProduceResult:
    """Produce every value (value i to partition i % partitions) and wait for the reports.

    With `round_records`, wait for the reports after every so many records: a burst of acks=0
    requests all goes out at once, and a cut would lose nearly all of it, not a few batches.
    """
    result = ProduceResult()

    def on_error(error: confluent_kafka.KafkaError) -> None:
        if error.fatal():
            result.fatal_errors.append(str(error))

    def on_delivery(error: confluent_kafka.KafkaError | None, message: Any) -> None:
        if error is None:
            result.acknowledged[message.value()] = (message.partition(), message.offset())
        else:
            result.delivery_errors.append(f"{message.value()!r}: {error}")

    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "error_cb": on_error, **config}
    )
    try:
        for index, value in enumerate(values):
            while True:
                try:
                    producer.produce(
                        topic, value, partition=index % partitions, on_delivery=on_delivery
                    )
                    break
                except BufferError:  # the local queue is full: serve reports, then try again
                    producer.poll(0.05)
            producer.poll(0)
            if round_records is not None and index % round_records == round_records - 1:
                producer.flush(flush_timeout_s)
        result.unflushed = producer.flush(flush_timeout_s)
    except confluent_kafka.KafkaException as exc:
        # After a fatal error every call raises it: record it and stop producing.
        error = exc.args[0] if exc.args else None
        if not isinstance(error, confluent_kafka.KafkaError) or not error.fatal():
            raise
        result.fatal_errors.append(str(error))
    finally:
        # Whatever is still outstanding fails now (reported as a delivery error) rather than
        # holding close() until its message.timeout.ms.
        producer.purge()
        producer.poll(0)
        producer.close()
    return result


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    futures = admin.create_topics(
        [NewTopic(topic, partitions, 1)], operation_timeout=ADMIN_TIMEOUT_S
    )
    futures[topic].result(timeout=ADMIN_TIMEOUT_S)


def read_topic(
    bootstrap: str,
    topic: str,
    partitions: int = PARTITIONS,
    timeout_s: float = READ_TIMEOUT_S,
) -> dict[int, list[bytes]]:
    """Every record value of each partition, from offset 0 to its high watermark, in log order.

    Raises TimeoutError if the records up to the high watermark do not all arrive in time.
    """
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            # assign() needs no group, but librdkafka insists on a group.id; nothing is committed.
            "group.id": "samsa-demo-reader",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    try:
        ends = {}
        for p in range(partitions):
            _, high = consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, p), timeout=timeout_s, cached=False
            )
            ends[p] = high
        values: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
        consumer.assign(
            [confluent_kafka.TopicPartition(topic, p, 0) for p in range(partitions) if ends[p]]
        )
        deadline = time.monotonic() + timeout_s
        while any(len(values[p]) < ends[p] for p in range(partitions)):
            if time.monotonic() > deadline:
                counts = {p: (len(values[p]), ends[p]) for p in range(partitions)}
                raise TimeoutError(f"{topic}: read (records, high watermark) {counts}")
            for message in consumer.consume(1000, 0.2):
                error = message.error()
                if error is not None:
                    raise RuntimeError(f"{topic}: consume error: {error}")
                partition, value = message.partition(), message.value()
                if partition is None or value is None:
                    raise RuntimeError(f"{topic}: a record without a partition or a value")
                values[partition].append(value)
        return values
    finally:
        consumer.close()


# --------------------------------------------------------------------- the comparison
@dataclass(frozen=True, slots=True)
class Tally:
    sent: int
    acknowledged: int
    stored: int
    lost: int  # sent, but not in the log
    duplicated: int  # copies in the log beyond the first
    faults: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "stored": self.stored,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "faults": dict(self.faults),
        }


def tally(
    sent: Sequence[bytes], acknowledged: int, stored: Iterable[bytes], faults: dict[str, int]
) -> Tally:
    copies = Counter(stored)
    return Tally(
        sent=len(sent),
        acknowledged=acknowledged,
        stored=sum(copies.values()),
        lost=sum(1 for value in sent if value not in copies),
        duplicated=sum(count - 1 for count in copies.values()),
        faults=faults,
    )


Consume = Callable[[str, Progress], dict[str, Tally]]  # (bootstrap, progress)


def run(
    records: int = RECORDS_DEFAULT,
    seed: int = SEED_DEFAULT,
    consume: Consume | None = None,
    progress: Progress = QUIET,
) -> tuple[dict[str, Tally], dict[str, Tally]]:
    """Each mode through the same fault schedule, on one embedded broker; a tally per mode.

    `consume`, given the bootstrap address once producing is done (and the proxy quiet), runs
    the consume side (`samsa.demo.consumers`) on the same broker."""
    values = record_values(records)
    results: dict[str, Tally] = {}
    consumed: dict[str, Tally] = {}
    progress.phase("starting the broker and the chaos proxy")
    with proxied_broker() as (_broker, proxy):
        for mode in MODES:
            progress.phase(f"{mode.title}: producing {records} records through the faults")
            topic = f"guarantees-{mode.key.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
            create_topic(proxy.bootstrap, topic)
            before = proxy.stats()
            proxy.set_schedule(fault_schedule(seed))
            try:
                config = {**COMMON_CONFIG, **mode.config}
                produced = produce(
                    proxy.bootstrap, topic, values, config, PARTITIONS, ROUND_RECORDS
                )
            finally:
                proxy.set_schedule(None)
            faults = fault_counts(before, proxy.stats())
            progress.phase(f"{mode.title}: reading the topic back")
            stored = [v for log in read_topic(proxy.bootstrap, topic).values() for v in log]
            results[mode.key] = tally(values, len(produced.acknowledged), stored, faults)
        if consume is not None:
            consumed = consume(proxy.bootstrap, progress)
    return results, consumed


PRODUCE_HEADER = ("", "sent", "acknowledged", "stored", "lost", "duplicated", "faults injected")
CONSUME_HEADER = ("", "input", "processed", "output", "lost", "duplicated", "faults injected")


def format_table(results: Mapping[str, Tally], header: tuple[str, ...] = PRODUCE_HEADER) -> str:
    rows: list[tuple[str, ...]] = [header]
    for mode in MODES:
        t = results[mode.key]
        kinds = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in t.faults.items())
        counts = (t.sent, t.acknowledged, t.stored, t.lost, t.duplicated)
        rows.append((mode.title, *map(str, counts), f"{sum(t.faults.values())} ({kinds})"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def main(records: int, seed: int, as_json: bool, consume: Consume | None = None) -> int:
    if records < 1:
        raise ValueError(f"--records must be at least 1, got {records}")
    # A cut connection makes the broker's and the proxy's later writes to it fail; asyncio logs
    # each one, which is noise here: the faults are the point of the demo.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    started = time.monotonic()
    with Progress.for_command(as_json) as progress:
        results, consumed = run(records, seed, consume, progress)
    if as_json:
        report: dict[str, Any] = {key: t.as_dict() for key, t in results.items()}
        if consumed:
            report["consume"] = {key: t.as_dict() for key, t in consumed.items()}
        print(json.dumps(report))
        return 0
    print(
        f"{records} unique records over {PARTITIONS} partitions, through a chaos proxy that "
        f"drops {DROP_RESPONSE_PROBABILITY:.0%} of Produce responses and cuts the connection "
        f"of {CUT_PROBABILITY:.0%} of Produce requests (seed {seed}):\n"
    )
    print(format_table(results))
    print(
        "\nat-most-once: acks=0, no retries; at-least-once: acks=all, retries, no idempotence; "
        "exactly-once: the idempotent producer."
    )
    if consumed:
        print(
            "\nConsuming: the same records processed (copied to an output topic) by a "
            "processor crashed at seeded points and restarted from its committed offsets:\n"
        )
        print(format_table(consumed, CONSUME_HEADER))
        print(
            "\nat-most-once: commit, then process; at-least-once: process, then commit; "
            "exactly-once: output and offsets in one transaction (read_committed output)."
        )
    print(f"({time.monotonic() - started:.1f} s)")
    return 0
