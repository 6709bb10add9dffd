"""Shared pieces of the streams tests: the two backends (a samsa broker, librdkafka's 3-broker
mock cluster), worker processes running the balances example, input producers and readers.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic

from samsa.testing.embedded import embedded_broker
from samsa.testing.topics import end_offsets, placed

SAMSA = str(Path(sys.executable).parent / "samsa")
APP = "samsa.streams.examples.balances:app"
INPUT = "transactions"
OUTPUT = "balances"
CHANGELOG = "balances-balances-changelog"
GROUP = "balances"
MOCK_PARTITIONS = 4  # what the mock cluster gives an auto-created topic
# Fast failure detection for tests; samsa's minimum session timeout is 6 s, as Kafka's.
WORKER_CONSUMER = ("session.timeout.ms=6000", "heartbeat.interval.ms=500")


@dataclass
class Backend:
    name: str
    bootstrap: str
    partitions: int
    # The mock cluster has no CreateTopics: topics appear on first produce.
    can_create_topics: bool

    def create_input(self) -> None:
        if self.can_create_topics:
            admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
            admin.create_topics([NewTopic(INPUT, self.partitions, 1)])[INPUT].result(15)


@contextmanager
def samsa_backend() -> Iterator[Backend]:
    settings = {
        "num.partitions": "3",
        # consumer-protocol (KIP-848) workers: the broker's session and heartbeat timing
        "group.consumer.session.timeout.ms": "6000",
        "group.consumer.heartbeat.interval.ms": "500",
    }
    with embedded_broker(settings=settings) as broker:
        yield Backend("samsa", broker.bootstrap, 3, True)


@contextmanager
def mock_backend() -> Iterator[Backend]:
    """A 3-broker librdkafka mock cluster; it lives as long as the client that created it."""
    owner = confluent_kafka.Producer({"test.mock.num.brokers": 3, "log_level": 0})
    try:
        brokers = owner.list_topics(timeout=10).brokers.values()
        bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers)
        yield Backend("mock", bootstrap, MOCK_PARTITIONS, False)
    finally:
        owner.flush(5)
        del owner


def make_inputs(count: int, accounts: int, seed: int) -> list[tuple[str, dict[str, int]]]:
    rng = random.Random(seed)
    return [
        (f"acct-{rng.randrange(accounts)}", {"id": i, "amount": rng.randint(-50, 50)})
        for i in range(count)
    ]


def expected_outputs(
    inputs: list[tuple[str, dict[str, int]]],
) -> dict[str, list[tuple[int, int]]]:
    """What one failure-free pass of the (deterministic) balances app gives: per account, the
    (input id, balance after it) in input order."""
    balances: dict[str, int] = {}
    out: dict[str, list[tuple[int, int]]] = {}
    for account, value in inputs:
        balances[account] = balances.get(account, 0) + value["amount"]
        out.setdefault(account, []).append((value["id"], balances[account]))
    return out


class InputProducer(threading.Thread):
    """Produces the inputs (idempotent producer, keyed by account) at about `rate` per second."""

    def __init__(
        self,
        bootstrap: str,
        inputs: list[tuple[str, dict[str, int]]],
        rate: float,
        timestamp: Callable[[int], int] | None = None,
    ):
        super().__init__(name="input-producer", daemon=True)
        self.inputs = inputs
        self.rate = rate
        self.timestamp = timestamp  # input id -> record timestamp (None: the time of produce)
        self.producer = confluent_kafka.Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
        )
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            began = time.monotonic()
            for n, (account, value) in enumerate(self.inputs):
                self.producer.produce(
                    INPUT,
                    json.dumps(value).encode(),
                    account.encode(),
                    timestamp=self.timestamp(value["id"]) if self.timestamp else 0,
                )
                self.producer.poll(0)
                ahead = n / self.rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
            remaining = self.producer.flush(30)
            if remaining:
                raise AssertionError(f"{remaining} input records not delivered")
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        self.join(120)
        assert not self.is_alive(), "the input producer did not finish"
        if self.error is not None:
            raise self.error


@dataclass
class WorkerProcess:
    """`samsa streams run` of the balances example, as its own process (kill -9 able)."""

    backend: Backend
    guarantee: str
    instance: str
    static: bool
    log_dir: str
    app: str = APP
    state_dir: bool = False  # --state-dir <log_dir>/state-<instance>
    # `python -m samsa.streams` starts faster than `samsa` (which imports the broker too).
    fast_start: bool = True
    group_protocol: str = "classic"
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    exits: list[int] = field(default_factory=list)

    def start(self, crash_at_commit: int = 0) -> None:
        prefix = [sys.executable, "-m", "samsa.streams"] if self.fast_start else [SAMSA, "streams"]
        command = [
            *prefix,
            "run",
            self.app,
            "--bootstrap-servers",
            self.backend.bootstrap,
            "--processing-guarantee",
            self.guarantee,
            "--instance-id",
            self.instance,
        ]
        if self.static:
            command.append("--static-membership")
        if self.state_dir:
            command += ["--state-dir", os.path.join(self.log_dir, f"state-{self.instance}")]
        if not self.backend.can_create_topics:
            command.append("--no-create-topics")
        if self.group_protocol == "consumer":
            command += ["--group-protocol", "consumer"]  # the broker times the session
        else:
            for setting in WORKER_CONSUMER:
                command += ["--consumer", setting]
        command += ["--consumer", "log_level=0", "--producer", "log_level=0"]
        env = dict(
            os.environ,
            BALANCES_CRASH_AT_COMMIT=str(crash_at_commit),
            SAMSA_STREAMS_CRASH_AT_COMMIT=str(crash_at_commit),  # examples/pipelines.py
        )
        log = open(os.path.join(self.log_dir, f"worker-{self.instance}.log"), "ab")  # noqa: SIM115
        log.write(f"--- start {self.starts} crash_at_commit={crash_at_commit}\n".encode())
        log.flush()
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def reap(self) -> None:
        """Record how a dead process ended (-9 is SIGKILL)."""
        if self.process is not None and self.process.poll() is not None:
            self.exits.append(self.process.returncode)
            self.process = None

    def kill9(self) -> None:
        if self.alive():
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
            self.kills += 1
        self.reap()

    def terminate(self, timeout_s: float = 60) -> int:
        assert self.process is not None and self.alive(), "not running"
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        self.reap()
        return code

    def log_tail(self, lines: int = 40) -> str:
        path = os.path.join(self.log_dir, f"worker-{self.instance}.log")
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])


def temp_log_dir() -> str:
    return tempfile.mkdtemp(prefix="samsa-streams-test-")


def committed_offsets(bootstrap: str, partitions: int, group: str = GROUP) -> dict[int, int]:
    """A group's (the balances one's) committed input offsets (stable ones: require_stable)."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0}
    )
    try:
        found = consumer.committed(
            [confluent_kafka.TopicPartition(INPUT, p) for p in range(partitions)], timeout=15
        )
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def read_all(
    bootstrap: str, topic: str, isolation: str, idle_s: float = 3.0
) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every record of `topic` at `isolation`: (partition, key, value), in partition order;
    stops after `idle_s` without a new record."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"streams-read-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
            "log_level": 0,
        }
    )
    records: list[tuple[int, bytes | None, bytes | None]] = []
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign(
            [
                confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                for p in metadata.partitions
            ]
        )
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            for message in consumer.consume(1000, 0.2):
                if message.error() is not None:
                    continue
                records.append((placed(message)[0], message.key(), message.value()))
                last = time.monotonic()
        return records
    finally:
        consumer.close()


