"""Crashes and transactions.

- A crash after the coordinator made PrepareCommit (or PrepareAbort) durable and answered the
  client, but before any marker was written: the restart must finish the transaction (markers
  written, CompleteCommit), so a committed transaction is complete for read_committed readers.
  Driven in-process, so the crash point is exact.
- The same crash with the consumer's offsets in the transaction (a copier's transaction): after
  the restart the offsets are committed with a commit, and the earlier ones stand after an abort,
  also once the same transactional id commits a later transaction.
- kill -9 of a real `samsa serve` right after commits return, many times: every transaction is
  all-or-nothing after the restarts, and every acknowledged commit is complete.
- kill -9 with transactions open: after the restart they are aborted by timeout, and no reader
  ever sees part of one.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import confluent_kafka
import pytest
from kio.schema.errors import ErrorCode

from samsa import config as broker_config
from samsa.admin.client import AdminClient
from samsa.broker.core import Broker, Endpoint
from samsa.broker.txn import offsets_partition
from samsa.coordinator.group import commits
from samsa.coordinator.group.commits import OffsetToCommit
from samsa.coordinator.txn.states import TxnState
from samsa.log.partition import PartitionLog, partition_directory
from samsa.log.segment import segment_name
from samsa.log.storage import OsStorage
from samsa.protocol.batch import iter_batches, parse_header
from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.process import BrokerProcess
from samsa.testing.topics import create_topics

from .support import (
    all_partitions,
    read_confluent,
    settle,
    sync,
    txn_batch,
    txn_producer,
    wait_stable,
    wall_ms,
)

pytestmark = pytest.mark.interop


def batches(log: PartitionLog) -> list[tuple[int, bool]]:
    """(base offset, is control) of every batch up to the high watermark."""
    data = log.read(0, 1 << 30, log.high_watermark, True)
    return [(header.base_offset, header.is_control) for _, header in iter_batches(data)]


def wait_for_state(bootstrap: str, transactional_id: str, state: TxnState) -> None:
    deadline = time.monotonic() + 10
    with AdminClient(bootstrap) as admin:
        while True:
            found = admin.describe_transactions([transactional_id]).transaction_states[0]
            if found.transaction_state == state.value:
                return
            assert time.monotonic() < deadline, f"{transactional_id}: {found.transaction_state}"
            time.sleep(0.05)


def open_broker(data_dir: str, partitions: int) -> Broker:
    """The broker core in this process (no server, so the test decides when anything is
    synced), with topic "crash"."""
    broker = Broker(broker_config.load({}), OsStorage(), data_dir, wall_ms, Endpoint("x", 1))
    broker.open()
    broker.topics.create("crash", partitions, {}, wall_ms())
    return broker


def append_txn(
    broker: Broker, tp: tuple[str, int], values: list[bytes], pid: int, epoch: int
) -> None:
    """Append a batch of "crash-tx" to `tp` as the Produce path does (KIP-890 check), and fsync."""
    log = broker.topics.partition(*tp)
    assert log is not None
    batch = txn_batch(values, pid, epoch, 0)
    coordinator = broker.txn
    log.append(
        batch,
        parse_header(batch),
        wall_ms(),
        lambda h: coordinator.verify("crash-tx", h.producer_id, h.producer_epoch, tp),
    )
    sync(log)


@pytest.mark.parametrize("lose_unsynced", [True, False], ids=["power-loss", "process-crash"])
@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
def test_restart_completes_prepared_transaction(
    tmp_path: Path, commit: bool, lose_unsynced: bool
) -> None:
    """The coordinator appends the markers as soon as PrepareX is durable, but they are not
    fsynced (so not below the high watermark) when the crash comes. A power loss takes them
    back; a process crash leaves them in the page cache, and the restart writes them again
    (a second marker closes nothing and is harmless)."""
    data_dir = str(tmp_path / "data")
    broker = open_broker(data_dir, 2)
    tps = all_partitions({"crash": 2})
    init = settle(broker.txn.init_producer_id("crash-tx", 60_000, -1, -1))
    assert init.error == ErrorCode.none
    pid, epoch = init.producer_id, init.producer_epoch
    assert settle(broker.txn.add_partitions("crash-tx", pid, epoch, tps)) == ErrorCode.none
    values = {tp: [f"{tp[1]}:{i}".encode() for i in range(3)] for tp in tps}
    for tp in tps:
        append_txn(broker, tp, values[tp], pid, epoch)

    # EndTxn: the client is answered once PrepareX is durable.
    assert settle(broker.txn.end_transaction("crash-tx", pid, epoch, commit)) == ErrorCode.none
    prepared = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
    assert broker.txn.txns["crash-tx"].state is prepared
    assert len(broker.background) == 1  # the marker writes, queued and not yet run
    synced_bytes = {}
    for topic, p in tps:
        log = broker.topics.partition(topic, p)
        assert log is not None
        assert batches(log) == [(0, False)]  # no durable marker
        assert log.last_stable_offset == 0 < log.high_watermark == 3
        unsynced_marker = log.active.find_position(log.high_watermark)
        assert unsynced_marker is not None and unsynced_marker[1].is_control
        synced_bytes[(topic, p)] = unsynced_marker[0]

    # Crash: the process dies with the marker work queued; nothing is closed or flushed, and
    # the clean-shutdown file is absent, so the restart recovers.
    broker.background.clear()
    broker.abandon()  # the process dies: its files are closed, its data dir lock dropped
    if lose_unsynced:
        for (topic, p), size in synced_bytes.items():
            segment = os.path.join(
                partition_directory(data_dir, topic, p), segment_name(0) + ".log"
            )
            os.truncate(segment, size)

    with EmbeddedBroker(data_dir=data_dir) as restarted:
        # After a process crash the old marker already makes the log stable, so wait for the
        # coordinator to finish before reading the ends: its second marker may still be queued.
        wait_for_state(
            restarted.bootstrap,
            "crash-tx",
            TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT,
        )
        ends = wait_stable(restarted.bootstrap, tps)
        markers = [(3, True)] if lose_unsynced else [(3, True), (4, True)]
        assert ends == {tp: 3 + len(markers) for tp in tps}
        assert restarted.server is not None
        for topic, p in tps:
            log = restarted.server.broker.topics.partition(topic, p)
            assert log is not None
            assert batches(log) == [(0, False), *markers]
        committed = read_confluent(restarted.bootstrap, tps, "read_committed", ends)
        assert committed == (values if commit else {tp: [] for tp in tps})
        assert read_confluent(restarted.bootstrap, tps, "read_uncommitted", ends) == values


GROUP = "crash-group"


def committed_offset(bootstrap: str, topic: str, partition: int) -> int:
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": GROUP, "log_level": 0}
    )
    try:
        [found] = consumer.committed([confluent_kafka.TopicPartition(topic, partition)], 15)
        return int(found.offset)
    finally:
        consumer.close()


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
def test_restart_settles_offsets_committed_in_the_transaction(tmp_path: Path, commit: bool) -> None:
    """A copier's transaction (records, and the consumer's offsets through TxnOffsetCommit) is
    answered PrepareX and the process crashes before any marker is written. The offsets log
    then holds offsets pending for the producer id; only the marker the restart writes may
    settle them. A pending offset left behind would be made committed by the next COMMIT marker
    of the same producer id, so the same transactional id then commits a transaction without
    offsets, and the committed offset must not move."""
    data_dir = str(tmp_path / "data")
    broker = open_broker(data_dir, 1)
    tp = ("crash", 0)
    topics, coordinator = broker.topics, broker.txn

    def exists(topic: str, partition: int) -> bool:
        return topics.partition(topic, partition) is not None

    earlier = [OffsetToCommit("crash", 0, 5, -1, None)]
    assert settle(commits.commit(broker.groups, GROUP, -1, "", None, earlier, exists)) == {
        tp: ErrorCode.none
    }
    init = settle(broker.txn.init_producer_id("crash-tx", 60_000, -1, -1))
    pid, epoch = init.producer_id, init.producer_epoch
    added = broker.txn.add_partitions("crash-tx", pid, epoch, [tp, offsets_partition(GROUP)])
    assert settle(added) == ErrorCode.none
    append_txn(broker, tp, [b"copied-1", b"copied-2"], pid, epoch)
    inside = [OffsetToCommit("crash", 0, 9, -1, None)]
    written = commits.txn_commit(
        broker.groups,
        GROUP,
        pid,
        epoch,
        -1,
        "",
        None,
        inside,
        exists,
        lambda h: coordinator.verify(
            "crash-tx", h.producer_id, h.producer_epoch, offsets_partition(GROUP)
        ),
    )
    assert settle(written) == {tp: ErrorCode.none}
    assert settle(broker.txn.end_transaction("crash-tx", pid, epoch, commit)) == ErrorCode.none
    broker.background.clear()  # crash with the marker writes queued
    broker.abandon()

    expected = 9 if commit else 5
    with EmbeddedBroker(data_dir=data_dir) as restarted:
        done = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
        wait_for_state(restarted.bootstrap, "crash-tx", done)
        assert committed_offset(restarted.bootstrap, *tp) == expected

        producer = txn_producer(restarted.bootstrap, "crash-tx")
        producer.init_transactions(30)
        producer.begin_transaction()
        producer.produce("crash", b"later", partition=0)
        producer.commit_transaction(30)
        assert committed_offset(restarted.bootstrap, *tp) == expected
        ends = wait_stable(restarted.bootstrap, [tp])
        committed = read_confluent(restarted.bootstrap, [tp], "read_committed", ends)
        copied = [b"copied-1", b"copied-2"] if commit else []
        assert committed == {tp: [*copied, b"later"]}


# --------------------------------------------------------------------- real process, kill -9
ATOMIC = {"atomic": 4}
RECORDS_PER_TXN = 8


def check_atomic(bootstrap: str, committed_txns: set[int], attempted: int) -> dict[int, int]:
    """Read everything at read_committed; every transaction is whole or absent, in order per
    partition, and every acknowledged commit is there. Returns txn -> records seen."""
    tps = all_partitions(ATOMIC)
    ends = wait_stable(bootstrap, tps)
    found = read_confluent(bootstrap, tps, "read_committed", ends)
    seen: dict[int, int] = {}
    for tp, values in found.items():
        last = -1
        for value in values:
            txn, _index, partition = (int(x) for x in value.decode().split(":"))
            assert partition == tp[1]
            assert txn >= last, f"{tp}: txn {txn} after {last}"
            last = txn
            seen[txn] = seen.get(txn, 0) + 1
    partial = {txn: count for txn, count in seen.items() if count != RECORDS_PER_TXN}
    assert not partial, f"partial transactions seen: {partial}"
    assert not set(seen) - set(range(attempted)), "records of a transaction never begun"
    missing = committed_txns - set(seen)
    assert not missing, f"acknowledged commits lost: {sorted(missing)}"
    return seen


def produce_txn(producer: confluent_kafka.Producer, txn: int) -> None:
    producer.begin_transaction()
    for index in range(RECORDS_PER_TXN):
        p = index % ATOMIC["atomic"]
        producer.produce("atomic", f"{txn}:{index}:{p}".encode(), partition=p)


def run_kill_after_commit(start: Callable[..., BrokerProcess], cycles: int, seed: int) -> None:
    rng = random.Random(seed)
    broker = start(["transaction.abort.timed.out.transaction.cleanup.interval.ms=500"])
    create_topics(broker.bootstrap, ATOMIC)
    committed: set[int] = set()
    txn = 0
    for _ in range(cycles):
        producer = txn_producer(broker.bootstrap, "atomic-tx", **{"transaction.timeout.ms": 3000})
        producer.init_transactions(30)
        for _ in range(rng.randint(1, 3)):
            produce_txn(producer, txn)
            producer.commit_transaction(30)
            committed.add(txn)
            txn += 1
        broker.kill9()  # right after the commit returned: its markers may not be written yet
        broker.start()
    check_atomic(broker.bootstrap, committed, txn)


def test_kill9_right_after_commits(broker_process: Callable[..., BrokerProcess]) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    run_kill_after_commit(broker_process, cycles=5, seed=seed)


@pytest.mark.slow
def test_kill9_right_after_commits_soak(broker_process: Callable[..., BrokerProcess]) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    run_kill_after_commit(broker_process, cycles=40, seed=seed)


def test_kill9_with_open_transactions(broker_process: Callable[..., BrokerProcess]) -> None:
    broker = broker_process()
    create_topics(broker.bootstrap, ATOMIC)
    done = txn_producer(broker.bootstrap, "done-tx")
    done.init_transactions(30)
    produce_txn(done, 0)
    done.commit_transaction(30)
    open_producers = []
    for n in (1, 2):
        producer = txn_producer(
            broker.bootstrap, f"open-tx-{n}", **{"transaction.timeout.ms": 3000}
        )
        producer.init_transactions(30)
        produce_txn(producer, n)
        assert producer.flush(30) == 0  # written, never to be committed
        open_producers.append(producer)
    # Another commit after the open ones: stuck behind them until they are aborted.
    produce_txn(done, 3)
    done.commit_transaction(30)
    broker.kill9()
    broker.start()

    seen = check_atomic(broker.bootstrap, {0, 3}, 4)
    assert set(seen) == {0, 3}
    with AdminClient(broker.bootstrap) as admin:
        states = admin.describe_transactions(["open-tx-1", "open-tx-2"]).transaction_states
    assert [s.transaction_state for s in states] == ["CompleteAbort", "CompleteAbort"]
    tps = all_partitions(ATOMIC)
    everything = read_confluent(broker.bootstrap, tps, "read_uncommitted")
    assert sum(len(v) for v in everything.values()) == 4 * RECORDS_PER_TXN  # all were written
