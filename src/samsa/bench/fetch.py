"""Zero-copy fetch: consume throughput against the mock, and the broker's CPU per consumed MB.

    python -m samsa.bench.fetch [--records N] [--repeat K] [--before-src DIR] [--json]

Each size (100 B and 1 KB) is written and read back as in `samsa.bench.broker`'s consume
workload (chunks of 3 MB, each read by a fresh `assign()`-ed confluent-kafka consumer, timed
from `assign()` to its last record), against `samsa serve` and librdkafka's mock cluster, one
target after the other in each of K rounds. For samsa the broker process's user + system CPU
time (/proc/PID/task/*/schedstat) is summed over the timed reads only, per MB of values read;
and again for one consumer reading all N records, written first (`backlog`): fetches alone.
`--before-src DIR`: also run `samsa serve` from the samsa source tree DIR (its `src`, put first
on PYTHONPATH), as the `before` target: old and new code measured in the same rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from confluent_kafka import Consumer, Producer

from samsa.bench import in_turn
from samsa.bench.broker import (
    CONSUME_CHUNK_BYTES,
    CONSUMER_CONFIG,
    PRODUCER_CONFIG,
    RECORD_OVERHEAD_BYTES,
    mock_cluster,
    produce_all,
    timed_read,
    wait_for_topic,
)
from samsa.testing.process import BrokerProcess

VALUE_SIZES = (100, 1024)


@dataclass
class Run:
    seconds: float
    broker_cpu_s: float | None  # None: the mock, inside this process


@dataclass
class Figure:
    target: str
    value_bytes: int
    records: int
    runs: list[Run] = field(default_factory=list)
    backlog: list[Run] = field(default_factory=list)  # samsa only: one reader of it all

    @property
    def mb(self) -> float:
        return self.records * self.value_bytes / 1e6

    @property
    def mb_per_s(self) -> float:
        return self.mb / statistics.median(r.seconds for r in self.runs)

    @property
    def cpu_ms_per_mb(self) -> float | None:
        cpus = [r.broker_cpu_s for r in self.runs if r.broker_cpu_s is not None]
        return 1000 * statistics.median(cpus) / self.mb if cpus else None

    @property
    def backlog_cpu_ms_per_mb(self) -> float | None:
        cpus = [r.broker_cpu_s for r in self.backlog if r.broker_cpu_s is not None]
        return 1000 * statistics.median(cpus) / self.mb if cpus else None


def cpu_seconds(pid: int) -> float:
    """CPU time a process's threads have run, in ns resolution (/proc/PID/schedstat of each
    task: /proc/PID/stat counts 10 ms ticks, too coarse for a 0.1 s read)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9


@contextlib.contextmanager
def serve(src: str | None) -> Iterator[tuple[str, int | None]]:
    """`samsa serve` (from source tree `src`, or this one): its bootstrap and pid."""
    data_dir = tempfile.mkdtemp(prefix="samsa-bench-fetch-")
    env = None
    if src is not None:
        env = {**os.environ, "PYTHONPATH": os.path.join(src, "src")}
    broker = BrokerProcess(data_dir, env=env)
    try:
        broker.start()
        assert broker.process is not None
        yield broker.bootstrap, broker.process.pid
    finally:
        broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def mock() -> Iterator[tuple[str, int | None]]:
    with mock_cluster() as bootstrap:
        yield bootstrap, None


def consume_run(bootstrap: str, pid: int | None, records: int, value_bytes: int) -> Run:
    """`records` values written (untimed) and read back in chunks; the reads timed, and the
    broker's CPU during them summed."""
    topic = f"bench-fetch-{value_bytes}-{uuid.uuid4().hex[:8]}"
    chunk = max(1, min(records, CONSUME_CHUNK_BYTES // (value_bytes + RECORD_OVERHEAD_BYTES)))
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG})
    wait_for_topic(producer, topic)
    value = os.urandom(value_bytes)
    elapsed = cpu = 0.0
    offset = 0
    while offset < records:
        count = min(chunk, records - offset)
        produce_all(producer, topic, value, count)
        consumer = Consumer({"bootstrap.servers": bootstrap, **CONSUMER_CONFIG})
        try:
            before = cpu_seconds(pid) if pid is not None else 0.0
            elapsed += timed_read(consumer, topic, offset, count)
            cpu += (cpu_seconds(pid) - before) if pid is not None else 0.0
        finally:
            consumer.close()
        offset += count
    return Run(elapsed, cpu if pid is not None else None)


