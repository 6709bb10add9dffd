"""The transaction coordinator (Kafka's TransactionCoordinator, TV1 as librdkafka uses it).

Every transition is prepared from the current metadata, appended to the transaction log, and
applied only once that record is durable (`Durable.then`); meanwhile the id is pending. Ending
a transaction takes three steps: PrepareCommit (or PrepareAbort) made durable in the log, then a
marker in every partition of the transaction made durable, then CompleteCommit (or
CompleteAbort). The client is answered after the first; a crash
after it is finished at start-up, because replay finds the id in a Prepare state (invariant 5).

Three refinements keep a busy producer from stalling within and between transactions:
- CompleteCommit/CompleteAbort takes effect as it is appended. Nothing a client sees can depend
  on it before it is durable: every later transition of the id is written after it in the same
  log, and is answered only once that later record (and so this one) is durable. A crash before
  it is durable leaves the id prepared, and the markers are written again (harmlessly).
- A request that arrives while the markers are being written waits for them server-side and is
  then handled, instead of being told CONCURRENT_TRANSACTIONS to back off and retry (what
  KIP-890 part 2 does in Kafka 4.0).
- Likewise a request that arrives while the id's previous transition is being made durable
  waits for it (Kafka answers CONCURRENT_TRANSACTIONS, and librdkafka retries an
  AddPartitionsToTxn so refused about 20 ms later: a quarter of a streams app's commits paid
  that when its AddOffsetsToTxn and AddPartitionsToTxn crossed). Waiting requests are handled in
  the order they arrived, so a pipelined EndTxn never overtakes the AddPartitionsToTxn before it.

A client may ask for a transaction to be aborted (an ABORT marker sent with WriteTxnMarkers,
KIP-664's `Admin.abortTransaction`, `samsa txn abort`). If the coordinator holds that
transaction open, it aborts it itself, the way a timeout does (`abort_from_client`): the epoch
is bumped (fencing the producer), then PrepareAbort, the markers and CompleteAbort, so the
coordinator, the producer and the partitions agree on the outcome. Only a transaction the
coordinator does not hold (a hanging one) gets its marker written by the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from kio.schema.errors import ErrorCode

from samsa.coordinator.records import append_record, read_records
from samsa.coordinator.txn.metadata import NO_PRODUCER_EPOCH, TopicPartition, TxnMetadata
from samsa.coordinator.txn.states import (
    COMPLETED,
    EXPIRABLE,
    HELD,
    PREPARED,
    TxnState,
    check_transition,
)
from samsa.durability import Durable, Later, Waits
from samsa.log.partition import PartitionLog, StorageError
from samsa.state.producers import ProducerStateError

log = logging.getLogger("samsa.txn")

COORDINATOR_EPOCH = 0  # one broker, never a coordinator failover
R = TypeVar("R")

S = TxnState


@dataclass(frozen=True, slots=True)
class TxnSettings:
    max_timeout_ms: int = 900_000
    id_expiration_ms: int = 7 * 24 * 3600 * 1000


@dataclass(slots=True)
class _Busy:
    """Writes an id is waiting for (a transition's record, or the markers that end its
    transaction), what to do once they are durable, and the requests that arrived meanwhile.
    `release` runs once, whoever wakes first: `finish`, then the requests in arrival order."""

    waits: Waits
    finish: Callable[[set[PartitionLog]], bool]
    succeeded: bool | None = None  # None until released
    waiting: list[_Deferred[Any]] = field(default_factory=list)

    def release(self, failed: set[PartitionLog]) -> bool:
        if self.succeeded is None:
            self.succeeded = self.finish(failed)
            waiting, self.waiting = self.waiting, []
            for deferred in waiting:
                deferred.run()
        return self.succeeded


@dataclass(frozen=True, slots=True)
class InitResult:
    error: ErrorCode
    producer_id: int = -1
    producer_epoch: int = -1


class TransactionCoordinator:
    def __init__(
        self,
        txn_log: PartitionLog,
        partition: Callable[[str, int], PartitionLog | None],
        next_producer_id: Callable[[], int],
        clock_ms: Callable[[], int],
        settings: TxnSettings,
        background: Callable[[Later], None],
    ) -> None:
        self.txn_log = txn_log
        self._partition = partition
        self._next_producer_id = next_producer_id
        self._clock_ms = clock_ms
        self.settings = settings
        self._background = background
        self.txns: dict[str, TxnMetadata] = {}
        # Producer id -> its transactional id, kept by `_apply`: which transaction a client's
        # marker names (`abort_from_client`).
        self._transactional_ids: dict[int, str] = {}
        # Ids whose last transition is not yet durable, and ids whose markers are being written.
        self.pending: dict[str, _Busy] = {}
        self.completing: dict[str, _Busy] = {}
        # Prepared ids whose markers a partition refused (a full disk): written again on the
        # next tick, as Kafka's marker channel retries, until every partition has its marker.
        self.markers_unwritten: set[str] = set()

    # ----------------------------------------------------------------- log
    def load(self) -> int:
        """Replay the transaction log; finish every transaction found prepared."""
        count = 0
        for _, key, value, _ in read_records(self.txn_log):
            if key is None or value is None:
                continue
            self._apply(TxnMetadata.decode(value))
            count += 1
        for meta in list(self.txns.values()):
            if meta.state in PREPARED:
                log.info(
                    "completing %s of %r after restart", meta.state.value, meta.transactional_id
                )
                self._background(self._write_markers(meta))
        return count

    def _apply(self, meta: TxnMetadata) -> None:
        self.pending.pop(meta.transactional_id, None)
        previous = self.txns.get(meta.transactional_id)
        if previous is not None:
            self._transactional_ids.pop(previous.producer_id, None)
        if meta.state is S.DEAD:
            self.txns.pop(meta.transactional_id, None)
        else:
            self.txns[meta.transactional_id] = meta
            self._transactional_ids[meta.producer_id] = meta.transactional_id

    def _transit(
        self, current: TxnMetadata, target: TxnMetadata, then_write_markers: bool = False
    ) -> Durable[bool]:
        """Write `target`; once durable, apply it (and, for PrepareX, start the markers before
        any waiting request runs). The result says whether it was applied."""
        check_transition(current.state, target.state)
        end = append_record(
            self.txn_log, target.transactional_id.encode(), target.encode(), self._clock_ms()
        )

        def finish(failed: set[PartitionLog]) -> bool:
            self.pending.pop(target.transactional_id, None)
            if failed:
                return False
            self._apply(target)
            if then_write_markers:
                self._background(self._write_markers(target))
            return True

        busy = _Busy([(self.txn_log, end)], finish)
        self.pending[target.transactional_id] = busy
        return Durable(busy.waits, busy.release)

    def _when_free(
        self, transactional_id: str, retry: Callable[[], R | Durable[R]]
    ) -> Durable[R] | None:
        """If the id is busy (a transition or its markers being written): wait for that, then
        `retry` the request, in arrival order with the others waiting."""
        busy = self.pending.get(transactional_id) or self.completing.get(transactional_id)
        if busy is None:
            return None
        deferred: _Deferred[R] = _Deferred(retry)
        busy.waiting.append(deferred)

        def then(failed: set[PartitionLog]) -> R | Durable[R]:
            busy.release(failed)
            return deferred.run()

        return Durable(busy.waits, then)

    # ----------------------------------------------------------------- InitProducerId
    def init_producer_id(
        self, transactional_id: str, timeout_ms: int, producer_id: int, producer_epoch: int
    ) -> InitResult | Durable[InitResult]:
        """Fence older instances of the transactional id and hand out its next epoch."""
        if not transactional_id:
            return InitResult(ErrorCode.invalid_request)
        if not 0 < timeout_ms <= self.settings.max_timeout_ms:
            return InitResult(ErrorCode.invalid_transaction_timeout)
        now = self._clock_ms()
        meta = self.txns.get(transactional_id)
        if meta is None:
            meta = TxnMetadata(
                transactional_id, self._next_producer_id(), timeout_ms=timeout_ms, update_ms=now
            )
            self.txns[transactional_id] = meta

        def retry() -> InitResult | Durable[InitResult]:
            return self.init_producer_id(transactional_id, timeout_ms, producer_id, producer_epoch)

        if transactional_id in self.pending or meta.state in PREPARED:
            return self._when_free(transactional_id, retry) or InitResult(
                ErrorCode.concurrent_transactions
            )
        expected = producer_epoch if producer_id >= 0 else None
        if producer_id >= 0 and not (
            meta.producer_epoch == NO_PRODUCER_EPOCH
            or producer_id == meta.producer_id
            or (producer_id == meta.previous_producer_id and meta.epoch_exhausted)
        ):
            return InitResult(ErrorCode.producer_fenced)
        if meta.state is S.ONGOING:
            # Fence the old instance: abort its transaction under a bumped epoch. The client
            # retries on CONCURRENT_TRANSACTIONS and gets the epoch after that.
            self._abort(meta, fence=True, now=now)
            return InitResult(ErrorCode.concurrent_transactions)
        if meta.state not in COMPLETED:
            return InitResult(ErrorCode.concurrent_transactions)
        if meta.epoch_exhausted and (expected is None or expected == meta.producer_epoch):
            target = meta.but(
                producer_id=self._next_producer_id(),
                previous_producer_id=meta.producer_id,
                producer_epoch=0,
                last_producer_epoch=NO_PRODUCER_EPOCH,
            )
        elif expected is None or meta.producer_epoch in (NO_PRODUCER_EPOCH, expected):
            target = meta.but(
                producer_epoch=meta.producer_epoch + 1,
                last_producer_epoch=(
                    meta.producer_epoch if expected is not None else NO_PRODUCER_EPOCH
                ),
            )
        elif expected == meta.last_producer_epoch:
            # A retry of the bump that was already done (KIP-360): the same answer again.
            return InitResult(ErrorCode.none, meta.producer_id, meta.producer_epoch)
        else:
            return InitResult(ErrorCode.producer_fenced)
        target = target.but(
            state=S.EMPTY, timeout_ms=timeout_ms, partitions=frozenset(), start_ms=-1, update_ms=now
        )
        step = self._transit(meta, target)

        def then(failed: set[PartitionLog]) -> InitResult:
            if not step.then(failed):
                return InitResult(ErrorCode.not_coordinator)
            return InitResult(ErrorCode.none, target.producer_id, target.producer_epoch)

        return Durable(step.waits, then)

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
        partitions: Iterable[TopicPartition],
    ) -> ErrorCode | Durable[ErrorCode]:
        meta, error = self.check_producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            return error
        wanted = frozenset(partitions)

        def retry() -> ErrorCode | Durable[ErrorCode]:
            return self.add_partitions(transactional_id, producer_id, producer_epoch, wanted)

        if transactional_id in self.pending or meta.state in PREPARED:
            return self._when_free(transactional_id, retry) or ErrorCode.concurrent_transactions
        if meta.state is S.ONGOING and wanted <= meta.partitions:
            return ErrorCode.none
        now = self._clock_ms()
        start = now if meta.state in COMPLETED else meta.start_ms
        target = meta.but(
            state=S.ONGOING, partitions=meta.partitions | wanted, start_ms=start, update_ms=now
        )
        step = self._transit(meta, target)
        return Durable(
            step.waits,
            lambda failed: ErrorCode.none if step.then(failed) else ErrorCode.not_coordinator,
        )

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
        self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool
    ) -> ErrorCode | Durable[ErrorCode]:
        meta = self.txns.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.invalid_producer_id_mapping
        if meta.producer_epoch != producer_epoch:
            return ErrorCode.producer_fenced

        def retry() -> ErrorCode | Durable[ErrorCode]:
            return self.end_transaction(transactional_id, producer_id, producer_epoch, commit)

        if transactional_id in self.pending:
            return self._when_free(transactional_id, retry) or ErrorCode.concurrent_transactions
        done = S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT
        preparing = S.PREPARE_COMMIT if commit else S.PREPARE_ABORT
        if meta.state is done:
            return ErrorCode.none  # a retry of an EndTxn that already completed
        if meta.state in PREPARED:
            # The markers of this transaction, or of the previous one, are being written. After
            # the previous commit, librdkafka may pipeline AddPartitionsToTxn and EndTxn(abort):
            # the AddPartitions waits for those markers (see `add_partitions`), so this EndTxn
            # must wait too and then be judged on the state they leave, or it would find the
            # previous transaction's state and fail as INVALID_TXN_STATE.
            return self._when_free(transactional_id, retry) or ErrorCode.concurrent_transactions
        if meta.state is not S.ONGOING:
            return ErrorCode.invalid_txn_state
        target = meta.but(state=preparing, update_ms=self._clock_ms())
        step = self._transit(meta, target, then_write_markers=True)
        return Durable(
            step.waits,
            lambda failed: ErrorCode.none if step.then(failed) else ErrorCode.not_coordinator,
        )

    def _abort(self, meta: TxnMetadata, fence: bool, now: int) -> None:
        """Abort an ongoing transaction from the coordinator's side, in the background."""
        self._background(_apply_later(self._prepare_abort(meta, fence, now)))

    def _prepare_abort(self, meta: TxnMetadata, fence: bool, now: int) -> Durable[bool]:
        """Write PrepareAbort for an ongoing transaction (timeout, fencing, a client's ABORT);
        the markers follow once it is durable. With `fence` the epoch is bumped first, so the
        old producer is fenced (Kafka's prepareFenceProducerEpoch)."""
        if fence and not meta.epoch_exhausted:
            # The fencing epoch is never handed to a client: its retry bumps once more.
            target = meta.but(
                producer_epoch=meta.producer_epoch + 1, last_producer_epoch=NO_PRODUCER_EPOCH
            )
        else:
            target = meta
        target = target.but(state=S.PREPARE_ABORT, update_ms=now)
        return self._transit(meta, target, then_write_markers=True)

    # ----------------------------------------------------------------- a client's ABORT marker
    def abort_from_client(
        self, producer_id: int, producer_epoch: int, partition: TopicPartition
    ) -> ErrorCode | Durable[ErrorCode] | None:
        """A client's ABORT marker for the producer's transaction on `partition` (WriteTxnMarkers,
        KIP-664). Returns None when this coordinator does not hold that transaction open (it
        hangs: its markers were lost, or the coordinator never knew of the write): the caller
        writes the marker to the partition itself, as Kafka's partition leader would.

        A transaction it does hold is aborted here, as a timeout aborts it: fenced, PrepareAbort,
        a marker in every partition of the transaction, CompleteAbort. The answer comes once the
        markers are durable, so the partition's last stable offset has moved by then."""
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
        return self._abort_held(meta.transactional_id, partition)

    def _abort_held(
        self, transactional_id: str, partition: TopicPartition
    ) -> ErrorCode | Durable[ErrorCode]:
        """Abort the transaction that held `partition` open, or say how it ended meanwhile."""

        def retry() -> ErrorCode | Durable[ErrorCode]:
            return self._abort_held(transactional_id, partition)

        meta = self.txns.get(transactional_id)
        if meta is None:
            return ErrorCode.none
        if meta.state in (S.PREPARE_COMMIT, S.COMPLETE_COMMIT):
            return ErrorCode.invalid_txn_state  # the producer's commit came first
        waiting = self._when_free(transactional_id, retry)
        if waiting is not None:
            return waiting  # a transition, or the abort's markers, being made durable
        if meta.state is not S.ONGOING or partition not in meta.partitions:
            return ErrorCode.none  # aborted, and no longer open on the partition
        step = self._prepare_abort(meta, fence=True, now=self._clock_ms())

        def then(failed: set[PartitionLog]) -> ErrorCode | Durable[ErrorCode]:
            if not step.then(failed):
                return ErrorCode.not_coordinator
            return retry()  # PrepareAbort is applied: wait for the markers

        return Durable(step.waits, then)

    def _write_markers(self, meta: TxnMetadata) -> Later:
        commit = meta.state is S.PREPARE_COMMIT
        now = self._clock_ms()
        waits: Waits = []
        unwritten: set[PartitionLog] = set()
        for topic, index in sorted(meta.partitions):
            partition_log = self._partition(topic, index)
            if partition_log is None:
                continue  # the topic was deleted meanwhile
            try:
                partition_log.append_marker(
                    meta.producer_id, meta.producer_epoch, commit, COORDINATOR_EPOCH, now
                )
            except ProducerStateError as exc:
                log.warning(
                    "no marker for %r on %s-%d: %s", meta.transactional_id, topic, index, exc
                )
                continue
            except StorageError as exc:
                log.error("marker for %r not written, retrying: %s", meta.transactional_id, exc)
                unwritten.add(partition_log)
                continue
            waits.append((partition_log, partition_log.log_end_offset))

        def complete(failed: set[PartitionLog]) -> bool:
            self.completing.pop(meta.transactional_id, None)
            if unwritten:
                self.markers_unwritten.add(meta.transactional_id)
            self._complete(meta.transactional_id, failed | unwritten)
            return not failed

        # Requests that arrive meanwhile run after the CompleteX, in arrival order, whichever
        # waiter's sync wakes first: after a commit, librdkafka may pipeline AddPartitionsToTxn
        # and EndTxn(abort) for the next transaction, and the EndTxn must find the partitions
        # added, not the previous transaction's state.
        busy = _Busy(waits, complete)
        self.completing[meta.transactional_id] = busy

        def release(failed: set[PartitionLog]) -> Later | None:
            busy.release(failed)
            return None

        return Later(waits, release)

    def _complete(self, transactional_id: str, failed: set[PartitionLog]) -> None:
        current = self.txns.get(transactional_id)
        if current is None or current.state not in PREPARED:
            return
        if failed:
            if transactional_id not in self.markers_unwritten:
                log.error(
                    "markers of %r not durable; it completes at the next start", transactional_id
                )
            return
        self.markers_unwritten.discard(transactional_id)
        done = S.COMPLETE_COMMIT if current.state is S.PREPARE_COMMIT else S.COMPLETE_ABORT
        target = current.but(state=done, partitions=frozenset(), update_ms=self._clock_ms())
        check_transition(current.state, target.state)
        append_record(self.txn_log, transactional_id.encode(), target.encode(), self._clock_ms())
        self._apply(target)

    # ----------------------------------------------------------------- periodic work
    def abort_timed_out(self) -> int:
        """Abort (and fence) every ongoing transaction past its timeout; returns how many.
        Also writes again the markers a partition refused last time."""
        for transactional_id in sorted(self.markers_unwritten):
            meta = self.txns.get(transactional_id)
            if meta is None or meta.state not in PREPARED:
                self.markers_unwritten.discard(transactional_id)
            elif transactional_id not in self.completing:
                self.markers_unwritten.discard(transactional_id)
                self._background(self._write_markers(meta))
        now = self._clock_ms()
        count = 0
        for meta in list(self.txns.values()):
            if (
                meta.state is S.ONGOING
                and meta.transactional_id not in self.pending
                and meta.start_ms + meta.timeout_ms < now
            ):
                log.info(
                    "aborting %r: open for %d ms, timeout %d ms",
                    meta.transactional_id,
                    now - meta.start_ms,
                    meta.timeout_ms,
                )
                self._abort(meta, fence=True, now=now)
                count += 1
        return count

    def expire_ids(self) -> int:
        """Tombstone ids idle for `transactional.id.expiration.ms`; returns how many."""
        now = self._clock_ms()
        count = 0
        for meta in list(self.txns.values()):
            if (
                meta.state in EXPIRABLE
                and meta.transactional_id not in self.pending
                and now - meta.update_ms >= self.settings.id_expiration_ms
            ):
                self._background(
                    _apply_later(self._transit(meta, meta.but(state=S.DEAD, update_ms=now)))
                )
                count += 1
        return count


class _Deferred(Generic[R]):
    """A request retried once the writes it waited for are durable; runs once."""

    def __init__(self, retry: Callable[[], R | Durable[R]]) -> None:
        self._retry: Callable[[], R | Durable[R]] | None = retry
        self._result: R | Durable[R] | None = None

    def run(self) -> R | Durable[R]:
        if self._retry is not None:
            retry, self._retry = self._retry, None
            self._result = retry()
        return cast("R | Durable[R]", self._result)


def _apply_later(step: Durable[bool]) -> Later:
    """Background work whose only effect is applying the transition once it is durable."""

    def then(failed: set[PartitionLog]) -> Later | None:
        step.then(failed)
        return None

    return Later(step.waits, then)
