"""Log compaction benchmarks (issue 19).

    python -m samsa.bench.compaction coordinators [--commits 1000000] [--transactions 100000]
    python -m samsa.bench.compaction restore [--keys 10000] [--updates 1000000]
    python -m samsa.bench.compaction throughput [--seconds 20]

coordinators: a broker (in this process, on real files) whose `__consumer_offsets` holds
`--commits` offset commits (10 partitions per OffsetCommit, as one batch, over `--groups`
groups) and whose `__transaction_state` holds `--transactions` transactions (three transitions
each: Ongoing, PrepareCommit, CompleteCommit, over `--ids` transactional ids). It is closed and
reopened (the restart: `Broker.open`, everything a `samsa serve` start does before it listens),
and each coordinator log is replayed into fresh state (the coordinator load). Then the cleaner
runs to the end, and the restart and loads are measured again. `--segment-bytes` sets both
internal topics' segment size (samsa's default, 8 MiB, unless given; Kafka's is 100 MiB): the
active segment is never cleaned, so it is what a restart still replays beyond the live keys.

restore: `--updates` records over `--keys` keys produced to a compacted topic of a `samsa
serve` subprocess (segment.bytes 16 MiB, so the log rolls), then the streams runtime's restore
(`samsa.streams.restore`, a read_committed confluent-kafka consumer) times a full restore of one
store, before and after the broker's cleaner has compacted the changelog.

throughput: produce rate (confluent-kafka, acks=all, 100-byte values) to a plain topic of a
`samsa serve` subprocess for `--seconds`, alone and while the broker's cleaner compacts a large
dirty compacted topic; the ratio of the two.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from samsa.broker.core import Broker, Endpoint
from samsa.config import BrokerConfig
from samsa.coordinator.group.offsets import OffsetStore, offset_key, offset_value
from samsa.coordinator.txn.machine import TxnStateMachine, read_txn_record
from samsa.coordinator.txn.metadata import TxnMetadata
from samsa.coordinator.txn.states import TxnState
from samsa.log.cleaner import LogCleaner
from samsa.log.partition import PartitionLog
from samsa.log.storage import OsStorage

PARTITIONS_PER_COMMIT = 10
MIB = 1 << 20


@dataclass(frozen=True)
class Load:
    restart_s: float
    offsets_load_s: float
    txn_load_s: float
    offsets_log_bytes: int
    txn_log_bytes: int


def _broker(data_dir: str, segment_bytes: int) -> Broker:
    config = BrokerConfig(
        offsets_topic_segment_bytes=segment_bytes,
        transaction_state_log_segment_bytes=segment_bytes,
        log_flush_interval_messages=2,  # the high watermark follows the log end: no fsync wait
    )
    return Broker(
        config,
        OsStorage(),
        data_dir,
        lambda: int(time.time() * 1000),
        Endpoint("127.0.0.1", 9092),
        uuid.uuid4,
    )


def _fill(broker: Broker, commits: int, groups: int, transactions: int, ids: int) -> None:
    now = int(time.time() * 1000)
    for n in range(commits // PARTITIONS_PER_COMMIT):
        group = f"group-{n % groups}"
        broker.groups.runtime.append(
            [
                (offset_key(group, "events", p), offset_value(n, -1, "", now))
                for p in range(PARTITIONS_PER_COMMIT)
            ]
        )
    for n in range(transactions):
        meta = TxnMetadata(f"txn-{n % ids}", 1000 + n % ids, producer_epoch=0, update_ms=now)
        partitions = frozenset({("events", n % 10)})
        for state in (TxnState.ONGOING, TxnState.PREPARE_COMMIT, TxnState.COMPLETE_COMMIT):
            done = state is TxnState.COMPLETE_COMMIT
            broker.txn.runtime.append(
                [meta.but(state=state, partitions=frozenset() if done else partitions)]
            )


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def _load(data_dir: str, segment_bytes: int) -> tuple[Load, Broker]:
    broker = _broker(data_dir, segment_bytes)
    restart_s, _ = _timed(broker.open)
    offsets_log = broker.groups.log
    txn_log = broker.txn.txn_log

    def offsets() -> None:
        OffsetStore(offsets_log.log_start_offset).catch_up(offsets_log)

    def txns() -> None:
        machine = TxnStateMachine(lambda: -1, broker.txn.settings)
        for key, value in broker.txn.runtime.read():
            meta = read_txn_record(key, value)
            if meta is not None:
                machine.replay(meta)

    offsets_s, _ = _timed(offsets)
    txn_s, _ = _timed(txns)
    load = Load(restart_s, offsets_s, txn_s, offsets_log.size_bytes, txn_log.size_bytes)
    return load, broker


def coordinators(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(prefix="samsa-bench-compaction-")
    try:
        broker = _broker(data_dir, args.segment_bytes)
        broker.open()
        fill_s, _ = _timed(
            lambda: _fill(broker, args.commits, args.groups, args.transactions, args.ids)
        )
        broker.close()
        before, broker = _load(data_dir, args.segment_bytes)
        logs: list[PartitionLog] = [broker.groups.log, broker.txn.txn_log]
        cleaner = LogCleaner(lambda: logs, broker.clock_ms)
        clean_s, _ = _timed(cleaner.run_until_idle)
        broker.close()
        after, broker = _load(data_dir, args.segment_bytes)
        broker.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "commits": args.commits,
        "transactions": args.transactions,
        "groups": args.groups,
        "ids": args.ids,
        "segment_bytes": args.segment_bytes,
        "fill_s": fill_s,
        "clean_s": clean_s,
        "cleaned_bytes_read": cleaner.stats.bytes_read,
        "before": asdict(before),
        "after": asdict(after),
    }


# ----------------------------------------------------------------- against `samsa serve`
def _produce(bootstrap: str, topic: str, count: int, keys: int, value_bytes: int) -> None:
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20, "acks": "all"}
    )
    value = b"v" * value_bytes
    for n in range(count):
        while True:
            try:
                producer.produce(topic, value, b"key-%d" % (n % keys), partition=0)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(600)


def _create(bootstrap: str, topic: str, configs: dict[str, str]) -> None:
    from samsa.testing import topics

    topics.create_topic(bootstrap, topic, 1, configs, timeout_s=60)


def restore_bench(args: argparse.Namespace) -> dict[str, Any]:
    from confluent_kafka import Consumer

    from samsa.bench.broker import broker_process
    from samsa.streams.restore import restore
    from samsa.streams.serde import BytesSerde
    from samsa.streams.settings import Settings
    from samsa.streams.store import KeyValueStore, StoreSpec

    topic = "app-store-changelog"
    with broker_process() as broker:
        _create(
            broker.bootstrap,
            topic,
            {
                "cleanup.policy": "compact",
                "segment.bytes": str(16 * MIB),
                "min.compaction.lag.ms": str(3_600_000),  # held back until measured once
            },
        )
        produce_s, _ = _timed(
            lambda: _produce(broker.bootstrap, topic, args.updates, args.keys, 100)
        )

        def restored() -> tuple[int, int]:
            settings = Settings(application_id="app", bootstrap_servers=broker.bootstrap)
            consumer = Consumer(settings.restore_consumer())
            store = KeyValueStore(StoreSpec("store", BytesSerde(), BytesSerde()), 0)
            try:
                applied = restore(consumer, [(topic, store)], 600_000)
            finally:
                consumer.close()
            return applied, len(store)

        before_s, (before_records, keys_before) = _timed(restored)
        from confluent_kafka.admin import (
            AdminClient,
            AlterConfigOpType,
            ConfigEntry,
            ConfigResource,
        )

        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        lag = ConfigEntry("min.compaction.lag.ms", "0", incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource("topic", topic, incremental_configs=[lag])
        admin.incremental_alter_configs([resource])[resource].result(60)
        started = time.perf_counter()
        while True:
            time.sleep(1)
            after_s, (after_records, keys_after) = _timed(restored)
            if after_records < 2 * args.keys + 200_000 or time.perf_counter() - started > 900:
                break
        clean_wait_s = time.perf_counter() - started
    return {
        "keys": args.keys,
        "updates": args.updates,
        "produce_s": produce_s,
        "before": {"restore_s": before_s, "records": before_records, "store_keys": keys_before},
        "after": {"restore_s": after_s, "records": after_records, "store_keys": keys_after},
        "cleaned_within_s": clean_wait_s,
    }


def _rate(bootstrap: str, topic: str, seconds: float) -> float:
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "batch.size": 65536}
    )
    value = b"p" * 100
    sent = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        try:
            producer.produce(topic, value, partition=0)
            sent += 1
        except BufferError:
            producer.poll(0.01)
        if sent % 1000 == 0:
            producer.poll(0)
    producer.flush(120)
    return sent / (time.perf_counter() - started)


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    from samsa.bench.broker import broker_process

    rates: dict[str, list[float]] = {"alone": [], "cleaning": []}
    cleaner_busy: list[int] = []
    with broker_process() as broker:
        _create(broker.bootstrap, "plain", {})
        for round_ in range(args.repeat):
            rates["alone"].append(_rate(broker.bootstrap, "plain", args.seconds))
            dirty = f"dirty-{round_}"
            _create(
                broker.bootstrap,
                dirty,
                {
                    "cleanup.policy": "compact",
                    "segment.bytes": str(8 * MIB),
                    "min.cleanable.dirty.ratio": "0.01",
                },
            )
            _produce(broker.bootstrap, dirty, args.dirty_records, 1000, 200)
            # At its paced rate the cleaner takes longer than the run to clean it.
            rates["cleaning"].append(_rate(broker.bootstrap, "plain", args.seconds))
            cleaner_busy.append(_cleaner_busy(broker.bootstrap, dirty, args.dirty_records))
    alone = sorted(rates["alone"])[len(rates["alone"]) // 2]
    cleaning = sorted(rates["cleaning"])[len(rates["cleaning"]) // 2]
    return {
        "seconds": args.seconds,
        "repeat": args.repeat,
        "rates": rates,
        "alone_per_s": alone,
        "cleaning_per_s": cleaning,
        "ratio": cleaning / alone,
        "dirty_records_left_after_run": cleaner_busy,
    }


def _cleaner_busy(bootstrap: str, topic: str, written: int) -> int:
    """Records still in the dirty topic right after the run: above its 1000 keys, the cleaner
    had not finished with it (so it was working the whole run)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-count",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    count = 0
    try:
        while True:
            messages = consumer.consume(10_000, 5.0)
            if not messages:
                return count
            for message in messages:
                if message.error() is not None:
                    return count
                count += 1
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samsa.bench.compaction")
    sub = parser.add_subparsers(dest="bench", required=True)
    c = sub.add_parser("coordinators")
    c.add_argument("--commits", type=int, default=1_000_000)
    c.add_argument("--groups", type=int, default=1000)
    c.add_argument("--transactions", type=int, default=100_000)
    c.add_argument("--ids", type=int, default=100)
    c.add_argument("--segment-bytes", type=int, default=8 * MIB)
    r = sub.add_parser("restore")
    r.add_argument("--keys", type=int, default=10_000)
    r.add_argument("--updates", type=int, default=1_000_000)
    t = sub.add_parser("throughput")
    t.add_argument("--seconds", type=float, default=20.0)
    t.add_argument("--repeat", type=int, default=3)
    t.add_argument("--dirty-records", type=int, default=600_000)
    args = parser.parse_args(argv)
    benches = {"coordinators": coordinators, "restore": restore_bench, "throughput": throughput}
    result = benches[args.bench](args)
    result["cpus"] = os.cpu_count()
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
