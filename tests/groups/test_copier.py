"""Read-process-write exactly once (issue 5, part 2), after Kafka's group-mode transactions
system test (kafka-eos.md §5.1): copiers in ONE consumer group copy a 2-partition input topic to
a 2-partition output topic in transactions (about one in three aborted on purpose), while the
copiers are killed with SIGKILL and restarted, and the broker (a `samsa serve` process) is
killed with SIGKILL and restarted. A read_committed reader polling concurrently and a fresh one
afterwards must both hold every input record exactly once, in input order per partition."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import confluent_kafka
import pytest
from confluent_kafka import ConsumerGroupType
from confluent_kafka.admin import AdminClient

from samsa.testing.process import BrokerProcess
from samsa.testing.topics import create_topics, end_offsets, placed, value_of

from .support import BROKER_SETTINGS, produce_values, run_script, wait_for

pytestmark = pytest.mark.interop

INPUT = "copy-in"
OUTPUT = "copy-out"
PARTITIONS = 2
GROUP = "copiers"


class Reader(threading.Thread):
    """A read_committed consumer (assign, no group) of the output, polling while copiers run."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(name="concurrent-reader", daemon=True)
        self.consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "concurrent-reader",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "reconnect.backoff.max.ms": 200,
                "log_level": 0,
            }
        )
        self.consumer.assign([confluent_kafka.TopicPartition(OUTPUT, p, 0) for p in range(2)])
        self.seen: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def count(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.seen.values())

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                for message in self.consumer.consume(500, 0.2):
                    if message.error() is None:
                        with self.lock:
                            self.seen[placed(message)[0]].append(value_of(message))
        finally:
            self.consumer.close()


@dataclass
class Copiers:
    bootstrap: str
    tmp_path: Path
    count: int
    group_protocol: str = "classic"
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    starts: int = 0
    exits: list[tuple[int, int | None]] = field(default_factory=list)

    def log(self, index: int) -> Path:
        return self.tmp_path / f"copier-{index}.log"

    def start(self, index: int) -> None:
        self.starts += 1
        self.processes[index] = run_script(
            "copier.py",
            [
                *(self.bootstrap, GROUP, INPUT, OUTPUT, f"copier-{index}", str(self.starts)),
                *("--group-protocol", self.group_protocol),
            ],
            self.log(index),
        )

    def kill9(self, index: int) -> None:
        process = self.processes[index]
        process.send_signal(signal.SIGKILL)
        self.exits.append((index, process.wait(30)))

    def restart_exited(self) -> None:
        """A copier that exited by itself (fenced, gave up) is started again, as Kafka's test
        harness does."""
        for index, process in self.processes.items():
            if process.poll() is not None:
                self.exits.append((index, process.returncode))
                self.start(index)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)

    def text(self) -> str:
        return "\n".join(self.log(i).read_text() for i in range(self.count) if self.log(i).exists())


