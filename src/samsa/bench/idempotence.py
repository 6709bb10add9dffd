"""What idempotence costs: produce throughput with and without it, and memory per producer.

    python -m samsa.bench.idempotence [--records N] [--repeat K] [--json]

Throughput: one `samsa serve` subprocess (fresh temp data dir, default durable settings); one
confluent-kafka producer per run, acks=all, 1 KB values, to partition 0 of a fresh topic (deleted
after the run). Idempotent and plain runs alternate, each pair in the other order than the last,
so drift on a shared machine falls on both alike; each figure is the median of K runs. Three
pairings: librdkafka's defaults (a plain producer may keep 10^6 requests in flight, an
idempotent one at most 5), both at `max.in.flight.requests.per.connection=5`, and both at 1 (in
practice librdkafka's idempotent producer keeps one request in flight per partition anyway). The
same runs against librdkafka's in-process mock cluster show what idempotence costs the client.

Broker side alone: the time `ProducerStateManager.check` + `apply` take per batch, the only
work an idempotent batch adds to a plain one in samsa.

Memory: bytes per tracked producer in a `ProducerStateManager`, each with a full window of
`BATCHES_RETAINED` batches, measured with tracemalloc over many producers.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient

from samsa.bench.broker import machine, mock_cluster, samsa_process, wait_for_topic
from samsa.protocol.batch import BatchHeader
from samsa.state.producers import BATCHES_RETAINED, ProducerStateManager

DEFAULT_RECORDS = 50_000
DEFAULT_REPEAT = 7
VALUE_BYTES = 1024
TIMEOUT_S = 300.0
MEMORY_PRODUCERS = 10_000
STATE_BATCHES = 200_000
TOPIC_PREFIX = "bench-idempotence-"

BASE_CONFIG: dict[str, Any] = {
    "acks": "all",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "compression.type": "none",
    "queue.buffering.max.messages": 100_000,
    "log_level": 3,
}
PAIRINGS: dict[str, dict[str, Any]] = {
    "librdkafka defaults": {},
    "max.in.flight=5 both": {"max.in.flight.requests.per.connection": 5},
    # librdkafka's idempotent producer sends one Produce request per partition at a time,
    # whatever max.in.flight says (confluentinc/librdkafka PR #4989, open): with both at 1 the
    # pipelining is the same and only idempotence differs.
    "max.in.flight=1 both": {"max.in.flight.requests.per.connection": 1},
}


# --------------------------------------------------------------------- throughput
def produce_s(bootstrap: str, records: int, config: dict[str, Any]) -> float:
    """Seconds from the first produce() until the last delivery report, to a fresh topic."""
    topic = f"{TOPIC_PREFIX}{uuid.uuid4().hex[:12]}"
    fatal: list[KafkaError] = []
    errors: list[KafkaError] = []
    delivered = [0]

    def on_error(error: KafkaError) -> None:
        if error.fatal():
            fatal.append(error)

    def on_delivery(error: KafkaError | None, _message: Any) -> None:
        if error is None:
            delivered[0] += 1
        else:
            errors.append(error)

    producer = Producer({"bootstrap.servers": bootstrap, "error_cb": on_error, **config})
    value = os.urandom(VALUE_BYTES)
    try:
        wait_for_topic(producer, topic)  # created and the connection warm, outside the timing
        start = time.perf_counter()
        for _ in range(records):
            while True:
                try:
                    producer.produce(topic, value, partition=0, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.001)
            producer.poll(0)
        remaining = producer.flush(TIMEOUT_S)
        seconds = time.perf_counter() - start
    finally:
        producer.close()
    if remaining or errors or fatal or delivered[0] != records:
        raise RuntimeError(
            f"{delivered[0]}/{records} delivered, {remaining} outstanding, "
            f"errors {errors[:3]}, fatal {fatal[:3]}"
        )
    return seconds


def delete_topics(bootstrap: str) -> None:
    """Free the disk between runs (samsa only; the mock keeps a few MB per partition)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(TOPIC_PREFIX)]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result(30)


@dataclass
class Pairing:
    target: str
    name: str
    plain_s: list[float]
    idempotent_s: list[float]
    records: int

    def rate(self, seconds: list[float]) -> float:
        return self.records / statistics.median(seconds)

    @property
    def ratio(self) -> float:
        """Idempotent throughput / plain throughput (medians)."""
        return self.rate(self.idempotent_s) / self.rate(self.plain_s)

    def pair_ratios(self) -> list[float]:
        return [p / i for p, i in zip(self.plain_s, self.idempotent_s, strict=True)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "value_bytes": VALUE_BYTES,
            "plain_s": self.plain_s,
            "idempotent_s": self.idempotent_s,
            "plain_records_per_s": self.rate(self.plain_s),
            "idempotent_records_per_s": self.rate(self.idempotent_s),
            "ratio": self.ratio,
            "pair_ratios": self.pair_ratios(),
        }


TARGETS = {"samsa": samsa_process, "mock": mock_cluster}


