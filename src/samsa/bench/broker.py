"""Broker core benchmark: confluent-kafka throughput against samsa and against librdkafka's
in-process mock cluster (`test.mock.num.brokers`), plus the embedded broker's start time.

    python -m samsa.bench.broker [--records N] [--repeat K] [--json]

For each value size (100 B and 1 KB) it produces N records with acks=all to a fresh
one-partition topic, timing from the first `produce()` until every delivery report has arrived,
then reads them all back with an assign()-based consumer (no group join inside the timing),
timing from `assign()` until the last record. The client runs in this process in every case;
samsa runs as a `samsa serve` subprocess (fresh temp data dir, free port), and, for reference,
also as an embedded broker in this process (sharing the GIL with the client). Each figure is
the median of K runs. Ratios are samsa (subprocess) / mock. Before and after, it measures how
fast this machine writes 1 MB chunks into the page cache (and with an fdatasync each): a bound
on any broker that keeps what it acknowledges on disk, which the in-memory mock does not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from samsa.testing.process import BrokerProcess

VALUE_SIZES = (100, 1024)
DEFAULT_RECORDS = 100_000
DEFAULT_REPEAT = 3
START_SAMPLES = 10
TIMEOUT_S = 300.0
# The mock cluster keeps about 5 MB per partition; consume reads back chunks well below that.
CONSUME_CHUNK_BYTES = 3_000_000
RECORD_OVERHEAD_BYTES = 20
CONSUME_BATCH = 10_000

# The same client settings against every target. acks=all; the rest are librdkafka defaults
# (linger.ms 5, batch.size 1 MB, no compression, no idempotence), stated so runs stay comparable.
PRODUCER_CONFIG: dict[str, Any] = {
    "acks": "all",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "compression.type": "none",
    "enable.idempotence": False,
    "queue.buffering.max.messages": 100_000,
}
CONSUMER_CONFIG: dict[str, Any] = {
    "group.id": "samsa-bench",
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "log_level": 3,
}


@dataclass
class Throughput:
    records: int
    value_bytes: int
    seconds: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.records * self.value_bytes / self.seconds / 1e6


@dataclass
class SizeResult:
    value_bytes: int
    records: int
    produce_s: dict[str, float] = field(default_factory=dict)
    consume_s: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------- targets
@contextlib.contextmanager
def broker_process(*settings: str) -> Iterator[BrokerProcess]:
    """`samsa serve` in a subprocess on a free port and a temp data dir, started."""
    data_dir = tempfile.mkdtemp(prefix="samsa-bench-")
    broker = BrokerProcess(data_dir, settings)
    try:
        yield broker.start()
    finally:
        broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def samsa_process(*settings: str) -> Iterator[str]:
    """`broker_process`, yielding only its bootstrap."""
    with broker_process(*settings) as broker:
        yield broker.bootstrap


@contextlib.contextmanager
def samsa_embedded() -> Iterator[str]:
    from samsa.testing import EmbeddedBroker

    broker = EmbeddedBroker().start()
    try:
        yield broker.bootstrap
    finally:
        broker.close()


@contextlib.contextmanager
def mock_cluster() -> Iterator[str]:
    """librdkafka's mock cluster, created by (and living as long as) a holder client; the
    benchmark's clients reach it through the bootstrap address its metadata reports."""
    holder = Producer({"test.mock.num.brokers": 1, "log_level": 3})
    try:
        brokers = holder.list_topics(timeout=10).brokers
        yield ",".join(f"{b.host}:{b.port}" for b in brokers.values())
    finally:
        holder.flush(10)
        del holder


@contextlib.contextmanager
def samsa_nofsync() -> Iterator[str]:
    """Diagnostic only, not durable: `samsa serve` acknowledging before fsync (it flushes every
    `log.flush.interval.ms` instead). It shows what the fsync of acks=all costs."""
    with samsa_process("log.flush.interval.messages=1000000000") as bootstrap:
        yield bootstrap


