"""The coordinator, driven in-process: requests that arrive while the previous transaction's
markers are being written, or while the id's last transition is not yet durable, wait for it
and are answered in arrival order, whichever wakes first.

librdkafka, right after a commit returns, may send AddPartitionsToTxn for the next transaction
and then, if the application aborts at once, EndTxn(abort) without waiting for the first answer.
Both arrive while the previous commit's markers are not yet durable. If the EndTxn were judged
before the AddPartitions, it would find the previous transaction's CompleteCommit and fail with
INVALID_TXN_STATE, which librdkafka treats as fatal (found by test_lso.py).
"""

from __future__ import annotations

from pathlib import Path

from kio.schema.errors import ErrorCode

from samsa import config as broker_config
from samsa.broker.core import Broker, Endpoint
from samsa.coordinator.txn.states import TxnState
from samsa.durability import Durable
from samsa.log.storage import OsStorage
from samsa.protocol.batch import parse_header

from .support import settle, sync, txn_batch, wall_ms

TP = ("order", 0)


def test_pipelined_add_partitions_and_abort_after_commit(tmp_path: Path) -> None:
    broker = Broker(
        broker_config.load({}), OsStorage(), str(tmp_path / "data"), wall_ms, Endpoint("x", 1)
    )
    broker.open()
    broker.topics.create(TP[0], 1, {}, wall_ms())
    coordinator = broker.txn
    log = broker.topics.partition(*TP)
    assert log is not None
    init = settle(coordinator.init_producer_id("order-tx", 60_000, -1, -1))
    pid, epoch = init.producer_id, init.producer_epoch
    assert settle(coordinator.add_partitions("order-tx", pid, epoch, [TP])) == ErrorCode.none
    batch = txn_batch([b"one"], pid, epoch, 0)
    log.append(
        batch,
        parse_header(batch),
        wall_ms(),
        lambda h: coordinator.verify("order-tx", h.producer_id, h.producer_epoch, TP),
    )
    sync(log)
    assert settle(coordinator.end_transaction("order-tx", pid, epoch, True)) == ErrorCode.none
    assert coordinator.txns["order-tx"].state is TxnState.PREPARE_COMMIT  # markers not durable

    # The next transaction's AddPartitions, then its EndTxn(abort), pipelined.
    add = coordinator.add_partitions("order-tx", pid, epoch, [TP])
    end = coordinator.end_transaction("order-tx", pid, epoch, False)
    assert isinstance(add, Durable), add
    assert isinstance(end, Durable), end  # waits for the markers too, not INVALID_TXN_STATE

    # The markers become durable; the EndTxn's wait happens to wake first. It runs the
    # AddPartitions first (arrival order), whose Ongoing is then being written: the EndTxn
    # waits for that too, rather than answering CONCURRENT_TRANSACTIONS.
    sync(log)
    ended = end.then(set())
    assert isinstance(ended, Durable), ended
    assert settle(add.then(set())) == ErrorCode.none
    assert settle(ended) == ErrorCode.none
    after = coordinator.txns["order-tx"]
    assert after.state is TxnState.PREPARE_ABORT
    assert after.partitions == {TP}  # the abort covers the partition added before it


def test_requests_wait_for_a_pending_transition_in_arrival_order(tmp_path: Path) -> None:
    """AddOffsetsToTxn (an AddPartitions of the offsets partition), then AddPartitionsToTxn
    and EndTxn(commit), all sent before the first is durable: each waits for the transition
    before it instead of getting CONCURRENT_TRANSACTIONS, and the commit covers every
    partition added before it, whichever wait wakes first."""
    broker = Broker(
        broker_config.load({}), OsStorage(), str(tmp_path / "data"), wall_ms, Endpoint("x", 1)
    )
    broker.open()
    broker.topics.create("a", 1, {}, wall_ms())
    broker.topics.create("b", 1, {}, wall_ms())
    coordinator = broker.txn
    init = settle(coordinator.init_producer_id("cross-tx", 60_000, -1, -1))
    pid, epoch = init.producer_id, init.producer_epoch
    first = coordinator.add_partitions("cross-tx", pid, epoch, [("a", 0)])
    second = coordinator.add_partitions("cross-tx", pid, epoch, [("b", 0)])
    end = coordinator.end_transaction("cross-tx", pid, epoch, True)
    assert all(isinstance(r, Durable) for r in (first, second, end)), (first, second, end)
    assert coordinator.txns["cross-tx"].state is TxnState.EMPTY  # nothing applied yet

    # The EndTxn's wait wakes first, then the second AddPartitions', then the first's.
    ended = settle(end)
    assert settle(second) == ErrorCode.none
    assert settle(first) == ErrorCode.none
    assert ended == ErrorCode.none
    meta = coordinator.txns["cross-tx"]
    assert meta.state is TxnState.PREPARE_COMMIT
    assert meta.partitions == {("a", 0), ("b", 0)}
