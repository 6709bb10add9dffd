"""Transactions benchmark: what exactly-once costs a confluent-kafka producer and consumer.

    python -m samsa.bench.transactions [--seconds S] [--repeat K] [--reads R] [--json]

Against one `samsa serve` subprocess (fresh temp data dir, default durable settings):

- produce throughput of 1 KB records to one partition for S seconds with `acks=all`: an
  idempotent producer (the baseline), then transactional producers committing every 10, 100
  and 1000 ms (begin, produce until the interval is over, `commit_transaction()`); the
  configurations take turns, K rounds, each figure the median;
- commit latency: the time `commit_transaction()` takes in those runs (it includes flushing the
  transaction's last records), and, separately, for small transactions (10 records) whose
  records were flushed first, so only EndTxn is timed;
- consume throughput of a topic written by the 100 ms run, read to its end with an assign()
  consumer at read_committed and at read_uncommitted, alternating, R reads each (default 9:
  with 3 the ratio moved by 2-3 % between runs of the same code).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from samsa.bench.broker import samsa_process
from samsa.testing.topics import create_topic

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


@dataclass
class ProduceRun:
    label: str
    records: int
    seconds: float
    commit_ms: list[float] = field(default_factory=list)

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds


def run_idempotent(bootstrap: str, topic: str, seconds: float) -> ProduceRun:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, **PRODUCER_CONFIG}
    )
    acked = [0]

    def report(error: Any, _message: Any) -> None:
        if error is None:
            acked[0] += 1

    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        try:
            producer.produce(topic, VALUE, partition=0, on_delivery=report)
        except BufferError:
            producer.poll(0.001)
            continue
        producer.poll(0)
    if producer.flush(TIMEOUT_S) != 0:
        raise RuntimeError("idempotent producer did not flush")
    elapsed = time.perf_counter() - start
    return ProduceRun("idempotent", acked[0], elapsed)


def run_transactional(bootstrap: str, topic: str, seconds: float, interval_ms: int) -> ProduceRun:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"bench-{topic}", **PRODUCER_CONFIG}
    )
    producer.init_transactions(TIMEOUT_S)
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
    results: dict[str, list[ProduceRun]] = {}
    consume: dict[str, list[float]] = {"read_committed": [], "read_uncommitted": []}
    with samsa_process() as bootstrap:
        configs: list[int | None] = [None, *COMMIT_INTERVALS_MS]
        reread_topic, reread_records = "", 0
        for round_ in range(repeat):
            order = configs if round_ % 2 == 0 else list(reversed(configs))
            for interval in order:
                topic = f"bench-{interval or 'idem'}-{round_}"
                create_topic(bootstrap, topic, timeout_s=30)
                if interval is None:
                    result = run_idempotent(bootstrap, topic, seconds)
                else:
                    result = run_transactional(bootstrap, topic, seconds, interval)
                if interval == 100 and not reread_topic:
                    reread_topic, reread_records = topic, result.records
                results.setdefault(result.label, []).append(result)
                if progress:
                    print(
                        f"  round {round_}: {result.label:<12} {result.records_per_s:>9,.0f} rec/s",
                        file=sys.stderr,
                    )
        create_topic(bootstrap, "bench-latency", timeout_s=30)
        latency = endtxn_latency(bootstrap, "bench-latency", LATENCY_SAMPLES)
        for round_ in range(reads):
            levels = ["read_committed", "read_uncommitted"]
            for level in levels if round_ % 2 == 0 else reversed(levels):
                consume[level].append(consume_s(bootstrap, reread_topic, level, reread_records))
    base = statistics.median(r.records_per_s for r in results["idempotent"])
    produce = {}
    for label, runs in results.items():
        rate = statistics.median(r.records_per_s for r in runs)
        commits = [c for r in runs for c in r.commit_ms]
        produce[label] = {
            "records_per_s": rate,
            "mb_per_s": rate * len(VALUE) / 1e6,
            "ratio_to_idempotent": rate / base,
            "commits": len(commits),
            "commit_ms_p50": percentile(commits, 0.5) if commits else None,
            "commit_ms_p99": percentile(commits, 0.99) if commits else None,
            "runs": [asdict(r) | {"commit_ms": None} for r in runs],
        }
    consume_rates = {
        level: reread_records / statistics.median(times) for level, times in consume.items()
    }
    return {
        "seconds_per_run": seconds,
        "repeat": repeat,
        "reads": reads,
        "produce": produce,
        "endtxn_ms_p50": percentile(latency, 0.5),
        "endtxn_ms_p99": percentile(latency, 0.99),
        "consume_records": reread_records,
        "consume_records_per_s": consume_rates,
        "consume_ratio": consume_rates["read_committed"] / consume_rates["read_uncommitted"],
        "loadavg": os.getloadavg(),
    }


def report_text(out: dict[str, Any]) -> str:
    lines = [
        f"{'producer':<14} {'rec/s':>9} {'MB/s':>7} {'vs idem':>8} {'commits':>8} "
        f"{'commit p50':>11} {'commit p99':>11}"
    ]
    for label, p in out["produce"].items():
        p50 = "-" if p["commit_ms_p50"] is None else f"{p['commit_ms_p50']:.2f} ms"
        p99 = "-" if p["commit_ms_p99"] is None else f"{p['commit_ms_p99']:.2f} ms"
        lines.append(
            f"{label:<14} {p['records_per_s']:>9,.0f} {p['mb_per_s']:>7.1f} "
            f"{p['ratio_to_idempotent']:>8.3f} {p['commits']:>8} {p50:>11} {p99:>11}"
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