TARGETS: dict[str, Callable[[], contextlib.AbstractContextManager[str]]] = {
    "samsa": samsa_process,
    "embedded": samsa_embedded,
    "nofsync": samsa_nofsync,
    "mock": mock_cluster,
}


# ----------------------------------------------------------------- workloads
def wait_for_topic(producer: Producer, name: str) -> None:
    """Ask for the topic until it exists: both samsa and the mock auto-create topics on a
    producer's metadata request (the mock answers no CreateTopics from the admin client)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        topic = producer.list_topics(name, timeout=10).topics.get(name)
        if topic is not None and topic.error is None and 0 in topic.partitions:
            return
        time.sleep(0.05)
    raise TimeoutError(f"topic {name} did not appear")


def produce_all(producer: Producer, topic: str, value: bytes, records: int) -> None:
    """Produce `records` copies of `value` to partition 0 and wait for every delivery report."""
    delivered = [0]
    errors: list[KafkaError] = []

    def report(error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            errors.append(error)
        else:
            delivered[0] += 1

    for _ in range(records):
        while True:
            try:
                producer.produce(topic, value, partition=0, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.001)
        producer.poll(0)
    remaining = producer.flush(TIMEOUT_S)
    if remaining or errors or delivered[0] != records:
        raise RuntimeError(
            f"produce to {topic}: {delivered[0]}/{records} delivered, "
            f"{remaining} outstanding, errors {errors[:3]}"
        )


def produce(
    bootstrap: str,
    topic: str,
    records: int,
    value_bytes: int,
    client: dict[str, Any] | None = None,
) -> float:
    """Seconds from the first produce() until every delivery report (acks=all) has arrived.
    `client`: more client settings (security: `samsa.bench.security`)."""
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG, **(client or {})})
    value = os.urandom(value_bytes)
    # Create the topic and warm the connection (metadata, API versions) outside the timing.
    wait_for_topic(producer, topic)
    start = time.perf_counter()
    produce_all(producer, topic, value, records)
    return time.perf_counter() - start


def consume(
    bootstrap: str,
    topic: str,
    records: int,
    value_bytes: int,
    client: dict[str, Any] | None = None,
) -> float:
    """Seconds spent reading `records` records back with an assign()-based consumer.

    librdkafka's mock cluster keeps only about 5 MB per partition (older segments are dropped),
    so on every target the records are written in chunks of at most `CONSUME_CHUNK_BYTES`
    (untimed), and each chunk is read back from its first offset by a fresh consumer, already
    connected (timed: from assign() until the chunk's last record arrives). A fresh consumer per
    chunk, because a reassigned one waits out its previous long-poll fetch, which the mock only
    answers after `fetch.wait.max.ms`.
    """
    chunk = max(1, min(records, CONSUME_CHUNK_BYTES // (value_bytes + RECORD_OVERHEAD_BYTES)))
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG, **(client or {})})
    wait_for_topic(producer, topic)
    value = os.urandom(value_bytes)
    elapsed = 0.0
    offset = 0
    while offset < records:
        count = min(chunk, records - offset)
        produce_all(producer, topic, value, count)
        consumer = Consumer({"bootstrap.servers": bootstrap, **CONSUMER_CONFIG, **(client or {})})
        try:
            elapsed += timed_read(consumer, topic, offset, count)
        finally:
            consumer.close()
        offset += count
    return elapsed


def timed_read(consumer: Consumer, topic: str, offset: int, count: int) -> float:
    """Seconds from assign() at `offset` of partition 0 until `count` records have arrived;
    the consumer has looked the topic up first (connected, outside the timing)."""
    consumer.list_topics(topic, timeout=30)
    start = time.perf_counter()
    consumer.assign([TopicPartition(topic, 0, offset)])
    received = 0
    while received < count:
        if time.perf_counter() - start > TIMEOUT_S:
            raise TimeoutError(f"consume from {topic}: {received}/{count} received")
        wanted = min(CONSUME_BATCH, count - received)
        for message in consumer.consume(num_messages=wanted, timeout=1.0):
            error = message.error()
            if error is None:
                received += 1
            elif error.code() != KafkaError._PARTITION_EOF:
                raise KafkaException(error)
    return time.perf_counter() - start


def run_target(name: str, sizes: list[SizeResult], repeat: int, progress: bool) -> None:
    with TARGETS[name]() as bootstrap:
        for result in sizes:
            produced: list[float] = []
            consumed: list[float] = []
            for _ in range(repeat):
                topic = f"bench-{result.value_bytes}-{uuid.uuid4().hex[:8]}"
                produced.append(produce(bootstrap, topic, result.records, result.value_bytes))
                consumed.append(
                    consume(bootstrap, topic + "-c", result.records, result.value_bytes)
                )
                if progress:
                    print(
                        f"  {name:<8} {result.value_bytes:>5} B: produce {produced[-1]:.2f} s,"
                        f" consume {consumed[-1]:.2f} s",
                        file=sys.stderr,
                        flush=True,
                    )
            result.produce_s[name] = statistics.median(produced)
            result.consume_s[name] = statistics.median(consumed)


# ----------------------------------------------------------------- the disk's own speed
FLOOR_BYTES = 200 * 1024 * 1024
FLOOR_CHUNK_BYTES = 1024 * 1024


def page_cache_mb_s(sync_each: bool) -> float:
    """MB/s of writing 1 MB chunks to a fresh file where the benchmark's data dirs go, either
    into the page cache only, or with an fdatasync after each chunk (what acks=all costs a
    broker at best). No broker can take 1 KB records faster than this."""
    chunk = os.urandom(FLOOR_CHUNK_BYTES)
    fd, path = tempfile.mkstemp(prefix="samsa-bench-floor-")
    try:
        start = time.perf_counter()
        for _ in range(FLOOR_BYTES // FLOOR_CHUNK_BYTES):
            os.write(fd, chunk)
            if sync_each:
                os.fdatasync(fd)
        return FLOOR_BYTES / (time.perf_counter() - start) / 1e6
    finally:
        os.close(fd)
        os.unlink(path)


def disk_floor() -> dict[str, float]:
    return {
        "write_mb_s": page_cache_mb_s(sync_each=False),
        "write_fdatasync_mb_s": page_cache_mb_s(sync_each=True),
    }


# ----------------------------------------------------------------- start time
def embedded_start_s(samples: int) -> list[float]:
    """Seconds from EmbeddedBroker().start() to return (accepting connections), per sample."""
    from samsa.testing import EmbeddedBroker

    times = []
    for _ in range(samples):
        broker = EmbeddedBroker()
        start = time.perf_counter()
        broker.start()
        times.append(time.perf_counter() - start)
        broker.close()
    return times


def import_s(samples: int) -> list[float]:
    """Seconds to `import samsa.testing` in a fresh interpreter, per sample."""
    code = (
        "import time; t = time.perf_counter(); import samsa.testing; print(time.perf_counter() - t)"
    )
    return [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(samples)
    ]


# ----------------------------------------------------------------- report
def _version(value: Any) -> str:
    return str(value[0] if isinstance(value, tuple) else value)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import confluent_kafka

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "confluent_kafka": _version(confluent_kafka.version()),
        "librdkafka": _version(confluent_kafka.libversion()),
    }


LABELS = {
    "samsa": "samsa (serve)",
    "embedded": "samsa (embedded)",
    "nofsync": "samsa no-fsync*",
    "mock": "mock",
}


def _row(label: str, size: int, seconds: dict[str, float], records: int) -> list[str]:
    cells = [f"{label} {size} B"]
    for target in TARGETS:
        if target in seconds:
            t = Throughput(records, size, seconds[target])
            cells.append(f"{t.records_per_s:,.0f} rec/s {t.mb_per_s:.1f} MB/s")
        else:
            cells.append("-")
    for target in TARGETS:
        if target == "mock":
            continue
        if target in seconds and "mock" in seconds:
            cells.append(f"{seconds['mock'] / seconds[target]:.2f}")
        else:
            cells.append("-")
    return cells


def report_text(
    sizes: list[SizeResult], start: list[float], imports: list[float], info: dict[str, Any]
) -> str:
    header = [""] + [LABELS[t] for t in TARGETS]
    header += [f"{t}/mock" for t in TARGETS if t != "mock"]
    rows = [header]
    for result in sizes:
        rows.append(_row("produce", result.value_bytes, result.produce_s, result.records))
    for result in sizes:
        rows.append(_row("consume", result.value_bytes, result.consume_s, result.records))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        f"machine: {info['nproc']} x {info['cpu']}, Python {info['python']}, "
        f"confluent-kafka {info['confluent_kafka']}, librdkafka {info['librdkafka']}",
        f"load average before/after: {info['loadavg_before']} / {info['loadavg_after']}",
        "disk (1 MB writes to a temp file) before/after: page cache "
        f"{info['disk_before']['write_mb_s']:,.0f} / {info['disk_after']['write_mb_s']:,.0f} MB/s,"
        f" with fdatasync each {info['disk_before']['write_fdatasync_mb_s']:,.0f} / "
        f"{info['disk_after']['write_fdatasync_mb_s']:,.0f} MB/s",
        f"records per run and size: {sizes[0].records}, acks=all; median of "
        f"{info['repeat']} runs; ratio = target throughput / mock throughput",
        "",
    ]
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.append("* not durable: acknowledges before fsync; a diagnostic, not a configuration")
    lines.append("")
    if start:
        lines.append(
            f"embedded start: median {statistics.median(start) * 1000:.1f} ms "
            f"(min {min(start) * 1000:.1f}, max {max(start) * 1000:.1f}, n={len(start)})"
        )
    if imports:
        lines.append(
            f"import samsa.testing (fresh interpreter): median "
            f"{statistics.median(imports) * 1000:.0f} ms (n={len(imports)})"
        )
    return "\n".join(lines)


def report_json(
    sizes: list[SizeResult], start: list[float], imports: list[float], info: dict[str, Any]
) -> str:
    out: dict[str, Any] = {"machine": info, "results": []}
    for result in sizes:
        entry: dict[str, Any] = asdict(result)
        for kind, seconds in (("produce", result.produce_s), ("consume", result.consume_s)):
            entry[f"{kind}_records_per_s"] = {t: result.records / s for t, s in seconds.items()}
            if "mock" in seconds:
                entry[f"{kind}_ratio_to_mock"] = {
                    t: seconds["mock"] / s for t, s in seconds.items() if t != "mock"
                }
        out["results"].append(entry)
    out["embedded_start_s"] = start
    out["import_samsa_testing_s"] = imports
    return json.dumps(out, indent=2)


def _loadavg() -> str:
    with contextlib.suppress(OSError), open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samsa.bench.broker", description=__doc__)
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS, help="per run and size")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="runs per figure")
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma-separated subset of " + ", ".join(TARGETS),
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    for target in targets:
        if target not in TARGETS:
            parser.error(f"unknown target {target!r}")
    sizes = [SizeResult(size, args.records) for size in VALUE_SIZES]
    loadavg_before = _loadavg()
    floor_before = disk_floor()
    for target in targets:
        run_target(target, sizes, args.repeat, progress=True)
    floor_after = disk_floor()
    start = embedded_start_s(START_SAMPLES)
    imports = import_s(5)
    info = machine()
    info.update(
        loadavg_before=loadavg_before,
        loadavg_after=_loadavg(),
        repeat=args.repeat,
        disk_before=floor_before,
        disk_after=floor_after,
    )
    print(
        report_json(sizes, start, imports, info)
        if args.json
        else report_text(sizes, start, imports, info)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
