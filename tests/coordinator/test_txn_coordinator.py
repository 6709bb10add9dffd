"""The transaction coordinator's rules, driven directly on a broker over the simulated disk:
epoch bumps and fencing (KIP-360 retries), producer-id rotation when the epoch runs out,
timeouts, transactional-id expiration, and completion of prepared transactions on restart."""

from __future__ import annotations

from typing import Any, TypeVar, overload

from kio.schema.errors import ErrorCode

from samsa.broker.core import Broker, Endpoint
from samsa.config import BrokerConfig
from samsa.coordinator.txn.coordinator import InitResult
from samsa.coordinator.txn.metadata import EPOCH_EXHAUSTED
from samsa.coordinator.txn.states import TxnState
from samsa.durability import Driver, Durable
from samsa.durability.inline import settle, sync_logs
from samsa.sim.disk import SimDisk

T = TypeVar("T")
TIMEOUT_MS = 10_000


class Harness:
    def __init__(self, config: BrokerConfig | None = None) -> None:
        self.disk = SimDisk()
        self.now_ms = 1_000_000
        self.config = config or BrokerConfig()
        self.broker = self.boot()
        self.broker.topics.create("t", 2, {}, self.now_ms)

    def boot(self) -> Broker:
        self.disk.reboot()
        self.disk.locks.clear()  # a restart: the previous broker's process is gone
        broker = Broker(
            self.config, self.disk, "/data", lambda: self.now_ms, Endpoint("test", 9092)
        )
        broker.open()
        self.driver: Driver[object] = Driver(broker.take_background)
        return broker

    def sync(self) -> None:
        sync_logs(self.driver, self.broker.topics.logs())

    @overload
    def settle(self, result: Durable[T]) -> T: ...

    @overload
    def settle(self, result: T) -> T: ...

    def settle(self, result: T | Durable[T]) -> T:
        """Make what the result waits for durable, then run background work to its end."""
        return settle(self.driver, result, self.broker.topics.logs)

    def run_background(self) -> None:
        settle(self.driver, None, self.broker.topics.logs)

    def init(self, txn_id: str, producer_id: int = -1, epoch: int = -1) -> InitResult:
        return self.settle(self.broker.txn.init_producer_id(txn_id, TIMEOUT_MS, producer_id, epoch))

    def begin(self, txn_id: str, result: InitResult) -> ErrorCode:
        return self.settle(
            self.broker.txn.add_partitions(
                txn_id, result.producer_id, result.producer_epoch, [("t", 0)]
            )
        )

    def state(self, txn_id: str) -> TxnState:
        return self.broker.txn.txns[txn_id].state


def test_init_bumps_the_epoch_and_fences_the_previous_instance() -> None:
    h = Harness()
    first = h.init("a")
    assert (first.error, first.producer_epoch) == (ErrorCode.none, 0)
    second = h.init("a")
    assert second.producer_id == first.producer_id
    assert second.producer_epoch == 1
    assert (
        h.broker.txn.add_partitions("a", first.producer_id, 0, [("t", 0)])
        == ErrorCode.producer_fenced
    )


def test_init_during_an_open_transaction_aborts_it_first() -> None:
    h = Harness()
    first = h.init("a")
    assert h.begin("a", first) == ErrorCode.none
    assert h.state("a") is TxnState.ONGOING
    retry = h.broker.txn.init_producer_id("a", TIMEOUT_MS, -1, -1)
    assert retry == InitResult(ErrorCode.concurrent_transactions)
    h.run_background()
    assert h.state("a") is TxnState.COMPLETE_ABORT
    again = h.init("a")
    # The fencing epoch (1) is never handed out: the retry bumps once more.
    assert (again.error, again.producer_epoch) == (ErrorCode.none, 2)


def test_a_kip_360_bump_retried_gets_the_same_answer() -> None:
    h = Harness()
    first = h.init("a")
    bumped = h.init("a", first.producer_id, first.producer_epoch)
    assert bumped.producer_epoch == first.producer_epoch + 1
    retried = h.init("a", first.producer_id, first.producer_epoch)  # the answer was lost
    assert retried == bumped
    assert h.init("a", 123456, 0).error == ErrorCode.producer_fenced  # someone else's id


def test_the_producer_id_rotates_when_the_epoch_runs_out() -> None:
    h = Harness()
    first = h.init("a")
    meta = h.broker.txn.txns["a"]
    h.broker.txn.txns["a"] = meta.but(producer_epoch=EPOCH_EXHAUSTED)
    rotated = h.init("a", first.producer_id, EPOCH_EXHAUSTED)
    assert rotated.error == ErrorCode.none
    assert rotated.producer_id != first.producer_id
    assert rotated.producer_epoch == 0
    assert h.broker.txn.txns["a"].previous_producer_id == first.producer_id


def test_a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() -> None:
    h = Harness()
    first = h.init("a")
    h.begin("a", first)
    h.now_ms += TIMEOUT_MS - 1
    assert h.broker.txn.abort_timed_out() == 0
    h.now_ms += 2
    assert h.broker.txn.abort_timed_out() == 1
    h.run_background()
    assert h.state("a") is TxnState.COMPLETE_ABORT
    assert h.broker.txn.txns["a"].producer_epoch == first.producer_epoch + 1
    late = h.broker.txn.end_transaction("a", first.producer_id, first.producer_epoch, True)
    assert late == ErrorCode.producer_fenced


