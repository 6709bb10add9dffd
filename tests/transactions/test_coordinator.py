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

import random
from pathlib import Path
from typing import Any

from kio.schema.add_partitions_to_txn.v3.request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
)
from kio.schema.errors import ErrorCode
from kio.schema.types import ProducerId, TopicName, TransactionalId
from kio.static.primitive import i16, i32
from kio.static.protocol import RequestPayload

from samsa import config as broker_config
from samsa.broker.core import Broker, Endpoint
from samsa.broker.outcomes import AwaitDurable, Outcome, Reply
from samsa.coordinator.txn.states import TxnState
from samsa.durability import Driver, Durable
from samsa.durability.inline import sync_logs
from samsa.log.storage import OsStorage, Storage
from samsa.protocol import codec
from samsa.protocol.batch import parse_header
from samsa.sim.clients import produce_call
from samsa.sim.disk import SimDisk

from .support import settle, sync, txn_batch, wall_ms

TP = ("order", 0)


def _broker(storage: Storage, data_dir: str, create_topic: bool) -> Broker:
    broker = Broker(broker_config.load({}), storage, data_dir, wall_ms, Endpoint("x", 1))
    broker.open()
    if create_topic:
        broker.topics.create(TP[0], 1, {}, wall_ms())
    return broker


def test_pipelined_add_partitions_and_abort_after_commit(tmp_path: Path) -> None:
    broker = _broker(OsStorage(), str(tmp_path / "data"), create_topic=True)
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
    broker = _broker(OsStorage(), str(tmp_path / "data"), create_topic=False)
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


# --------------------------------------------------------------------- AddPartitionsToTxn early
def _request(broker: Broker, request: RequestPayload) -> Outcome:
    return broker.handle_frame(codec.encode_request(1, "test", request)[4:])


def _add_partitions(transactional_id: str, pid: int, epoch: int) -> RequestPayload:
    return AddPartitionsToTxnRequest(
        v3_and_below_transactional_id=TransactionalId(transactional_id),
        v3_and_below_producer_id=ProducerId(pid),
        v3_and_below_producer_epoch=i16(epoch),
        v3_and_below_topics=(
            AddPartitionsToTxnTopic(name=TopicName(TP[0]), partitions=(i32(TP[1]),)),
        ),
    )


def _produce(transactional_id: str, pid: int, epoch: int) -> RequestPayload:
    return produce_call(transactional_id, *TP, txn_batch([b"one"], pid, epoch, 0)).request


def _produce_error(payload: Any) -> ErrorCode:
    (topic,) = payload.responses
    (partition,) = topic.partition_responses
    error: ErrorCode = partition.error_code
    return error


def test_add_partitions_is_answered_before_durable_and_the_produce_waits_for_it(
    tmp_path: Path,
) -> None:
    """The answer comes before the transaction log's fsync; the partition takes the
    transaction's batch only once the addition is durable, so it never holds a transaction the
    coordinator could lose."""
    broker = _broker(OsStorage(), str(tmp_path / "data"), create_topic=True)
    init = settle(broker.txn.init_producer_id("early-tx", 60_000, -1, -1))
    pid, epoch = init.producer_id, init.producer_epoch
    txn_log = broker.txn.txn_log
    partition = broker.topics.partition(*TP)
    assert partition is not None
    driver: Driver[str] = Driver(broker.take_background)

    added = _request(broker, _add_partitions("early-tx", pid, epoch))
    assert isinstance(added, Reply), added  # answered at once...
    assert txn_log.high_watermark < txn_log.log_end_offset  # ...before its record is durable
    assert "early-tx" in broker.txn.pending  # nor does it take effect yet
    assert TP not in broker.txn.txns["early-tx"].partitions

    produced = _request(broker, _produce("early-tx", pid, epoch))
    assert isinstance(produced, AwaitDurable) and produced.finish is not None, produced
    assert produced.waits == [(txn_log, txn_log.log_end_offset)]
    assert partition.log_end_offset == 0  # nothing appended on the strength of it yet
    driver.respond("produce", produced.waits, produced.finish)
    driver.run()

    sync_logs(driver, [txn_log])  # the addition is durable: the batch goes in
    assert driver.run() == []
    assert broker.txn.txns["early-tx"].state is TxnState.ONGOING
    assert partition.log_end_offset == 1 and partition.high_watermark == 0
    sync_logs(driver, driver.take_dirty())
    ((key, payload),) = driver.run()
    assert key == "produce" and _produce_error(payload) == ErrorCode.none
    assert partition.high_watermark == 1


def test_a_crash_that_loses_an_early_addition_refuses_the_produce_and_hangs_nothing() -> None:
    """Power lost after AddPartitionsToTxn was answered and the Produce sent, before the
    addition's record was fsynced (every other log's fsync did run): the partition holds nothing
    open (its last stable offset is its high watermark), and the producer's batch, sent again
    after the restart, is refused (INVALID_TXN_STATE) rather than opening a transaction the
    coordinator does not hold."""
    disk = SimDisk()
    broker = _broker(disk, "/data", create_topic=True)
    init = settle(broker.txn.init_producer_id("lost-tx", 60_000, -1, -1))
    pid, epoch = init.producer_id, init.producer_epoch
    driver: Driver[str] = Driver(broker.take_background)
    assert isinstance(_request(broker, _add_partitions("lost-tx", pid, epoch)), Reply)
    produced = _request(broker, _produce("lost-tx", pid, epoch))
    assert isinstance(produced, AwaitDurable) and produced.finish is not None, produced
    driver.respond("produce", produced.waits, produced.finish)
    driver.run()
    sync_logs(driver, [log for log in broker.topics.logs() if log is not broker.txn.txn_log])

    disk.crash(random.Random(0), torn_probability=0.0)
    disk.reboot()
    broker = _broker(disk, "/data", create_topic=False)
    partition = broker.topics.partition(*TP)
    assert partition is not None
    assert partition.log_end_offset == 0
    assert partition.last_stable_offset == partition.high_watermark
    assert TP not in broker.txn.txns["lost-tx"].partitions
    again = _request(broker, _produce("lost-tx", pid, epoch))
    assert isinstance(again, AwaitDurable) and again.finish is not None, again
    assert _produce_error(settle(Durable(again.waits, again.finish))) == (
        ErrorCode.invalid_txn_state
    )
