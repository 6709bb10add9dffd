"""The transaction state machine, as data (Kafka's TransactionState / TransactionMetadata).

Each transition is written to the transaction log before it takes effect; while one is being
written, the id has a pending state and other requests get CONCURRENT_TRANSACTIONS.
"""

from __future__ import annotations

from enum import Enum


class TxnState(Enum):
    EMPTY = "Empty"
    ONGOING = "Ongoing"
    PREPARE_COMMIT = "PrepareCommit"
    PREPARE_ABORT = "PrepareAbort"
    COMPLETE_COMMIT = "CompleteCommit"
    COMPLETE_ABORT = "CompleteAbort"
    DEAD = "Dead"
    PREPARE_EPOCH_FENCE = "PrepareEpochFence"


S = TxnState

# state -> the states it may be entered from (Kafka's TransactionState.validPreviousStates).
VALID_PREVIOUS: dict[TxnState, frozenset[TxnState]] = {
    S.EMPTY: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.ONGOING: frozenset({S.ONGOING, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_COMMIT: frozenset({S.ONGOING}),
    S.PREPARE_ABORT: frozenset({S.ONGOING, S.PREPARE_EPOCH_FENCE}),
    S.COMPLETE_COMMIT: frozenset({S.PREPARE_COMMIT}),
    S.COMPLETE_ABORT: frozenset({S.PREPARE_ABORT}),
    S.DEAD: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_EPOCH_FENCE: frozenset({S.ONGOING}),
}

# Where a transactional id may be expired from (transactional.id.expiration.ms).
EXPIRABLE = frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT})
# Where a new transaction may begin, or the producer be re-initialised.
COMPLETED = EXPIRABLE
PREPARED = frozenset({S.PREPARE_COMMIT, S.PREPARE_ABORT})
# Where the coordinator holds a transaction open: its partitions await its markers.
HELD = frozenset({S.ONGOING}) | PREPARED


class IllegalTransition(Exception):
    """An internal error: the coordinator tried a transition the table forbids."""


def check_transition(current: TxnState, target: TxnState) -> None:
    if current not in VALID_PREVIOUS[target]:
        raise IllegalTransition(f"{current.value} -> {target.value} is not a valid transition")