def outputs_by_account(bootstrap: str, isolation: str) -> dict[str, list[tuple[int, int]]]:
    found: dict[str, list[tuple[int, int]]] = {}
    for _p, key, value in read_all(bootstrap, OUTPUT, isolation):
        assert key is not None and value is not None
        record = json.loads(value)
        found.setdefault(key.decode(), []).append((record["id"], record["balance"]))
    return found


def changelog_state(bootstrap: str, isolation: str) -> dict[str, int]:
    """The state the changelog implies: latest value per key (compacted semantics)."""
    state: dict[str, int] = {}
    for _p, key, value in read_all(bootstrap, CHANGELOG, isolation):
        assert key is not None
        if value is None:
            state.pop(key.decode(), None)
        else:
            state[key.decode()] = json.loads(value)
    return state


def wait_caught_up(
    backend: Backend, workers: list[WorkerProcess], timeout_s: float, group: str = GROUP
) -> dict[int, int]:
    """Until the group's committed offsets reach the input's end (restarting workers that
    died); the end offsets."""
    ends = end_offsets(backend.bootstrap, INPUT, backend.partitions)
    deadline = time.monotonic() + timeout_s
    while True:
        for worker in workers:
            if not worker.alive():
                worker.reap()
                worker.start()
        committed = committed_offsets(backend.bootstrap, backend.partitions, group)
        if all(committed.get(p, -1) >= end for p, end in ends.items()):
            return ends
        if time.monotonic() > deadline:
            tails = "\n".join(w.log_tail() for w in workers)
            raise AssertionError(f"not caught up: committed {committed}, ends {ends}\n{tails}")
        time.sleep(0.5)


def diff_summary(
    got: dict[str, list[tuple[int, int]]], want: dict[str, list[tuple[int, int]]]
) -> str:
    got_ids = [i for seq in got.values() for i, _ in seq]
    want_ids = [i for seq in want.values() for i, _ in seq]
    duplicated = len(got_ids) - len(set(got_ids))
    missing = len(set(want_ids) - set(got_ids))
    wrong = sum(1 for a in want if got.get(a) != want[a])
    return (
        f"{len(got_ids)} outputs for {len(want_ids)} inputs: {duplicated} duplicated ids, "
        f"{missing} missing ids, {wrong}/{len(want)} accounts differ"
    )


def wait_outputs(backend: Backend, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        found = len(read_all(backend.bootstrap, OUTPUT, "read_committed", idle_s=0.5))
        if found >= count:
            return
        assert time.monotonic() < deadline, f"{found} of {count} outputs"
        time.sleep(0.5)
