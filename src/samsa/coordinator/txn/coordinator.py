"""The transaction coordinator (Kafka's TransactionCoordinator, TV1 as librdkafka uses it).

The decisions are `TxnStateMachine`'s (`machine.py`: state, request -> records, response); this
module is what runs them: the runtime appends a transition to the transaction log, and once it
is durable (`Durable.then`) replays it into the state machine; meanwhile the id is pending. Ending
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

AddPartitionsToTxn is answered as soon as its record is written, before it is durable; the
record still takes effect only once it is (the id is pending until then). Its fsync then runs
while the answer travels and the client sends its Produce, instead of before the answer. What
keeps this safe is that nothing reaches a partition on the strength of an addition that is not
yet durable: a transactional Produce to a partition being added waits for that record before
it is appended (`unsettled_adds`), so no crash can leave a partition holding a transaction
its coordinator does not know (a hanging transaction). A crash that loses the record (power
lost before its fsync; `kill -9` loses nothing written) costs the client that transaction: its
Produce is refused (INVALID_TXN_STATE, KIP-890's check) and nothing was written. Kafka too
answers AddPartitionsToTxn before any disk holds the record (once its followers have it in
memory). AddOffsetsToTxn is still answered once durable (TxnOffsetCommit does not wait).

A client may ask for a transaction to be aborted (an ABORT marker sent with WriteTxnMarkers,
KIP-664's `Admin.abortTransaction`, `samsa txn abort`). If the coordinator holds that
transaction open, it aborts it itself, the way a timeout does (`abort_from_client`): the epoch
is bumped (fencing the producer), then PrepareAbort, the markers and CompleteAbort, so the
coordinator, the producer and the partitions agree on the outcome. Only a transaction the
coordinator does not hold (a hanging one) gets its marker written by the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from kio.schema.errors import ErrorCode

from samsa.coordinator.runtime import CoordinatorResult, CoordinatorRuntime
from samsa.coordinator.txn.machine import (
    Decision,
    Fence,
    InitResult,
    Transition,
    TxnSettings,
    TxnStateMachine,
    Wait,
    read_txn_record,
    txn_record,
)
from samsa.coordinator.txn.metadata import TopicPartition, TxnMetadata
from samsa.coordinator.txn.states import PREPARED, TxnState
from samsa.durability import Durable, Later, Waits
from samsa.log.partition import PartitionLog, StorageError
from samsa.ratelog import RateLimitedLog
from samsa.state.producers import ProducerStateError

__all__ = ["COORDINATOR_EPOCH", "InitResult", "TransactionCoordinator", "TxnSettings"]

log = logging.getLogger("samsa.txn")
# Repeats per request or retry while the disk fails: one line per interval.
_limited = RateLimitedLog(log)

COORDINATOR_EPOCH = 0  # one broker, never a coordinator failover
R = TypeVar("R")

S = TxnState


@dataclass(slots=True)
class _Busy:
    """Writes an id is waiting for (a transition's record, or the markers that end its
    transaction), what to do once they are durable, and the requests that arrived meanwhile.
    `release` runs once, whoever wakes first: `finish`, then the requests in arrival order."""

    waits: Waits
    finish: Callable[[set[PartitionLog]], bool]
    # The partitions the transition adds to the id's transaction (Ongoing records only).
    adds: frozenset[TopicPartition] = frozenset()
    succeeded: bool | None = None  # None until released
    waiting: list[_Deferred[Any]] = field(default_factory=list)

    def release(self, failed: set[PartitionLog]) -> bool:
        if self.succeeded is None:
            self.succeeded = self.finish(failed)
            waiting, self.waiting = self.waiting, []
            for deferred in waiting:
                deferred.run()
        return self.succeeded


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
        self._clock_ms = clock_ms
        self.settings = settings
        self._background = background
        self.machine = TxnStateMachine(next_producer_id, settings)
        # Reads of the state, answered by the state machine as they are.
        self.verify = self.machine.verify  # KIP-890 part 1, for produce and TxnOffsetCommit
        self.check_producer = self.machine.check_producer
        self.runtime = CoordinatorRuntime(txn_log, txn_record, self._replay, clock_ms)
        # Ids whose last transition is not yet durable, and ids whose markers are being written.
        self.pending: dict[str, _Busy] = {}
        self.completing: dict[str, _Busy] = {}
        # Prepared ids whose markers a partition refused (a full disk): written again on the
        # next tick, as Kafka's marker channel retries, until every partition has its marker.
        self.markers_unwritten: set[str] = set()

    @property
    def txns(self) -> dict[str, TxnMetadata]:
        """Every transactional id's metadata: the replay of the transaction log."""
        return self.machine.txns

    # ----------------------------------------------------------------- log
    def load(self) -> int:
        """Replay the transaction log; finish every transaction found prepared."""
        count = 0
        for key, value in self.runtime.read():
            meta = read_txn_record(key, value)
            if meta is not None:
                self._replay([meta])
                count += 1
        for meta in list(self.txns.values()):
            if meta.state in PREPARED:
                log.info(
                    "completing %s of %r after restart", meta.state.value, meta.transactional_id
                )
                self._background(self._write_markers(meta))
        return count

    def _replay(self, records: Sequence[TxnMetadata]) -> None:
        for meta in records:
            self.pending.pop(meta.transactional_id, None)
            self.machine.replay(meta)

    def _transit(self, result: Transition[Any]) -> Durable[bool]:
        """Write a transition; once durable, replay it (and, for PrepareX, start the markers
        before any waiting request runs). The result says whether it was replayed."""
        (target,) = result.records
        step = self.runtime.write(result.records)

        def finish(failed: set[PartitionLog]) -> bool:
            self.pending.pop(target.transactional_id, None)
            if not step.then(failed):
                return False
            if target.state in PREPARED:
                self._background(self._write_markers(target))
            return True

        current = self.txns.get(target.transactional_id)
        held = current.partitions if current is not None and current.state is S.ONGOING else ()
        adds = target.partitions.difference(held) if target.state is S.ONGOING else frozenset()
        busy = _Busy(step.waits, finish, adds)
        self.pending[target.transactional_id] = busy
        return Durable(busy.waits, busy.release)

    def _run(
        self, transactional_id: str, decision: Decision[R], retry: Callable[[], R | Durable[R]]
    ) -> R | Durable[R]:
        """Carry out a decision of the state machine: answer it, wait, or write it."""
        if isinstance(decision, Wait):
            return self._when_free(transactional_id, retry) or decision.otherwise
        if isinstance(decision, CoordinatorResult):
            result: Transition[R] = decision
            step = self._transit(result)
            return Durable(
                step.waits, lambda failed: result.response if step.then(failed) else result.failed
            )
        return decision

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

    # ----------------------------------------------------------------- requests
    def init_producer_id(
        self, transactional_id: str, timeout_ms: int, producer_id: int, producer_epoch: int
    ) -> InitResult | Durable[InitResult]:
        """Fence older instances of the transactional id and hand out its next epoch."""
        decision = self.machine.init_producer_id(
            transactional_id,
            timeout_ms,
            producer_id,
            producer_epoch,
            transactional_id in self.pending,
            self._clock_ms(),
        )
        if isinstance(decision, Fence):
            self._background(_apply_later(self._transit(decision.abort)))
            return InitResult(ErrorCode.concurrent_transactions)
        return self._run(
            transactional_id,
            decision,
            lambda: self.init_producer_id(
                transactional_id, timeout_ms, producer_id, producer_epoch
            ),
        )

    def add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
        early: bool = False,
    ) -> ErrorCode | Durable[ErrorCode]:
        """`early`: answer once the record is written, not once it is durable
        (AddPartitionsToTxn; see the module's doc)."""
        wanted = frozenset(partitions)
        decision = self.machine.add_partitions(
            transactional_id,
            producer_id,
            producer_epoch,
            wanted,
            transactional_id in self.pending,
            self._clock_ms(),
        )
        if early and isinstance(decision, CoordinatorResult):
            return self._answer_early(decision)
        return self._run(
            transactional_id,
            decision,
            lambda: self.add_partitions(
                transactional_id, producer_id, producer_epoch, wanted, early
            ),
        )

    def _answer_early(self, result: Transition[ErrorCode]) -> ErrorCode:
        """Write a transition, to take effect once durable; its answer now."""
        step = self._transit(result)
        self._background(_apply_later(step))
        refused = any(log.never_durable(end) for log, end in step.waits)
        return result.failed if refused else result.response

    def unsettled_adds(
        self, transactional_id: str, partitions: Iterable[TopicPartition]
    ) -> Durable[bool] | None:
        """What a transactional Produce to `partitions` waits for before it is appended: the
        record adding any of them, if it was answered early and is not yet durable (None:
        nothing). Its `then` applies the record (whichever waiter wakes first) and says whether
        it was."""
        busy = self.pending.get(transactional_id)
        if busy is None or busy.adds.isdisjoint(partitions):
            return None
        return Durable(busy.waits, busy.release)

    def end_transaction(
        self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool
    ) -> ErrorCode | Durable[ErrorCode]:
        decision = self.machine.end_transaction(
            transactional_id,
            producer_id,
            producer_epoch,
            commit,
            transactional_id in self.pending,
            self._clock_ms(),
        )
        return self._run(
            transactional_id,
            decision,
            lambda: self.end_transaction(transactional_id, producer_id, producer_epoch, commit),
        )

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
        held = self.machine.held(producer_id, producer_epoch, partition)
        if isinstance(held, TxnMetadata):
            return self._abort_held(held.transactional_id, partition)
        return held

    def _abort_held(
        self, transactional_id: str, partition: TopicPartition
    ) -> ErrorCode | Durable[ErrorCode]:
        """Abort the transaction that held `partition` open, or say how it ended meanwhile."""

        def retry() -> ErrorCode | Durable[ErrorCode]:
            return self._abort_held(transactional_id, partition)

        busy = transactional_id in self.pending or transactional_id in self.completing
        decision = self.machine.abort_held(transactional_id, partition, busy, self._clock_ms())
        if not isinstance(decision, CoordinatorResult):
            return self._run(transactional_id, decision, retry)
        step = self._transit(decision)

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
                _limited.warning(
                    "no marker for %r on %s-%d: %s", meta.transactional_id, topic, index, exc
                )
                continue
            except StorageError as exc:
                _limited.error(
                    "marker for %r not written, retrying: %s", meta.transactional_id, exc
                )
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
        self.runtime.apply_now([self.machine.complete(current, self._clock_ms())])

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
        aborts = self.machine.timed_out(self._clock_ms(), self.pending)
        for abort in aborts:
            self._background(_apply_later(self._transit(abort)))
        return len(aborts)

    def expire_ids(self) -> int:
        """Tombstone ids idle for `transactional.id.expiration.ms`; returns how many."""
        expired = self.machine.expired(self._clock_ms(), self.pending)
        for tombstone in expired:
            self._background(_apply_later(self._transit(tombstone)))
        return len(expired)


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
