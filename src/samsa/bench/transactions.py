"""Transactions benchmark: what exactly-once costs a confluent-kafka producer and consumer.

    python -m samsa.bench.transactions [--seconds S] [--repeat K] [--reads R] [--json]

Against one `samsa serve` subprocess (fresh temp data dir, durable defaults but bounded
retention, see `RECYCLING_SETTINGS`):

- produce throughput of 1 KB records to one partition for S seconds with `acks=all`: an
  idempotent producer (the baseline) and transactional producers committing every 10, 100
  and 1000 ms (begin, produce until the interval is over, `commit_transaction()`). Every run
  writes a fresh topic, deleted after it. After one unmeasured baseline run, each of K rounds
  brackets every transactional run between two baseline runs (I T10 I T100 I T1000 I, the
  intervals reversed every other round); a run's ratio is its rate over the mean of its two
  neighbours', and each figure is the median over the rounds;
- commit latency: the time `commit_transaction()` takes in those runs (it includes flushing the
  transaction's last records), and, separately, for small transactions (10 records) whose
  records were flushed first, so only EndTxn is timed;
- consume throughput of a topic written by a 100 ms transactional producer (unmeasured, kept
  whole), read to its end with an assign() consumer at read_committed and at
  read_uncommitted, alternating, R reads each (default 9: with 3 the ratio moved by 2-3 %
  between runs of the same code).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from samsa.bench import in_turn
from samsa.bench.broker import broker_process, wait_for_topic
from samsa.bench.fetch import cpu_seconds
from samsa.testing.process import BrokerProcess
from samsa.testing.topics import create_topic, delete_topics, end_offsets

VALUE = b"x" * 1024
COMMIT_INTERVALS_MS = (10, 100, 1000)
LATENCY_SAMPLES = 300
TIMEOUT_S = 120.0
PRODUCER_CONFIG: dict[str, Any] = {
    "acks": "all",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "compression.type": "none",
    # A short client queue (4 MB): with librdkafka's default (1 GB) a producer runs seconds
    # ahead of the broker, and "commit every 10 ms" would commit whatever the backlog is.
    "queue.buffering.max.kbytes": 4096,
    "log_level": 0,
}
# Small segments, deleted by retention soon after they roll. On the VMs these benchmarks run on
# (virtio-balloon free page reporting) a page the guest has not used lately costs the host a
# fault at its first write: once the few hundred MB freed last are used up, the page cache
# fills 4x slower (1.4 GB/s to 0.33 GB/s writing a file, measured; in the broker the kernel's
# copy into the page cache, `copy_folio_from_iter_atomic`, went from a few % to 63 % of its
# samples). A broker that keeps everything it is sent then runs a first run fast and every
# later one slow, whatever the guarantee. With retention it writes into pages it freed a moment
# before, as a long-running Kafka broker does, and each run starts where the last one did.
RECYCLING_SETTINGS = (
    "log.segment.bytes=67108864",
    "log.retention.bytes=134217728",
    "log.retention.check.interval.ms=250",
)
READ_TOPIC_CONFIG = {"retention.bytes": "-1"}  # the reads start at offset 0


@dataclass
class ProduceRun:
    label: str
    records: int
    seconds: float
    commit_ms: list[float] = field(default_factory=list)
    broker_cpu_s: float | None = None

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def broker_us_per_record(self) -> float | None:
        if self.broker_cpu_s is None or not self.records:
            return None
        return self.broker_cpu_s / self.records * 1e6


def run_producer(
    bootstrap: str, topic: str, seconds: float, idempotent: bool, extra: dict[str, Any]
) -> ProduceRun:
    """A plain or idempotent producer writing `topic` (fresh, one partition) for `seconds`."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            **PRODUCER_CONFIG,
            **extra,
            "enable.idempotence": idempotent,
        }
    )
    # Metadata, the connection and (idempotent) the producer id, outside the timing: one record
    # written first, as the transactional producer's init_transactions() is not timed.
    wait_for_topic(producer, topic)
    producer.produce(topic, VALUE, partition=0)
    if producer.flush(TIMEOUT_S) != 0:
        raise RuntimeError(f"the producer of {topic} did not flush")
    sent = 1
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        try:
            producer.produce(topic, VALUE, partition=0)
        except BufferError:
            producer.poll(0.001)
            continue
        sent += 1
        producer.poll(0)
    if producer.flush(TIMEOUT_S) != 0:
        raise RuntimeError(f"the producer of {topic} did not flush")
    elapsed = time.perf_counter() - start
    # No delivery callback, as in `run_transactional`: one alone moved this producer's rate by
    # a third on a two-core machine, so the two sides of a ratio run the same loop. The fresh
    # topic's end offset shows that every record was written.
    written = end_offsets(bootstrap, topic, 1, timeout_s=30)[0]
    if written != sent:
        raise RuntimeError(f"{written} of {sent} records written to {topic}")
    return ProduceRun("idempotent" if idempotent else "plain", sent - 1, elapsed)


