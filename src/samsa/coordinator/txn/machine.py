"""The transaction coordinator's decisions, as a state machine without I/O (Kafka's
TransactionCoordinator rules over TransactionStateManager's metadata).

Theory of operation: `txns` maps each transactional id to its metadata, the replay of the
transaction log (`replay`, run by start-up over the whole log and live over each transition
once it is durable). A request is decided from that state alone, and the decision is one of:

- a response now (an error, or a retry answered as before), with no record;
- a `CoordinatorResult`: one transition record, the response once it is durable, and
  NOT_COORDINATOR (or False) if it never is. The transition is checked against the table in
  `states.py` when it is made: a forbidden one raises `IllegalTransition`;
- `Wait`: the id has a transition or its markers in flight: run the request again once they
  are durable (in arrival order), or answer `otherwise` if nothing is in flight after all;
- `Fence` (InitProducerId only): a transaction is open; abort it under a bumped epoch in the
  background and answer CONCURRENT_TRANSACTIONS, so the client retries.

Which ids have writes in flight is the caller's to say (`pending`, `busy`): it is the caller that
waits for writes (`samsa.coordinator.txn.coordinator`). As in Kafka, one thing is not a record:
the metadata of an id seen for the first time is put in `txns` at once, with its producer id
(putTransactionStateIfNotExists), before its first transition is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

from kio.schema.errors import ErrorCode

from samsa.config import DEFAULTS
from samsa.coordinator.runtime import CoordinatorResult, KeyValue
from samsa.coordinator.txn.metadata import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    TopicPartition,
    TxnMetadata,
)
from samsa.coordinator.txn.states import (
    COMPLETED,
    EXPIRABLE,
    HELD,
    PREPARED,
    TxnState,
    check_transition,
)

log = logging.getLogger("samsa.txn")

S = TxnState
T = TypeVar("T")
Transition: TypeAlias = CoordinatorResult[TxnMetadata, T]


@dataclass(frozen=True, slots=True)
class TxnSettings:
    timeout_ms_max: int = DEFAULTS.transaction_max_timeout_ms
    id_expiration_ms: int = DEFAULTS.transactional_id_expiration_ms


@dataclass(frozen=True, slots=True)
class InitResult:
    error: ErrorCode
    producer_id: int = -1
    producer_epoch: int = -1


@dataclass(frozen=True, slots=True)
class Wait(Generic[T]):
    """The id is busy: retry once its writes are durable; `otherwise` if none are in flight."""

    otherwise: T


@dataclass(frozen=True, slots=True)
class Fence:
    """Abort the open transaction under a bumped epoch first (`abort`, written in the
    background); the InitProducerId is answered CONCURRENT_TRANSACTIONS and retried."""

    abort: Transition[bool]


Decision: TypeAlias = T | Wait[T] | Transition[T]


def txn_record(meta: TxnMetadata) -> KeyValue:
    """The transaction log's record of a transition: keyed by transactional id. An expired id
    (Dead) is a tombstone, a null value as in Kafka, so the log cleaner removes the id from
    the log after `delete.retention.ms` and the log stays bounded by the live ids."""
    if meta.state is S.DEAD:
        return meta.transactional_id.encode(), None
    return meta.transactional_id.encode(), meta.encode()


def read_txn_record(key: bytes | None, value: bytes | None) -> TxnMetadata | None:
    if key is None:
        return None
    if value is None:
        return TxnMetadata(key.decode(), NO_PRODUCER_ID, state=S.DEAD)
    return TxnMetadata.decode(value)


def _transition(current: TxnMetadata, target: TxnMetadata, response: T, failed: T) -> Transition[T]:
    check_transition(current.state, target.state)
    return CoordinatorResult((target,), response, failed)


class TxnStateMachine:
    def __init__(self, next_producer_id: Callable[[], int], settings: TxnSettings) -> None:
        self._next_producer_id = next_producer_id
        self.settings = settings
        self.txns: dict[str, TxnMetadata] = {}
        # Producer id -> its transactional id: which transaction a client's marker names.
        self._transactional_ids: dict[int, str] = {}

    def replay(self, meta: TxnMetadata) -> None:
        """Apply one durable transition record; a Dead one is a tombstone (the id expired)."""
        previous = self.txns.get(meta.transactional_id)
        if previous is not None:
            self._transactional_ids.pop(previous.producer_id, None)
        if meta.state is S.DEAD:
            self.txns.pop(meta.transactional_id, None)
        else:
            self.txns[meta.transactional_id] = meta
            self._transactional_ids[meta.producer_id] = meta.transactional_id

    # ----------------------------------------------------------------- InitProducerId
    def init_producer_id(
        self,
        transactional_id: str,
        timeout_ms: int,
        producer_id: int,
        producer_epoch: int,
        pending: bool,
        now: int,
    ) -> Decision[InitResult] | Fence:
        """Fence older instances of the transactional id and hand out its next epoch."""
        if not transactional_id:
            return InitResult(ErrorCode.invalid_request)
        if not 0 < timeout_ms <= self.settings.timeout_ms_max:
            return InitResult(ErrorCode.invalid_transaction_timeout)
        meta = self.txns.get(transactional_id)
        if meta is None:
            meta = TxnMetadata(
                transactional_id, self._next_producer_id(), timeout_ms=timeout_ms, update_ms=now
            )
            self.txns[transactional_id] = meta
        if pending or meta.state in PREPARED:
            return Wait(InitResult(ErrorCode.concurrent_transactions))
        if producer_id >= 0 and not _may_resume(meta, producer_id):
            return InitResult(ErrorCode.producer_fenced)
        if meta.state is S.ONGOING:
            # Fence the old instance: abort its transaction under a bumped epoch. The client
            # retries on CONCURRENT_TRANSACTIONS and gets the epoch after that.
            return Fence(self.prepare_abort(meta, fence=True, now=now))
        if meta.state not in COMPLETED:
            return InitResult(ErrorCode.concurrent_transactions)
        bumped = self._bump(meta, producer_epoch if producer_id >= 0 else None)
        if isinstance(bumped, InitResult):
            return bumped
        target = bumped.but(
            state=S.EMPTY, timeout_ms=timeout_ms, partitions=frozenset(), start_ms=-1, update_ms=now
        )
        return _transition(
            meta,
            target,
            InitResult(ErrorCode.none, target.producer_id, target.producer_epoch),
            InitResult(ErrorCode.not_coordinator),
        )

    def _bump(self, meta: TxnMetadata, expected: int | None) -> TxnMetadata | InitResult:
        """The next epoch (KIP-360: `expected` is the epoch the client has, None for a new
        instance), a new producer id once the epoch runs out, or the answer for a retry."""
        if meta.epoch_exhausted and (expected is None or expected == meta.producer_epoch):
            return meta.but(
                producer_id=self._next_producer_id(),
                previous_producer_id=meta.producer_id,
                producer_epoch=0,
                last_producer_epoch=NO_PRODUCER_EPOCH,
            )
        if expected is None or meta.producer_epoch in (NO_PRODUCER_EPOCH, expected):
            return meta.but(
                producer_epoch=meta.producer_epoch + 1,
                last_producer_epoch=(
                    meta.producer_epoch if expected is not None else NO_PRODUCER_EPOCH
                ),
            )
        if expected == meta.last_producer_epoch:
            # A retry of the bump that was already done (KIP-360): the same answer again.
            return InitResult(ErrorCode.none, meta.producer_id, meta.producer_epoch)
        return InitResult(ErrorCode.producer_fenced)

    # ----------------------------------------------------------------- AddPartitions
    def check_producer(
        self, transactional_id: str, producer_id: int, producer_epoch: int
    ) -> tuple[TxnMetadata | None, ErrorCode]:
        meta = self.txns.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            return None, ErrorCode.invalid_producer_id_mapping
        if meta.producer_epoch != producer_epoch:
            return None, ErrorCode.producer_fenced
        return meta, ErrorCode.none

    def add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        wanted: frozenset[TopicPartition],
        pending: bool,
        now: int,
    ) -> Decision[ErrorCode]:
        meta, error = self.check_producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            return error
        if pending or meta.state in PREPARED:
            return Wait(ErrorCode.concurrent_transactions)
        if meta.state is S.ONGOING and wanted <= meta.partitions:
            return ErrorCode.none
        start = now if meta.state in COMPLETED else meta.start_ms
        target = meta.but(
            state=S.ONGOING, partitions=meta.partitions | wanted, start_ms=start, update_ms=now
        )
        return _transition(meta, target, ErrorCode.none, ErrorCode.not_coordinator)

    def verify(
        self,
        transactional_id: str | None,
        producer_id: int,
        producer_epoch: int,
        partition: TopicPartition,
    ) -> ErrorCode:
        """KIP-890 part 1: may this producer open a transaction on `partition` now?"""
        meta = self.txns.get(transactional_id) if transactional_id else None
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.invalid_txn_state
        if producer_epoch < meta.producer_epoch:
            return ErrorCode.invalid_producer_epoch
        if (
            meta.state is not S.ONGOING
            or producer_epoch != meta.producer_epoch
            or partition not in meta.partitions
        ):
            return ErrorCode.invalid_txn_state
        return ErrorCode.none

    # ----------------------------------------------------------------- EndTxn
    def end_transaction(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        pending: bool,
        now: int,
    ) -> Decision[ErrorCode]:
        """PrepareCommit or PrepareAbort; the caller writes the markers once it is durable."""
        meta = self.txns.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.invalid_producer_id_mapping
        if meta.producer_epoch != producer_epoch:
            return ErrorCode.producer_fenced
        if pending:
            return Wait(ErrorCode.concurrent_transactions)
        done = S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT
        if meta.state is done:
            return ErrorCode.none  # a retry of an EndTxn that already completed
        if meta.state in PREPARED:
            # The markers of this transaction, or of the previous one, are being written. After
            # the previous commit, librdkafka may pipeline AddPartitionsToTxn and EndTxn(abort):
            # the AddPartitions waits for those markers (see `add_partitions`), so this EndTxn
            # must wait too and then be judged on the state they leave, or it would find the
            # previous transaction's state and fail as INVALID_TXN_STATE.
            return Wait(ErrorCode.concurrent_transactions)
        if meta.state is not S.ONGOING:
            return ErrorCode.invalid_txn_state
        preparing = S.PREPARE_COMMIT if commit else S.PREPARE_ABORT
        target = meta.but(state=preparing, update_ms=now)
        return _transition(meta, target, ErrorCode.none, ErrorCode.not_coordinator)

    def prepare_abort(self, meta: TxnMetadata, fence: bool, now: int) -> Transition[bool]:
        """PrepareAbort for an ongoing transaction (timeout, fencing, a client's ABORT). With
        `fence` the epoch is bumped first, so the old producer is fenced (Kafka's
        prepareFenceProducerEpoch)."""
        if fence and not meta.epoch_exhausted:
            # The fencing epoch is never handed to a client: its retry bumps once more.
            target = meta.but(
                producer_epoch=meta.producer_epoch + 1, last_producer_epoch=NO_PRODUCER_EPOCH
            )
        else:
            target = meta
        return _transition(meta, target.but(state=S.PREPARE_ABORT, update_ms=now), True, False)

    def complete(self, meta: TxnMetadata, now: int) -> TxnMetadata:
        """CompleteCommit or CompleteAbort of a prepared transaction whose markers are durable."""
        done = S.COMPLETE_COMMIT if meta.state is S.PREPARE_COMMIT else S.COMPLETE_ABORT
        target = meta.but(state=done, partitions=frozenset(), update_ms=now)
        check_transition(meta.state, target.state)
        return target

    # ----------------------------------------------------------------- a client's ABORT marker
    def held(
        self, producer_id: int, producer_epoch: int, partition: TopicPartition
    ) -> TxnMetadata | ErrorCode | None:
        """The transaction a client's ABORT marker for `partition` aborts, if this coordinator
        holds it open; an error for a marker it must refuse; None if it does not hold it (the
        transaction hangs: the caller writes the marker itself)."""
        transactional_id = self._transactional_ids.get(producer_id)
        meta = self.txns.get(transactional_id) if transactional_id is not None else None
        if meta is None or meta.producer_id != producer_id:
            return None  # an id the coordinator never handed out, or has expired
        if meta.state not in HELD or partition not in meta.partitions:
            # Hanging here. Kafka takes any epoch at least the partition's; a client's marker
            # may not go past the epochs handed out, or it would lock the producer out of the
            # partition (its next write there would be from an "older" epoch).
            if producer_epoch > meta.producer_epoch:
                return ErrorCode.invalid_producer_epoch
            return None
        if meta.state is S.ONGOING and producer_epoch < meta.producer_epoch:
            return ErrorCode.invalid_producer_epoch  # from a fenced epoch: not this transaction
        return meta

    def abort_held(
        self, transactional_id: str, partition: TopicPartition, busy: bool, now: int
    ) -> ErrorCode | Wait[ErrorCode] | Transition[bool]:
        """Abort the transaction that held `partition` open, or say how it ended meanwhile. A
        `Transition` is its PrepareAbort: once durable, ask again (for the markers)."""
        meta = self.txns.get(transactional_id)
        if meta is None:
            return ErrorCode.none
        if meta.state in (S.PREPARE_COMMIT, S.COMPLETE_COMMIT):
            return ErrorCode.invalid_txn_state  # the producer's commit came first
        if busy:
            return Wait(ErrorCode.concurrent_transactions)  # a transition, or the markers
        if meta.state is not S.ONGOING or partition not in meta.partitions:
            return ErrorCode.none  # aborted, and no longer open on the partition
        return self.prepare_abort(meta, fence=True, now=now)

    # ----------------------------------------------------------------- periodic work
    def timed_out(self, now: int, pending: Container[str]) -> list[Transition[bool]]:
        """A fencing PrepareAbort for every ongoing transaction past its timeout."""
        aborts = []
        for meta in list(self.txns.values()):
            if (
                meta.state is S.ONGOING
                and meta.transactional_id not in pending
                and meta.start_ms + meta.timeout_ms < now
            ):
                log.info(
                    "aborting %r: open for %d ms, timeout %d ms",
                    meta.transactional_id,
                    now - meta.start_ms,
                    meta.timeout_ms,
                )
                aborts.append(self.prepare_abort(meta, fence=True, now=now))
        return aborts

    def expired(self, now: int, pending: Container[str]) -> list[Transition[bool]]:
        """A tombstone (Dead) for every id idle for `transactional.id.expiration.ms`."""
        return [
            _transition(meta, meta.but(state=S.DEAD, update_ms=now), True, False)
            for meta in list(self.txns.values())
            if meta.state in EXPIRABLE
            and meta.transactional_id not in pending
            and now - meta.update_ms >= self.settings.id_expiration_ms
        ]


def _may_resume(meta: TxnMetadata, producer_id: int) -> bool:
    """May a client that names `producer_id` (KIP-360) re-initialise this id's producer?"""
    return (
        meta.producer_epoch == NO_PRODUCER_EPOCH
        or producer_id == meta.producer_id
        or (producer_id == meta.previous_producer_id and meta.epoch_exhausted)
    )
