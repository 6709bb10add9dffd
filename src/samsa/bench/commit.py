"""One-record transactions end to end, samsa beside librdkafka's mock cluster in the same run.

    python -m samsa.bench.commit [--transactions N] [--repeat K] [--before-src DIR] [--json]

A confluent-kafka transactional producer (`acks=all`, `linger.ms` 0) runs N transactions one
after the other: `begin_transaction()`, one `produce()` of 100 B, `commit_transaction()`; each is
timed from `begin_transaction()` until `commit_transaction()` returns. On the wire that is
AddPartitionsToTxn, Produce and EndTxn, and librdkafka sends the AddPartitionsToTxn 1 ms after
the `produce()` (its "immediate" registration timer), in every target alike. The targets take
turns, K rounds, each starting fresh; the figures are the percentiles over all rounds' samples,
and for a `samsa serve` the broker's CPU time (all its threads) per transaction.

`--before-src DIR`: also run `samsa serve` from the samsa source tree DIR as the `before`
target, so old and new code are measured in the same rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer

from samsa.bench import in_turn
from samsa.bench.broker import wait_for_topic
from samsa.bench.fetch import cpu_seconds, mock, serve

WARMUP = 20
TIMEOUT_S = 30.0
Target = Callable[[], contextlib.AbstractContextManager[tuple[str, int | None]]]


def transactions_ms(bootstrap: str, count: int) -> list[float]:
    """Milliseconds of each of `count` one-record transactions (after a few untimed ones)."""
    topic = f"bench-commit-{uuid.uuid4().hex[:8]}"
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"bench-{uuid.uuid4().hex[:8]}",
            "acks": "all",
            "linger.ms": 0,
            "log_level": 0,
        }
    )
    wait_for_topic(producer, topic)
    producer.init_transactions(TIMEOUT_S)
    value = os.urandom(100)
    samples = []
    for i in range(WARMUP + count):
        start = time.perf_counter()
        producer.begin_transaction()
        producer.produce(topic, value, partition=0)
        producer.commit_transaction(TIMEOUT_S)
        if i >= WARMUP:
            samples.append((time.perf_counter() - start) * 1000)
    return samples


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(samples),
        "p90_ms": percentile(samples, 0.9),
        "p99_ms": percentile(samples, 0.99),
        "mean_ms": statistics.fmean(samples),
    }


def measure(
    count: int, repeat: int, before_src: str | None, progress: bool
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each target's transaction times (ms), and each `samsa serve`'s CPU ms per transaction
    per round."""
    targets: dict[str, Target] = {"samsa": lambda: serve(None), "mock": mock}
    if before_src is not None:
        targets["before"] = lambda: serve(before_src)
    samples: dict[str, list[float]] = {name: [] for name in targets}
    cpu: dict[str, list[float]] = {name: [] for name in targets}
    for round_ in range(repeat):
        for name, target in in_turn(list(targets.items()), round_):
            with target() as (bootstrap, pid):
                start = cpu_seconds(pid) if pid is not None else 0.0
                run = transactions_ms(bootstrap, count)
                if pid is not None:
                    cpu[name].append((cpu_seconds(pid) - start) * 1000 / (WARMUP + count))
            samples[name] += run
            if progress:
                print(
                    f"  round {round_ + 1}: {name:<5} p50 {statistics.median(run):.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    return samples, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samsa.bench.commit", description=__doc__)
    parser.add_argument("--transactions", type=int, default=500, help="per round and target")
    parser.add_argument("--repeat", type=int, default=3, help="rounds")
    parser.add_argument("--before-src", help="a samsa source tree to measure as `before`")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    samples, cpu = measure(args.transactions, args.repeat, args.before_src, not args.json)
    out: dict[str, Any] = {
        "load": [load, os.getloadavg()[0]],
        "targets": {
            name: {
                **summary(s),
                "broker_cpu_ms": statistics.median(cpu[name]) if cpu[name] else None,
            }
            for name, s in samples.items()
        },
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"load average {out['load'][0]:.1f} before, {out['load'][1]:.1f} after")
    print("| target | p50 ms | p90 ms | p99 ms | mean ms | broker CPU ms/txn |")
    print("|--------|-------:|-------:|-------:|--------:|------------------:|")
    for name, s in out["targets"].items():
        broker_cpu = "-" if s["broker_cpu_ms"] is None else f"{s['broker_cpu_ms']:.2f}"
        print(
            f"| {name} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} | {s['p99_ms']:.2f}"
            f" | {s['mean_ms']:.2f} | {broker_cpu} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