def run_idempotent(bootstrap: str, topic: str, seconds: float) -> ProduceRun:
    return run_producer(bootstrap, topic, seconds, True, {})


def run_transactional(bootstrap: str, topic: str, seconds: float, interval_ms: int) -> ProduceRun:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"bench-{topic}", **PRODUCER_CONFIG}
    )
    producer.init_transactions(TIMEOUT_S)
    wait_for_topic(producer, topic)
    run = ProduceRun(f"txn {interval_ms} ms", 0, 0.0)
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        producer.begin_transaction()
        txn_end = min(time.perf_counter() + interval_ms / 1000, deadline)
        count = 0
        while time.perf_counter() < txn_end:
            try:
                producer.produce(topic, VALUE, partition=0)
            except BufferError:
                producer.poll(0.001)
                continue
            count += 1
            producer.poll(0)
        began = time.perf_counter()
        producer.commit_transaction(TIMEOUT_S)
        run.commit_ms.append((time.perf_counter() - began) * 1000)
        run.records += count  # committed: every record of it is acknowledged
    run.seconds = time.perf_counter() - start
    return run


def on_fresh_topic(
    broker: BrokerProcess, label: str, run: Callable[[str], ProduceRun]
) -> ProduceRun:
    """`run` against a topic created for it and deleted after it (its page cache freed for the
    next run), with the broker's CPU time over the run."""
    topic = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, timeout_s=30)
    assert broker.process is not None
    before = cpu_seconds(broker.process.pid)
    try:
        result = run(topic)
        result.broker_cpu_s = cpu_seconds(broker.process.pid) - before
        return result
    finally:
        delete_topics(broker.bootstrap, [topic], timeout_s=30)


def bracketed(
    baseline: Callable[[], ProduceRun], runs: Sequence[Callable[[], ProduceRun]]
) -> tuple[list[ProduceRun], list[tuple[ProduceRun, float]]]:
    """B X1 B X2 ... Xn B: the baseline runs, and each run with its rate over the mean of its
    two neighbours'. Whatever drifts during a round (the load, the broker's state) moves a
    run and the baseline runs either side of it alike."""
    bases = [baseline()]
    rated = []
    for run in runs:
        result = run()
        bases.append(baseline())
        neighbours = (bases[-2].records_per_s + bases[-1].records_per_s) / 2
        rated.append((result, result.records_per_s / neighbours))
    return bases, rated


def write_read_topic(bootstrap: str, seconds: float) -> tuple[str, int]:
    """A topic kept whole, written by a 100 ms transactional producer: (topic, records)."""
    topic = f"bench-read-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, config=READ_TOPIC_CONFIG, timeout_s=30)
    return topic, run_transactional(bootstrap, topic, seconds, 100).records