def test_an_idle_transactional_id_expires() -> None:
    h = Harness(BrokerConfig(transactional_id_expiration_ms=60_000))
    h.init("a")
    h.now_ms += 59_999
    assert h.broker.txn.expire_ids() == 0
    h.now_ms += 1
    assert h.broker.txn.expire_ids() == 1
    h.run_background()
    assert "a" not in h.broker.txn.txns
    h.broker = h.boot()  # the tombstone is in the log: it stays expired after a restart
    assert "a" not in h.broker.txn.txns


def test_end_txn_retries_and_mismatches() -> None:
    h = Harness()
    first = h.init("a")
    h.begin("a", first)
    commit = h.broker.txn.end_transaction("a", first.producer_id, first.producer_epoch, True)
    assert h.settle(commit) == ErrorCode.none
    assert h.state("a") is TxnState.COMPLETE_COMMIT
    assert (
        h.broker.txn.end_transaction("a", first.producer_id, first.producer_epoch, True)
        == ErrorCode.none
    )  # a retry of a commit that completed
    assert (
        h.broker.txn.end_transaction("a", first.producer_id, first.producer_epoch, False)
        == ErrorCode.invalid_txn_state
    )  # abort after commit
    assert h.broker.txn.end_transaction("b", 1, 0, True) == ErrorCode.invalid_producer_id_mapping


def test_a_prepared_transaction_completes_after_a_crash() -> None:
    h = Harness()
    first = h.init("a")
    h.begin("a", first)
    commit: Any = h.broker.txn.end_transaction("a", first.producer_id, first.producer_epoch, True)
    h.sync()  # PrepareCommit is durable...
    assert commit.then(set()) == ErrorCode.none
    h.broker.take_background()  # ...the markers were appended but never made durable
    import random

    h.disk.crash(random.Random(1), torn_probability=0.0)
    h.broker = h.boot()
    assert h.state("a") is TxnState.PREPARE_COMMIT
    h.run_background()
    assert h.state("a") is TxnState.COMPLETE_COMMIT
    log = h.broker.topics.partition("t", 0)
    assert log is not None and log.last_stable_offset == log.high_watermark


# ----------------------------------------------------------------- a client's ABORT marker
def test_a_client_abort_of_a_held_transaction_fences_once() -> None:
    """Two ABORTs for the transaction (one request naming two partitions, or two requests)
    before the first is durable: one fenced abort, both answered once its markers are."""
    h = Harness()
    first = h.init("a")
    h.begin("a", first)
    pid, epoch = first.producer_id, first.producer_epoch
    one = h.broker.txn.abort_from_client(pid, epoch, ("t", 0))
    two = h.broker.txn.abort_from_client(pid, epoch, ("t", 0))
    assert isinstance(one, Durable) and isinstance(two, Durable)
    assert h.settle(one) == ErrorCode.none
    assert h.state("a") is TxnState.COMPLETE_ABORT  # the answer waited for the markers
    assert h.settle(two) == ErrorCode.none
    assert h.broker.txn.txns["a"].producer_epoch == epoch + 1  # bumped once, not twice
    log = h.broker.topics.partition("t", 0)
    assert log is not None and log.last_stable_offset == log.high_watermark
    late = h.broker.txn.end_transaction("a", pid, epoch, True)
    assert late == ErrorCode.producer_fenced


def test_a_client_abort_after_the_owner_commit_is_refused() -> None:
    """The owner's EndTxn(commit) is being written when the ABORT arrives: the commit stands."""
    h = Harness()
    first = h.init("a")
    h.begin("a", first)
    pid, epoch = first.producer_id, first.producer_epoch
    commit = h.broker.txn.end_transaction("a", pid, epoch, True)
    abort = h.broker.txn.abort_from_client(pid, epoch, ("t", 0))
    assert isinstance(abort, Durable)
    assert h.settle(commit) == ErrorCode.none
    assert h.settle(abort) == ErrorCode.invalid_txn_state
    h.run_background()
    assert h.state("a") is TxnState.COMPLETE_COMMIT
    assert h.broker.txn.txns["a"].producer_epoch == epoch


def test_a_client_abort_is_judged_by_epoch_and_partition() -> None:
    h = Harness()
    h.init("a")
    second = h.init("a")  # epoch 1
    h.begin("a", second)
    pid, epoch = second.producer_id, second.producer_epoch
    txn = h.broker.txn
    # Held, but from the fenced epoch: not this transaction.
    assert txn.abort_from_client(pid, epoch - 1, ("t", 0)) == ErrorCode.invalid_producer_epoch
    # Not held on t-1: the caller writes it there (None), but never from an epoch not handed out.
    assert txn.abort_from_client(pid, epoch, ("t", 1)) is None
    assert txn.abort_from_client(pid, epoch + 1, ("t", 1)) == ErrorCode.invalid_producer_epoch
    assert txn.abort_from_client(pid + 1000, 0, ("t", 0)) is None  # unknown to the coordinator
    assert h.state("a") is TxnState.ONGOING
