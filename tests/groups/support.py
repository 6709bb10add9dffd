"""Shared pieces of the consumer-group tests: topics, a `samsa serve` subprocess to kill -9, and
bounded waits. (Protocol-level checks talk through `samsa.admin.client.AdminClient`.)"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import confluent_kafka

DEADLINE_S = 30.0
SAMSA = str(Path(sys.executable).parent / "samsa")
PYTHON = sys.executable
# The broker's floor for session.timeout.ms is lowered so that a crashed member is noticed
# quickly; clients use SESSION_TIMEOUT_MS.
SESSION_TIMEOUT_MS = 3_000
BROKER_SETTINGS = {
    "group.min.session.timeout.ms": "1000",
    # consumer-protocol (KIP-848) members: the broker's session and heartbeat timing
    "group.consumer.session.timeout.ms": str(SESSION_TIMEOUT_MS),
    "group.consumer.heartbeat.interval.ms": "300",
}


def wait_for(
    condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S, step_s: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(step_s)


def produce_values(
    bootstrap: str, topic: str, partitions: int, per_partition: int, label: str = "r"
) -> dict[int, list[bytes]]:
    """`per_partition` records to each partition, idempotently (no duplicates, in order);
    returns what each partition holds."""
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "log_level": 0,
        }
    )
    sent: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    for i in range(per_partition):
        for p in range(partitions):
            value = f"{label}-{p}-{i:06d}".encode()
            while True:
                try:
                    producer.produce(topic, value, partition=p)
                    break
                except BufferError:
                    producer.poll(0.05)
            sent[p].append(value)
        producer.poll(0)
    assert producer.flush(DEADLINE_S) == 0, "records never acknowledged"
    return sent


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets (OffsetFetch through librdkafka); -1001 when none."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    try:
        found = consumer.committed(
            [confluent_kafka.TopicPartition(topic, p) for p in range(partitions)], timeout=15
        )
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def run_script(script: str, args: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    """`python tests/groups/<script> args` (the venv's python), output appended to `log_path`."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [PYTHON, str(Path(__file__).with_name(script)), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
