"""The transaction coordinator's state machine, driven directly: a request in, a decision out
(the transition record and the response, a wait, or an answer), and the state changes only
when the record is replayed. No broker, no log."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from samsa.coordinator.runtime import CoordinatorResult
from samsa.coordinator.txn.machine import (
    Fence,
    InitResult,
    TxnSettings,
    TxnStateMachine,
    Wait,
    read_txn_record,
    txn_record,
)
from samsa.coordinator.txn.metadata import TxnMetadata
from samsa.coordinator.txn.states import TxnState

S = TxnState
TIMEOUT_MS = 10_000
PRODUCER_ID = 4000


def machine() -> TxnStateMachine:
    ids = iter(range(PRODUCER_ID, PRODUCER_ID + 100))
    return TxnStateMachine(lambda: next(ids), TxnSettings())


def replayed(m: TxnStateMachine, decision: object) -> TxnMetadata:
    """Replay the decision's one record, as the runtime does once it is durable."""
    assert isinstance(decision, CoordinatorResult), decision
    (record,) = decision.records
    m.replay(record)
    assert isinstance(record, TxnMetadata)
    return record


def test_init_is_a_record_first_and_state_only_once_replayed() -> None:
    m = machine()
    decision = m.init_producer_id("a", TIMEOUT_MS, -1, -1, pending=False, now=1)
    assert isinstance(decision, CoordinatorResult)
    (record,) = decision.records
    assert (record.producer_id, record.producer_epoch, record.state) == (PRODUCER_ID, 0, S.EMPTY)
    assert decision.response == InitResult(ErrorCode.none, PRODUCER_ID, 0)
    assert decision.failed == InitResult(ErrorCode.not_coordinator)
    assert m.txns["a"].producer_epoch == -1  # known (its producer id reserved), not bumped yet
    m.replay(record)
    assert m.txns["a"] == record
    # The record as the log holds it replays to the same metadata (start-up = live).
    assert read_txn_record(*txn_record(record)) == record


def test_a_busy_id_waits_and_a_prepared_one_too() -> None:
    m = machine()
    replayed(m, m.init_producer_id("a", TIMEOUT_MS, -1, -1, False, 1))
    add = m.add_partitions("a", PRODUCER_ID, 0, frozenset({("t", 0)}), pending=True, now=2)
    assert add == Wait(ErrorCode.concurrent_transactions)
    ongoing = replayed(m, m.add_partitions("a", PRODUCER_ID, 0, frozenset({("t", 0)}), False, 2))
    assert (ongoing.state, ongoing.partitions, ongoing.start_ms) == (
        S.ONGOING,
        frozenset({("t", 0)}),
        2,
    )
    prepare = replayed(m, m.end_transaction("a", PRODUCER_ID, 0, True, False, 3))
    assert prepare.state is S.PREPARE_COMMIT
    again = m.add_partitions("a", PRODUCER_ID, 0, frozenset({("t", 1)}), False, 4)
    assert again == Wait(ErrorCode.concurrent_transactions)  # the markers are being written
    m.replay(m.complete(m.txns["a"], 5))
    assert (m.txns["a"].state, m.txns["a"].partitions) == (S.COMPLETE_COMMIT, frozenset())
    assert m.end_transaction("a", PRODUCER_ID, 0, True, False, 6) == ErrorCode.none  # a retry


def test_init_during_an_open_transaction_fences_it_first() -> None:
    m = machine()
    replayed(m, m.init_producer_id("a", TIMEOUT_MS, -1, -1, False, 1))
    replayed(m, m.add_partitions("a", PRODUCER_ID, 0, frozenset({("t", 0)}), False, 2))
    fence = m.init_producer_id("a", TIMEOUT_MS, -1, -1, False, 3)
    assert isinstance(fence, Fence)
    (abort,) = fence.abort.records
    assert (abort.state, abort.producer_epoch) == (S.PREPARE_ABORT, 1)  # bumped: fenced
    assert m.txns["a"].state is S.ONGOING  # until the abort is durable
    m.replay(abort)
    assert m.end_transaction("a", PRODUCER_ID, 0, True, False, 5) == ErrorCode.producer_fenced


def test_timeouts_and_expiry_are_records_too() -> None:
    m = TxnStateMachine(lambda: PRODUCER_ID, TxnSettings(id_expiration_ms=100_000))
    replayed(m, m.init_producer_id("a", TIMEOUT_MS, -1, -1, False, 0))
    replayed(m, m.add_partitions("a", PRODUCER_ID, 0, frozenset({("t", 0)}), False, 0))
    assert m.timed_out(TIMEOUT_MS, pending=set()) == []
    assert m.timed_out(TIMEOUT_MS + 1, pending={"a"}) == []  # its transition is in flight
    [abort] = m.timed_out(TIMEOUT_MS + 1, pending=set())
    replayed(m, abort)
    m.replay(m.complete(m.txns["a"], TIMEOUT_MS + 2))
    assert m.txns["a"].state is S.COMPLETE_ABORT
    [tombstone] = m.expired(TIMEOUT_MS + 2 + 100_000, pending=set())
    replayed(m, tombstone)
    assert "a" not in m.txns