def endtxn_latency(bootstrap: str, topic: str, samples: int) -> list[float]:
    """commit_transaction() of 10-record transactions whose records are already acknowledged:
    EndTxn alone (PrepareCommit made durable; the markers are written after the answer)."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"latency-{topic}", **PRODUCER_CONFIG}
    )
    producer.init_transactions(TIMEOUT_S)
    latencies = []
    for _ in range(samples):
        producer.begin_transaction()
        for _ in range(10):
            producer.produce(topic, VALUE, partition=0)
        if producer.flush(TIMEOUT_S) != 0:
            raise RuntimeError("flush failed")
        began = time.perf_counter()
        producer.commit_transaction(TIMEOUT_S)
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies


def consume_s(bootstrap: str, topic: str, isolation: str, records: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-txn",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            # When its fetch queue is over queued.min.messages, librdkafka postpones the next
            # fetch by fetch.queue.backoff.ms (default 1000). The app empties the queue well
            # within that, then waits: the same read took 1.8 s or 5 s (same fetches, same
            # bytes) at either isolation level, depending on how often that happened.
            "fetch.queue.backoff.ms": 10,
            "log_level": 0,
        }
    )
    try:
        start = time.perf_counter()
        consumer.assign([TopicPartition(topic, 0, 0)])
        seen = 0
        deadline = start + TIMEOUT_S
        while seen < records:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"read {seen} of {records} records of {topic}")
            for message in consumer.consume(10_000, 1.0):
                if message.error() is not None:
                    raise KafkaException(message.error())
                seen += 1
        return time.perf_counter() - start
    finally:
        consumer.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def run(seconds: float, repeat: int, reads: int, progress: bool) -> dict[str, Any]:
    bases: list[ProduceRun] = []
    results: dict[str, list[tuple[ProduceRun, float]]] = {}
    consume: dict[str, list[float]] = {"read_committed": [], "read_uncommitted": []}
    with broker_process(*RECYCLING_SETTINGS) as broker:
        bootstrap = broker.bootstrap

        def idempotent() -> ProduceRun:
            return on_fresh_topic(broker, "idem", lambda t: run_idempotent(bootstrap, t, seconds))

        def transactional(interval: int) -> Callable[[], ProduceRun]:
            return lambda: on_fresh_topic(
                broker,
                f"txn{interval}",
                lambda t: run_transactional(bootstrap, t, seconds, interval),
            )

        idempotent()  # warms the broker and the client library up; not measured
        for round_ in range(repeat):
            order = in_turn(COMMIT_INTERVALS_MS, round_)
            round_bases, rated = bracketed(idempotent, [transactional(i) for i in order])
            bases.extend(round_bases)
            for result, ratio in rated:
                results.setdefault(result.label, []).append((result, ratio))
            if progress:
                line = ", ".join(f"{r.label} {ratio:.3f}" for r, ratio in rated)
                print(f"  round {round_}: vs idempotent {line}", file=sys.stderr)
        create_topic(bootstrap, "bench-latency", timeout_s=30)
        latency = endtxn_latency(bootstrap, "bench-latency", LATENCY_SAMPLES)
        reread_topic, reread_records = write_read_topic(bootstrap, min(seconds, 1.0))
        for round_ in range(reads):
            for level in in_turn(["read_committed", "read_uncommitted"], round_):
                consume[level].append(consume_s(bootstrap, reread_topic, level, reread_records))
    produce = {"idempotent": produce_figures(bases, [1.0])}
    for label, pairs in results.items():
        produce[label] = produce_figures([r for r, _ in pairs], [ratio for _, ratio in pairs])
    consume_rates = {
        level: reread_records / statistics.median(times) for level, times in consume.items()
    }
    return {
        "seconds_per_run": seconds,
        "repeat": repeat,
        "reads": reads,
        "broker_settings": list(RECYCLING_SETTINGS),
        "produce": produce,
        "endtxn_ms_p50": percentile(latency, 0.5),
        "endtxn_ms_p99": percentile(latency, 0.99),
        "consume_records": reread_records,
        "consume_records_per_s": consume_rates,
        "consume_ratio": consume_rates["read_committed"] / consume_rates["read_uncommitted"],
        "loadavg": os.getloadavg(),
    }


def produce_figures(runs: list[ProduceRun], ratios: list[float]) -> dict[str, Any]:
    commits = [c for r in runs for c in r.commit_ms]
    cpu = [r.broker_us_per_record for r in runs if r.broker_us_per_record is not None]
    return {
        "records_per_s": statistics.median(r.records_per_s for r in runs),
        "mb_per_s": statistics.median(r.records_per_s for r in runs) * len(VALUE) / 1e6,
        "ratio_to_idempotent": statistics.median(ratios),
        "broker_us_per_record": statistics.median(cpu) if cpu else None,
        "commits": len(commits),
        "commit_ms_p50": percentile(commits, 0.5) if commits else None,
        "commit_ms_p99": percentile(commits, 0.99) if commits else None,
        "runs": [asdict(r) | {"commit_ms": None} for r in runs],
    }


def report_text(out: dict[str, Any]) -> str:
    lines = [
        f"{'producer':<14} {'rec/s':>9} {'MB/s':>7} {'vs idem':>8} {'broker us/rec':>14} "
        f"{'commits':>8} {'commit p50':>11} {'commit p99':>11}"
    ]
    for label, p in out["produce"].items():
        p50 = "-" if p["commit_ms_p50"] is None else f"{p['commit_ms_p50']:.2f} ms"
        p99 = "-" if p["commit_ms_p99"] is None else f"{p['commit_ms_p99']:.2f} ms"
        cpu = "-" if p["broker_us_per_record"] is None else f"{p['broker_us_per_record']:.2f}"
        lines.append(
            f"{label:<14} {p['records_per_s']:>9,.0f} {p['mb_per_s']:>7.1f} "
            f"{p['ratio_to_idempotent']:>8.3f} {cpu:>14} {p['commits']:>8} {p50:>11} {p99:>11}"
        )
    lines.append(
        f"EndTxn alone (10-record txns, flushed first): p50 {out['endtxn_ms_p50']:.2f} ms, "
        f"p99 {out['endtxn_ms_p99']:.2f} ms"
    )
    rates = out["consume_records_per_s"]
    lines.append(
        f"consume {out['consume_records']:,} records ({out['reads']} reads each, median): "
        "read_committed "
        f"{rates['read_committed']:,.0f} rec/s, read_uncommitted "
        f"{rates['read_uncommitted']:,.0f} rec/s, ratio {out['consume_ratio']:.3f}"
    )
    lines.append(f"load average at the end: {out['loadavg']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samsa.bench.transactions")
    parser.add_argument("--seconds", type=float, default=5.0, help="per produce run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--reads", type=int, default=9, help="consumer reads per isolation level, alternating"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out = run(args.seconds, args.repeat, args.reads, progress=not args.json)
    print(json.dumps(out, indent=2) if args.json else report_text(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
