"""kill -9 of a real `samsa serve` while confluent-kafka producers write with acks=all.

Every acknowledged record must come back after the restart exactly once, at the offset it was
acknowledged with, in order per partition. Also: a torn or corrupt tail left in the newest
segment is cut off on restart, and the broker carries on writing at the right offsets.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

import confluent_kafka
import pytest

from durability.durability_support import (
    Acks,
    ProducerThread,
    decode,
    producer_config,
    read_partitions,
)
from samsa.protocol.batch import HEADER_BYTES, iter_batches
from samsa.testing.process import BrokerProcess
from samsa.testing.topics import create_topic, placed, value_of, watermarks

TOPIC = "durable"
PARTITIONS = 3
# Small segments, so the writes also roll segments while the broker is being killed.
SETTINGS = ["num.partitions=3", "log.segment.bytes=65536"]

StartBroker = Callable[..., BrokerProcess]


def wait_for_acks(acks: Acks, at_least: int, min_seconds: float, timeout_s: float = 30.0) -> None:
    start = time.monotonic()
    while acks.count() < at_least or time.monotonic() - start < min_seconds:
        assert time.monotonic() - start < timeout_s, (
            f"only {acks.count()} of {at_least} acknowledged"
        )
        time.sleep(0.02)


def check_log(
    records: dict[int, list[tuple[int, bytes | None, bytes | None]]], acks: Acks
) -> dict[tuple[int, int], tuple[int, int]]:
    """Check the contents of every partition against the acknowledgements; return where each
    (producer, seq) found was."""
    found: dict[tuple[int, int], tuple[int, int]] = {}
    for partition, entries in records.items():
        # Contiguous offsets from 0: nothing lost in the middle, nothing read twice.
        assert [offset for offset, _, _ in entries] == list(range(len(entries))), partition
        last_seq: dict[int, int] = {}
        for offset, key, value in entries:
            assert value is not None
            producer, seq, value_partition = decode(value)
            assert value_partition == partition, (partition, offset, value)
            assert key == f"p{producer}".encode()
            assert (producer, seq) not in found, f"{(producer, seq)} stored twice"
            found[(producer, seq)] = (partition, offset)
            # In order per producer within the partition.
            assert seq > last_seq.get(producer, -1), (partition, offset, producer, seq)
            last_seq[producer] = seq
    missing = {ident: where for ident, where in acks.acked.items() if ident not in found}
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {list(missing)[:5]}"
    moved = {
        ident: (where, found[ident]) for ident, where in acks.acked.items() if found[ident] != where
    }
    assert not moved, f"acknowledged records not at their offsets: {list(moved.items())[:5]}"
    return found


def run_kill_cycles(
    start_broker: StartBroker,
    cycles: int,
    producers: int,
    phase_s: float,
    per_phase: int,
    rate: float | None,
) -> None:
    broker = start_broker(SETTINGS)
    create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    acks = Acks()
    threads = [
        ProducerThread(i, broker.bootstrap, TOPIC, PARTITIONS, acks, rate) for i in range(producers)
    ]
    for thread in threads:
        thread.start()
    try:
        for _ in range(cycles):
            wait_for_acks(acks, acks.count() + per_phase, phase_s)
            sent_before = sum(thread.sent for thread in threads)
            # Producers are writing right now: kill the broker under them (on a loaded machine
            # a producer thread may need a moment to be scheduled).
            deadline = time.monotonic() + 5.0
            while sum(thread.sent for thread in threads) <= sent_before:
                assert time.monotonic() < deadline, "the producers stopped writing"
                time.sleep(0.01)
            broker.kill9()
            with acks.lock:
                acked_at_kill = dict(acks.acked)
            broker.start()
            # The producers are already writing again: check a lower bound now (each high
            # watermark covers every offset acknowledged before the kill), everything at the end.
            highs = [high for _, high in watermarks(broker.bootstrap, TOPIC, PARTITIONS)]
            for partition, offset in acked_at_kill.values():
                assert offset < highs[partition], (partition, offset, highs)
        wait_for_acks(acks, acks.count() + per_phase, phase_s)
    finally:
        for thread in threads:
            thread.stop()
    records = read_partitions(broker.bootstrap, TOPIC, PARTITIONS)
    found = check_log(records, acks)
    assert len(acks.acked) >= (cycles + 1) * per_phase
    assert all(records[p] for p in range(PARTITIONS))
    # Records in the log that were never acknowledged were in flight at a kill (written, but
    # the response never arrived); they may be there, once, but nothing else may.
    for ident in found.keys() - acks.acked.keys():
        assert ident in acks.failed, f"{ident} stored but neither acknowledged nor failed"
    assert broker.starts == cycles + 1


def test_kill9_during_acks_all_writes(broker_process: StartBroker) -> None:
    run_kill_cycles(broker_process, cycles=2, producers=3, phase_s=1.5, per_phase=2000, rate=4000)


@pytest.mark.slow
def test_kill9_soak(broker_process: StartBroker) -> None:
    run_kill_cycles(
        broker_process, cycles=10, producers=6, phase_s=3.0, per_phase=10_000, rate=5000
    )


# ------------------------------------------------------------------ torn and corrupt tails
def produce_acked(bootstrap: str, partition: int, values: list[bytes]) -> list[tuple[int, bytes]]:
    """Produce with acks=all and flush; (offset, value) of every record, all acknowledged."""
    producer = confluent_kafka.Producer(producer_config(bootstrap, **{"linger.ms": 20}))
    acked: list[tuple[int, bytes]] = []
    errors: list[object] = []

    def report(err: object, msg: confluent_kafka.Message) -> None:
        if err is None:
            acked.append((placed(msg)[1], value_of(msg)))
        else:
            errors.append(err)

    for i, value in enumerate(values):
        producer.produce(TOPIC, value, None, partition, on_delivery=report)
        producer.poll(0)
        if i % 50 == 49:  # several batches, not one
            assert producer.flush(30) == 0
    assert producer.flush(30) == 0
    assert not errors, errors
    return sorted(acked)


def last_segment(data_dir: str, partition: int) -> str:
    directory = os.path.join(data_dir, f"{TOPIC}-{partition}")
    logs = sorted(name for name in os.listdir(directory) if name.endswith(".log"))
    return os.path.join(directory, logs[-1])


def batches_in(path: str) -> list[tuple[int, int, int, int]]:
    """(position, size, base offset, last offset) of each whole batch of a .log file."""
    with open(path, "rb") as f:
        data = f.read()
    return [(pos, h.size, h.base_offset, h.last_offset) for pos, h in iter_batches(data)]


def test_torn_and_corrupt_tails_after_kill9(broker_process: StartBroker) -> None:
    broker = broker_process(SETTINGS)
    create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    acked = {
        p: produce_acked(broker.bootstrap, p, [f"{p}:{i}".encode() for i in range(400)])
        for p in range(PARTITIONS)
    }
    for p in range(PARTITIONS):
        assert [offset for offset, _ in acked[p]] == list(range(400))
    broker.kill9()

    # Partition 0: random garbage after the last batch.
    garbage_path = last_segment(broker.data_dir, 0)
    garbage_size = os.path.getsize(garbage_path)
    with open(garbage_path, "ab") as f:
        f.write(random.Random(1).randbytes(1500))
    # Partition 1: one flipped byte inside the records of the last batch (its CRC breaks).
    corrupt_path = last_segment(broker.data_dir, 1)
    cut_at, size, lost_from, lost_to = batches_in(corrupt_path)[-1]
    assert lost_to == 399
    with open(corrupt_path, "r+b") as f:
        f.seek(cut_at + HEADER_BYTES + (size - HEADER_BYTES) // 2)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0xFF]))
    # Partition 2: the front part of a copy of its last batch (a write torn in the middle).
    torn_path = last_segment(broker.data_dir, 2)
    torn_size = os.path.getsize(torn_path)
    with open(torn_path, "rb") as f:
        position, size, _, _ = batches_in(torn_path)[-1]
        f.seek(position)
        partial = f.read(size)[: size // 2]
    with open(torn_path, "ab") as f:
        f.write(partial)

    broker.start()
    assert os.path.getsize(garbage_path) == garbage_size
    assert os.path.getsize(corrupt_path) == cut_at
    assert os.path.getsize(torn_path) == torn_size
    expected = {
        0: acked[0],
        1: [(offset, value) for offset, value in acked[1] if offset < lost_from],
        2: acked[2],
    }
    assert 0 < lost_from < 400
    assert watermarks(broker.bootstrap, TOPIC, PARTITIONS) == [
        (0, 400),
        (0, lost_from),
        (0, 400),
    ]
    records = read_partitions(broker.bootstrap, TOPIC, PARTITIONS)
    for p in range(PARTITIONS):
        assert [(offset, value) for offset, _, value in records[p]] == expected[p], p

    # New writes continue right after the cut, and everything survives another kill -9.
    for p in range(PARTITIONS):
        more = produce_acked(broker.bootstrap, p, [f"{p}:new:{i}".encode() for i in range(50)])
        start = len(expected[p])
        assert [offset for offset, _ in more] == list(range(start, start + 50)), p
        expected[p] = expected[p] + more
    broker.kill9()
    broker.start()
    records = read_partitions(broker.bootstrap, TOPIC, PARTITIONS)
    for p in range(PARTITIONS):
        assert [(offset, value) for offset, _, value in records[p]] == expected[p], p


# ------------------------------------------------------------------ sanity of the harness
def test_check_log_can_fail() -> None:
    """check_log reports a lost acknowledged record, one at a wrong offset, a duplicate."""
    acks = Acks()
    acks.acked[(0, 0)] = (0, 0)
    records: dict[int, list[tuple[int, bytes | None, bytes | None]]] = {0: [(0, b"p0", b"0:0:0")]}
    check_log(records, acks)
    acks.acked[(0, 1)] = (0, 1)
    with pytest.raises(AssertionError, match="lost"):
        check_log(records, acks)
    acks.acked[(0, 1)] = (0, 2)
    records[0].append((1, b"p0", b"0:1:0"))
    with pytest.raises(AssertionError, match="not at their offsets"):
        check_log(records, acks)
    records[0][1] = (1, b"p0", b"0:0:0")
    with pytest.raises(AssertionError, match="twice"):
        check_log(records, Acks())