def run_throughput(target: str, records: int, repeat: int, progress: bool) -> list[Pairing]:
    pairings = [Pairing(target, name, [], [], records) for name in PAIRINGS]
    with TARGETS[target]() as bootstrap:
        # One unmeasured run each, so the first measured one does not pay for a cold broker.
        for extra in PAIRINGS.values():
            produce_s(bootstrap, records // 10, {**BASE_CONFIG, **extra})
        for k in range(repeat):
            for pairing in pairings:
                extra = PAIRINGS[pairing.name]
                order = (False, True) if k % 2 == 0 else (True, False)
                for idempotent in order:
                    config = {**BASE_CONFIG, **extra, "enable.idempotence": idempotent}
                    seconds = produce_s(bootstrap, records, config)
                    (pairing.idempotent_s if idempotent else pairing.plain_s).append(seconds)
                    if progress:
                        kind = "idempotent" if idempotent else "plain"
                        print(
                            f"  {target}, {pairing.name}, run {k + 1}/{repeat}, {kind}: "
                            f"{records / seconds:,.0f} rec/s",
                            file=sys.stderr,
                            flush=True,
                        )
                if target == "samsa":
                    delete_topics(bootstrap)
    return pairings


def state_us_per_batch(batches: int = STATE_BATCHES) -> float:
    """Microseconds of `check` + `apply` per batch, for one producer writing in sequence."""
    manager = ProducerStateManager(expiration_ms=3_600_000)
    headers = [_header(2_000_000_000, 0, 10 * n, 5_000_000_000 + 10 * n) for n in range(batches)]
    start = time.perf_counter()
    for header in headers:
        manager.check(header)
        manager.apply(header)
    return (time.perf_counter() - start) / batches * 1e6


# --------------------------------------------------------------------- memory
def _header(producer_id: int, epoch: int, base_sequence: int, base_offset: int) -> BatchHeader:
    records = 10
    return BatchHeader(
        base_offset=base_offset,
        batch_length=600,
        partition_leader_epoch=0,
        magic=2,
        crc=0,
        attributes=0,
        last_offset_delta=records - 1,
        base_timestamp=1_760_000_000_000 + base_offset,
        max_timestamp=1_760_000_000_000 + base_offset + records,
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=base_sequence,
        records_count=records,
    )


def producer_entry_bytes(producers: int = MEMORY_PRODUCERS) -> float:
    """Bytes per tracked producer: a ProducerStateManager holding `producers` entries, each with
    a full window of BATCHES_RETAINED batches (realistic magnitudes: ids past 2^30, offsets and
    sequences in the millions, millisecond timestamps), measured by tracemalloc and divided."""
    gc.collect()
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        manager = ProducerStateManager(expiration_ms=3_600_000)
        offset = 5_000_000_000
        for n in range(producers):
            producer_id = 2_000_000_000 + n
            # One batch past the window, so it has been full and rotated once.
            for batch in range(BATCHES_RETAINED + 1):
                manager.apply(_header(producer_id, 3, 1_000_000 + 10 * batch, offset))
                offset += 10
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
        if len(manager) != producers:
            raise RuntimeError(f"{len(manager)} producers tracked, expected {producers}")
        return (after - before) / producers
    finally:
        if not tracing:
            tracemalloc.stop()


# --------------------------------------------------------------------- report
def report_text(
    pairings: list[Pairing], state_us: float, entry_bytes: float, info: dict[str, Any]
) -> str:
    lines = [
        f"machine: {info}",
        f"produce, acks=all, {VALUE_BYTES} B values, median of {len(pairings[0].plain_s)} runs "
        f"of {pairings[0].records:,} records each:",
    ]
    for p in pairings:
        ratios = ", ".join(f"{r:.2f}" for r in p.pair_ratios())
        lines.append(
            f"  {p.target:<5} {p.name:<22} plain {p.rate(p.plain_s):>9,.0f} rec/s   idempotent "
            f"{p.rate(p.idempotent_s):>9,.0f} rec/s   ratio {p.ratio:.3f} "
            f"(overhead {1 - p.ratio:.1%}); per pair {ratios}"
        )
    lines.append(
        f"broker side: ProducerStateManager check + apply {state_us:.2f} us per batch "
        f"({STATE_BATCHES:,} batches)"
    )
    lines.append(
        f"memory: {entry_bytes:,.0f} bytes per tracked producer with a full window of "
        f"{BATCHES_RETAINED} batches ({MEMORY_PRODUCERS:,} producers, tracemalloc)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m samsa.bench.idempotence",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    info = {**machine(), "loadavg_start": os.getloadavg()}
    entry_bytes = producer_entry_bytes()
    state_us = state_us_per_batch()
    pairings = [
        pairing
        for target in TARGETS
        for pairing in run_throughput(target, args.records, args.repeat, progress=not args.json)
    ]
    info["loadavg_end"] = os.getloadavg()
    if args.json:
        report = {
            "machine": info,
            "throughput": {f"{p.target}, {p.name}": p.as_dict() for p in pairings},
            "state_us_per_batch": state_us,
            "producer_entry_bytes": entry_bytes,
        }
        print(json.dumps(report))
    else:
        print(report_text(pairings, state_us, entry_bytes, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
