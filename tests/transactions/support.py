"""Shared pieces of the transaction tests: topics, transaction scripts, readers, a broker process.

A *script* is a list of transactions, each a commit-or-abort decision and the records it writes
(topic, partition, value). What a read_committed reader must see is the committed records, in
script order within each partition; a read_uncommitted reader sees every record.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest

from samsa.admin.client import READ_COMMITTED, READ_UNCOMMITTED
from samsa.admin.client import AdminClient as SamsaAdmin
from samsa.durability import Driver
from samsa.durability.inline import settle as settle_inline
from samsa.durability.inline import sync_log
from samsa.log.partition import PartitionLog
from samsa.protocol.batch_writer import record_batch
from samsa.testing.topics import placed, value_of

DEADLINE_S = 30.0
TRANSACTIONAL_ATTRIBUTE = 0x10
TP = tuple[str, int]
SAMSA = str(Path(sys.executable).parent / "samsa")


@dataclass(frozen=True, slots=True)
class Txn:
    commit: bool
    records: tuple[tuple[str, int, bytes], ...]


def all_partitions(topics: dict[str, int]) -> list[TP]:
    return [(t, p) for t, n in sorted(topics.items()) for p in range(n)]


def make_script(label: str, tps: Sequence[TP], decisions: str, per_partition: int = 3) -> list[Txn]:
    """One transaction per letter of `decisions` ('C' commit, 'A' abort), each writing
    `per_partition` records to every partition; values name the transaction and the record."""
    script = []
    for n, decision in enumerate(decisions):
        records = tuple(
            (topic, p, f"{label}:{n}{decision}:{topic}-{p}:{i}".encode())
            for i in range(per_partition)
            for topic, p in tps
        )
        script.append(Txn(decision == "C", records))
    return script


def expected(script: Iterable[Txn], committed_only: bool) -> dict[TP, list[bytes]]:
    found: dict[TP, list[bytes]] = {}
    for txn in script:
        if committed_only and not txn.commit:
            continue
        for topic, p, value in txn.records:
            found.setdefault((topic, p), []).append(value)
    return found


def offsets(bootstrap: str, tps: Sequence[TP], isolation: int) -> dict[TP, int]:
    """High watermarks (read_uncommitted) or last stable offsets (read_committed), asked with
    ListOffsets."""
    topics: dict[str, list[int]] = {}
    for topic, p in tps:
        topics.setdefault(topic, []).append(p)
    with SamsaAdmin(bootstrap) as admin:
        return admin.list_offsets(topics, isolation)


def wait_stable(bootstrap: str, tps: Sequence[TP], timeout_s: float = DEADLINE_S) -> dict[TP, int]:
    """Wait until every partition's LSO has caught up with its high watermark."""
    deadline = time.monotonic() + timeout_s
    while True:
        high = offsets(bootstrap, tps, READ_UNCOMMITTED)
        stable = offsets(bootstrap, tps, READ_COMMITTED)
        if stable == high:
            return high
        assert time.monotonic() < deadline, f"LSO stuck: stable {stable}, high {high}"
        time.sleep(0.1)


def read_confluent(
    bootstrap: str,
    tps: Sequence[TP],
    isolation: str,
    ends: dict[TP, int] | None = None,
    timeout_s: float = DEADLINE_S,
) -> dict[TP, list[bytes]]:
    """Every record a consumer at `isolation` returns from each partition's start until its
    position reaches `ends` (default: the high watermarks now)."""
    ends = ends if ends is not None else offsets(bootstrap, tps, READ_UNCOMMITTED)
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "txn-check",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "log_level": 0,
        }
    )
    found: dict[TP, list[bytes]] = {tp: [] for tp in tps}
    tps = [tp for tp in tps if ends[tp] > 0]  # an empty partition has no position to reach
    try:
        consumer.assign([confluent_kafka.TopicPartition(t, p, 0) for t, p in tps])
        deadline = time.monotonic() + timeout_s
        while True:
            for message in consumer.consume(500, 0.2):
                if message.error() is not None:
                    raise AssertionError(f"consume error: {message.error()}")
                topic = message.topic()
                assert topic is not None
                found[(topic, placed(message)[0])].append(value_of(message))
            positions = {
                (tp.topic, tp.partition): tp.offset
                for tp in consumer.position([confluent_kafka.TopicPartition(t, p) for t, p in tps])
            }
            if all(positions[tp] >= ends[tp] for tp in tps):
                return found
            assert time.monotonic() < deadline, f"positions {positions} never reached {ends}"
    finally:
        consumer.close()


def txn_batch(
    values: Sequence[bytes], producer_id: int, producer_epoch: int, base_sequence: int
) -> bytes:
    """A transactional magic-2 record batch, as a producer sends it (base offset 0)."""
    return record_batch(
        values,
        timestamp_ms=wall_ms(),
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        attributes=TRANSACTIONAL_ATTRIBUTE,
    )


def txn_producer(
    bootstrap: str, transactional_id: str, **extra: object
) -> confluent_kafka.Producer:
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "log_level": 0,
    }
    config.update(extra)
    return confluent_kafka.Producer(config)


def is_fenced(error: confluent_kafka.KafkaError) -> bool:
    return error.code() in (
        confluent_kafka.KafkaError._FENCED,
        confluent_kafka.KafkaError.PRODUCER_FENCED,
        confluent_kafka.KafkaError.INVALID_PRODUCER_EPOCH,
    )


def assert_fenced(producer: confluent_kafka.Producer, topic: str, partitions: range) -> None:
    """The fenced producer's next produce is refused (librdkafka raises the fatal error from
    produce or flush, depending on timing), and its commit fails as fenced, for good."""
    try:
        for p in partitions:
            producer.produce(topic, b"zombie-after", partition=p)
        producer.flush(10)
    except confluent_kafka.KafkaException as exc:
        assert is_fenced(exc.args[0]), exc.args[0]
    with pytest.raises(confluent_kafka.KafkaException) as raised:
        producer.commit_transaction(10)
    assert is_fenced(raised.value.args[0]), raised.value.args[0]
    assert raised.value.args[0].fatal()


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def sync(log: PartitionLog) -> None:
    sync_log(log)


def settle(result: Any) -> Any:
    """Make a coordinator result's writes durable (what the server's group commit does) and
    return the answer the client would get. Only the logs it waits on are fsynced; background
    work it queued (transaction markers) is left to the caller."""
    return settle_inline(Driver(), result)