def read_all_committed(bootstrap: str, ends: dict[int, int]) -> dict[int, list[bytes]]:
    """A fresh read_committed consumer reads each output partition until its position reaches
    `ends` (the high watermarks, once no transaction is open)."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "final-reader",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    found: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    try:
        tps = [confluent_kafka.TopicPartition(OUTPUT, p, 0) for p in range(PARTITIONS)]
        consumer.assign(tps)
        deadline = time.monotonic() + 60
        while True:
            for message in consumer.consume(1000, 0.2):
                assert message.error() is None, message.error()
                found[placed(message)[0]].append(value_of(message))
            positions = {tp.partition: tp.offset for tp in consumer.position(tps)}
            if all(positions[p] >= ends[p] for p in range(PARTITIONS)):
                return found
            assert time.monotonic() < deadline, f"positions {positions} never reached {ends}"
    finally:
        consumer.close()


def check_exactly_once(
    name: str, expected: dict[int, list[bytes]], got: dict[int, list[bytes]]
) -> None:
    for p in range(PARTITIONS):
        values = got[p]
        duplicates = len(values) - len(set(values))
        assert duplicates == 0, f"{name}: partition {p} holds {duplicates} duplicates"
        if values != expected[p]:
            missing = len(set(expected[p]) - set(values))
            first = next(
                (i for i, (a, b) in enumerate(zip(values, expected[p], strict=False)) if a != b),
                min(len(values), len(expected[p])),
            )
            raise AssertionError(
                f"{name}: partition {p} has {len(values)} of {len(expected[p])} records, "
                f"{missing} missing, first difference at index {first}"
            )


def run_copier_test(
    tmp_path: Path,
    per_partition: int,
    copier_count: int,
    copier_bounces: int,
    broker_bounces: int,
    seed: int,
    deadline_s: float,
    group_protocol: str = "classic",
) -> None:
    rng = random.Random(seed)
    broker = BrokerProcess(str(tmp_path / "data"), BROKER_SETTINGS).start()
    copiers = Copiers(broker.bootstrap, tmp_path, copier_count, group_protocol)
    reader: Reader | None = None
    try:
        create_topics(broker.bootstrap, {INPUT: PARTITIONS, OUTPUT: PARTITIONS})
        expected = produce_values(broker.bootstrap, INPUT, PARTITIONS, per_partition, "in")
        total = PARTITIONS * per_partition
        reader = Reader(broker.bootstrap)
        reader.start()
        for index in range(copier_count):
            copiers.start(index)

        # Bounces are spread over the copy: each waits for a further share of progress.
        events = ["copier"] * copier_bounces + ["broker"] * broker_bounces
        rng.shuffle(events)
        deadline = time.monotonic() + deadline_s
        for n, event in enumerate(events):
            target = total * (n + 1) // (len(events) + 1)
            while reader.count() < target:
                assert time.monotonic() < deadline, (
                    f"seed {seed}: stuck at {reader.count()} of {total} before bounce {n}\n"
                    + copiers.text()[-4000:]
                )
                copiers.restart_exited()
                time.sleep(0.1)
            if event == "broker":
                broker.kill9()
                time.sleep(0.5)
                broker.start()
            else:
                index = rng.randrange(copier_count)
                copiers.kill9(index)
                copiers.start(index)

        def done() -> bool:
            copiers.restart_exited()
            return reader is not None and reader.count() >= total

        wait_for(done, f"seed {seed}: the concurrent reader to see {total} records", deadline_s)
        copiers.stop()
        time.sleep(1)  # a duplicate committed late would show up in the concurrent reader
        reader.stopping.set()
        reader.join(30)

        log_text = copiers.text()
        assert log_text.count(" aborted") > 0, "no transaction was aborted: the test is too weak"
        assert " rewound " in log_text
        check_exactly_once(f"seed {seed}: concurrent reader", expected, reader.seen)

        ends = end_offsets(broker.bootstrap, OUTPUT, PARTITIONS)
        final = read_all_committed(broker.bootstrap, ends)
        check_exactly_once(f"seed {seed}: fresh reader", expected, final)
        assert copiers.starts >= copier_count + copier_bounces
        assert f"group protocol {group_protocol}" in log_text
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
        [described] = admin.describe_consumer_groups([GROUP], request_timeout=10).values()
        wanted = ConsumerGroupType.CONSUMER if group_protocol == "consumer" else None
        assert wanted is None or described.result(timeout=15).type == wanted
    finally:
        copiers.stop()
        if reader is not None and reader.is_alive():
            reader.stopping.set()
            reader.join(30)
        broker.kill9()


def test_copiers_exactly_once_with_kill9(tmp_path: Path) -> None:
    run_copier_test(
        tmp_path,
        per_partition=10_000,
        copier_count=2,
        copier_bounces=3,
        broker_bounces=1,
        seed=5,
        deadline_s=150,
    )


def test_copiers_exactly_once_with_the_consumer_group_protocol(tmp_path: Path) -> None:
    """The same with KIP-848 members: copiers killed and started join and leave the consumer
    group mid-run (the broker moves their partitions once the killed one's session times out),
    and TxnOffsetCommit checks the member epoch as the generation."""
    run_copier_test(
        tmp_path,
        per_partition=5_000,
        copier_count=2,
        copier_bounces=3,
        broker_bounces=1,
        seed=7,
        deadline_s=150,
        group_protocol="consumer",
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12])
def test_copiers_exactly_once_soak(tmp_path: Path, seed: int) -> None:
    run_copier_test(
        tmp_path,
        per_partition=25_000,
        copier_count=3,
        copier_bounces=8,
        broker_bounces=3,
        seed=seed,
        deadline_s=600,
    )