def backlog_run(bootstrap: str, pid: int, records: int, value_bytes: int) -> Run:
    """`records` values written first (untimed), then read by one consumer from offset 0: the
    broker's CPU per MB of fetches alone, without a connection and its set-up per 3 MB."""
    topic = f"bench-backlog-{value_bytes}-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG})
    wait_for_topic(producer, topic)
    produce_all(producer, topic, os.urandom(value_bytes), records)
    consumer = Consumer({"bootstrap.servers": bootstrap, **CONSUMER_CONFIG})
    try:
        consumer.list_topics(topic, timeout=30)
        before = cpu_seconds(pid)
        elapsed = timed_read(consumer, topic, 0, records)
        return Run(elapsed, cpu_seconds(pid) - before)
    finally:
        consumer.close()


def measure(records: int, repeat: int, before_src: str | None, progress: bool) -> list[Figure]:
    targets: dict[str, contextlib.AbstractContextManager[tuple[str, int | None]]]
    names = ["samsa", "mock"] + (["before"] if before_src else [])
    figures = {(n, size): Figure(n, size, records) for n in names for size in VALUE_SIZES}
    for round_ in range(repeat):
        targets = {"samsa": serve(None), "mock": mock()}
        if before_src:
            targets["before"] = serve(before_src)
        for name, target in in_turn(list(targets.items()), round_):
            with target as (bootstrap, pid):
                for size in VALUE_SIZES:
                    run = consume_run(bootstrap, pid, records, size)
                    figures[name, size].runs.append(run)
                    if pid is not None:
                        backlog = backlog_run(bootstrap, pid, records, size)
                        figures[name, size].backlog.append(backlog)
                    if progress:
                        print(
                            f"  round {round_ + 1}: {name:<6} {size:>5} B {run.seconds:.2f} s,"
                            f" broker CPU {run.broker_cpu_s}",
                            file=sys.stderr,
                            flush=True,
                        )
    return list(figures.values())


def table(figures: list[Figure]) -> str:
    by = {(f.target, f.value_bytes): f for f in figures}
    lines = [
        "| consume | target | MB/s (median) | target/mock | broker CPU ms/MB | backlog CPU ms/MB |",
        "|---------|--------|--------------:|------------:|-----------------:|------------------:|",
    ]
    for f in figures:
        mock_f = by["mock", f.value_bytes]
        cpu, backlog = f.cpu_ms_per_mb, f.backlog_cpu_ms_per_mb
        lines.append(
            f"| {f.value_bytes} B | {f.target} | {f.mb_per_s:,.1f} |"
            f" {f.mb_per_s / mock_f.mb_per_s:.2f} | {'-' if cpu is None else f'{cpu:.2f}'} |"
            f" {'-' if backlog is None else f'{backlog:.2f}'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samsa.bench.fetch", description=__doc__)
    parser.add_argument("--records", type=int, default=100_000, help="per run and size")
    parser.add_argument("--repeat", type=int, default=3, help="rounds")
    parser.add_argument("--before-src", help="a samsa source tree to measure as `before`")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    figures = measure(args.records, args.repeat, args.before_src, progress=not args.json)
    load_after = os.getloadavg()
    if args.json:
        rows = [
            {
                **asdict(f),
                "mb_per_s": f.mb_per_s,
                "cpu_ms_per_mb": f.cpu_ms_per_mb,
                "backlog_cpu_ms_per_mb": f.backlog_cpu_ms_per_mb,
            }
            for f in figures
        ]
        print(json.dumps({"load": [load[0], load_after[0]], "figures": rows}, indent=2))
    else:
        print(
            f"load average {load[0]:.1f} before, {load_after[0]:.1f} after (nproc {os.cpu_count()})"
        )
        print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
