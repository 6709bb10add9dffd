"""Hypothesis walks over both transition tables (`coordinator/txn/states.py`,
`coordinator/group/states.py`) and the state machines that follow them.

- A walk over a table tries any target from wherever it is: a step the table forbids is refused
  (`IllegalTransition` / `IllegalGroupTransition`) and changes nothing; from every state a walk
  reaches, a stable state can still be reached by legal steps (no trap).
- A walk over a state machine sends any request in any order (with stale epochs and
  generations, writes made durable in any order or failed, time jumping): the machine never
  tries a forbidden transition, and once the clients stop, every path ends in a stable state:
  every transaction Empty, CompleteCommit or CompleteAbort; every group Stable or Empty.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Mapping
from enum import Enum
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from kio.schema.errors import ErrorCode

from samsa.coordinator.group import states as group_states
from samsa.coordinator.group.machine import (
    GroupSettings,
    GroupStateMachine,
    GroupWrite,
    JoinRequest,
    JoinResult,
)
from samsa.coordinator.group.states import GroupState, IllegalGroupTransition
from samsa.coordinator.runtime import CoordinatorResult
from samsa.coordinator.txn import states as txn_states
from samsa.coordinator.txn.machine import Fence, InitResult, TxnSettings, TxnStateMachine, Wait
from samsa.coordinator.txn.metadata import TxnMetadata
from samsa.coordinator.txn.states import PREPARED, IllegalTransition, TxnState
from samsa.durability import Slot

E = TypeVar("E", bound=Enum)
TXN_STABLE = frozenset({TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT})
GROUP_STABLE = frozenset({GroupState.STABLE, GroupState.EMPTY})
WALK_STEPS_MAX = 40


# --------------------------------------------------------------------- the tables
def _reachable(start: E, valid_previous: Mapping[E, frozenset[E]]) -> set[E]:
    """Every state legal steps lead to from `start` (itself included)."""
    seen, todo = {start}, deque([start])
    while todo:
        state = todo.popleft()
        for target, previous in valid_previous.items():
            if state in previous and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _walk(
    start: E,
    targets: list[E],
    valid_previous: Mapping[E, frozenset[E]],
    check: Callable[[E, E], None],
    refused: type[Exception],
) -> E:
    state = start
    for target in targets:
        if state in valid_previous[target]:
            check(state, target)
            state = target
        else:
            with pytest.raises(refused):
                check(state, target)
    return state


@given(st.lists(st.sampled_from(TxnState), max_size=WALK_STEPS_MAX))
def test_a_walk_over_the_transaction_table(targets: list[TxnState]) -> None:
    table = txn_states.VALID_PREVIOUS
    end = _walk(TxnState.EMPTY, targets, table, txn_states.check_transition, IllegalTransition)
    if end is not TxnState.DEAD:  # an expired id is gone; its next life starts from Empty
        assert _reachable(end, table) & TXN_STABLE, end


@given(st.lists(st.sampled_from(GroupState), max_size=WALK_STEPS_MAX))
def test_a_walk_over_the_group_table(targets: list[GroupState]) -> None:
    table = group_states.VALID_PREVIOUS
    end = _walk(
        GroupState.EMPTY, targets, table, group_states.check_transition, IllegalGroupTransition
    )
    if end is not GroupState.DEAD:
        assert _reachable(end, table) & GROUP_STABLE, end


def _every_pair(
    states: type[E],
    valid_previous: Mapping[E, frozenset[E]],
    check: Callable[[E, E], None],
    refused: type[Exception],
) -> None:
    for current in states:
        for target in states:
            if current in valid_previous[target]:
                check(current, target)
            else:
                with pytest.raises(refused):
                    check(current, target)


def test_every_forbidden_pair_is_refused() -> None:
    """Exhaustively, beside the walks: a pair is accepted exactly when the table lists it."""
    _every_pair(TxnState, txn_states.VALID_PREVIOUS, txn_states.check_transition, IllegalTransition)
    _every_pair(
        GroupState,
        group_states.VALID_PREVIOUS,
        group_states.check_transition,
        IllegalGroupTransition,
    )


# --------------------------------------------------------------------- the transaction machine
TXN_IDS = ("a", "b")
TXN_TIMEOUT_MS = 10_000
PARTITIONS = (("t", 0), ("t", 1), ("__consumer_offsets", 0))


class TransactionWalk(RuleBasedStateMachine):
    """Plays the runtime around `TxnStateMachine`: records in flight are made durable (or
    fail) in any order, prepared transactions get their markers whenever the walk says."""

    def __init__(self) -> None:
        super().__init__()
        ids = iter(range(1000, 10_000))
        self.machine = TxnStateMachine(
            lambda: next(ids), TxnSettings(TXN_TIMEOUT_MS, id_expiration_ms=3 * TXN_TIMEOUT_MS)
        )
        self.now = 0
        self.in_flight: dict[str, TxnMetadata] = {}  # one transition per id at a time
        self.prepared: set[str] = set()  # durable PrepareX, markers not yet written

    def _decided(self, decision: object) -> None:
        if isinstance(decision, Fence):
            decision = decision.abort
        if isinstance(decision, CoordinatorResult):
            (target,) = decision.records
            assert target.transactional_id not in self.in_flight
            self.in_flight[target.transactional_id] = target
        else:
            assert isinstance(decision, InitResult | ErrorCode | Wait), decision

    def _client(self, transactional_id: str, stale: bool) -> tuple[int, int]:
        meta = self.machine.txns.get(transactional_id)
        if meta is None:
            return -1, -1
        return meta.producer_id, meta.producer_epoch - (1 if stale else 0)

    @rule(transactional_id=st.sampled_from(TXN_IDS), resume=st.booleans())
    def init(self, transactional_id: str, resume: bool) -> None:
        producer_id, epoch = self._client(transactional_id, stale=False) if resume else (-1, -1)
        self._decided(
            self.machine.init_producer_id(
                transactional_id,
                TXN_TIMEOUT_MS,
                producer_id,
                epoch,
                transactional_id in self.in_flight,
                self.now,
            )
        )

    @rule(
        transactional_id=st.sampled_from(TXN_IDS),
        partitions=st.sets(st.sampled_from(PARTITIONS), min_size=1),
        stale=st.booleans(),
    )
    def add_partitions(
        self, transactional_id: str, partitions: set[tuple[str, int]], stale: bool
    ) -> None:
        producer_id, epoch = self._client(transactional_id, stale)
        pending = transactional_id in self.in_flight
        self._decided(
            self.machine.add_partitions(
                transactional_id, producer_id, epoch, frozenset(partitions), pending, self.now
            )
        )

    @rule(transactional_id=st.sampled_from(TXN_IDS), commit=st.booleans(), stale=st.booleans())
    def end_transaction(self, transactional_id: str, commit: bool, stale: bool) -> None:
        producer_id, epoch = self._client(transactional_id, stale)
        pending = transactional_id in self.in_flight
        self._decided(
            self.machine.end_transaction(
                transactional_id, producer_id, epoch, commit, pending, self.now
            )
        )

    @rule(transactional_id=st.sampled_from(TXN_IDS), partition=st.sampled_from(PARTITIONS))
    def client_abort(self, transactional_id: str, partition: tuple[str, int]) -> None:
        producer_id, epoch = self._client(transactional_id, stale=False)
        held = self.machine.held(producer_id, epoch, partition)
        if isinstance(held, TxnMetadata):
            busy = transactional_id in self.in_flight or transactional_id in self.prepared
            self._decided(self.machine.abort_held(transactional_id, partition, busy, self.now))

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data(), durable=st.booleans())
    def write_ends(self, data: st.DataObject, durable: bool) -> None:
        transactional_id = data.draw(st.sampled_from(sorted(self.in_flight)))
        target = self.in_flight.pop(transactional_id)
        if durable:
            self.machine.replay(target)
            if target.state in PREPARED:
                self.prepared.add(transactional_id)

    @precondition(lambda self: bool(self.prepared))
    @rule(data=st.data())
    def markers_written(self, data: st.DataObject) -> None:
        transactional_id = data.draw(st.sampled_from(sorted(self.prepared)))
        self._complete(transactional_id)

    @rule(elapsed_ms=st.integers(0, 2 * TXN_TIMEOUT_MS))
    def tick(self, elapsed_ms: int) -> None:
        self.now += elapsed_ms
        for abort in self.machine.timed_out(self.now, self.in_flight):
            self._decided(abort)

    @rule()
    def expire(self) -> None:
        for tombstone in self.machine.expired(self.now, self.in_flight):
            self._decided(tombstone)

    def _complete(self, transactional_id: str) -> None:
        self.prepared.discard(transactional_id)
        meta = self.machine.txns[transactional_id]
        self.machine.replay(self.machine.complete(meta, self.now))

    @invariant()
    def held_transactions_are_ongoing_or_prepared(self) -> None:
        for transactional_id, meta in self.machine.txns.items():
            assert (meta.state in PREPARED) == (transactional_id in self.prepared)
            if meta.state in TXN_STABLE:
                assert not meta.partitions

    def teardown(self) -> None:
        """The clients stop: every write becomes durable, markers are written, timeouts
        pass. Every transaction ends stable."""
        for _ in range(10):
            for transactional_id in sorted(self.in_flight):
                self.write_ends_now(transactional_id)
            for transactional_id in sorted(self.prepared):
                self._complete(transactional_id)
            self.tick(TXN_TIMEOUT_MS + 1)
        assert not self.in_flight and not self.prepared
        states = {t: meta.state for t, meta in self.machine.txns.items()}
        assert set(states.values()) <= TXN_STABLE, states

    def write_ends_now(self, transactional_id: str) -> None:
        target = self.in_flight.pop(transactional_id)
        self.machine.replay(target)
        if target.state in PREPARED:
            self.prepared.add(transactional_id)


TransactionWalk.TestCase.settings = settings(
    max_examples=150, stateful_step_count=WALK_STEPS_MAX, deadline=None
)
test_walks_over_the_transaction_machine = TransactionWalk.TestCase


# --------------------------------------------------------------------- the group machine
SESSION_MS = 10_000
REBALANCE_MS = 20_000
INSTANCES = (None, None, "static-1", "static-2")


class GroupWalk(RuleBasedStateMachine):
    """Plays the clients and the runtime around `GroupStateMachine`: members join (new,
    static, restarted), sync with any generation, heartbeat, leave and fall silent; group
    records become durable, or fail, in any order."""

    def __init__(self) -> None:
        super().__init__()
        count = iter(range(1, 1 << 32))
        self.machine = GroupStateMachine(
            GroupSettings(session_timeout_ms_min=1000), lambda: uuid.UUID(int=next(count))
        )
        self.now = 0
        self.writes: list[GroupWrite] = []
        self.handed_out: list[str] = []  # member ids a client was given (MEMBER_ID_REQUIRED)
        self.generations: list[int] = [0]

    def _request(self, member_id: str, instance: str | None) -> JoinRequest:
        return JoinRequest(
            "g",
            member_id,
            instance,
            "client",
            "",
            SESSION_MS,
            REBALANCE_MS,
            "consumer",
            [("range", b"r")],
            require_known_member_id=True,
        )

    def _took(self, result: object) -> None:
        self.writes.extend(self.machine.take_writes())
        if isinstance(result, JoinResult) and result.error == ErrorCode.member_id_required:
            self.handed_out.append(result.member_id)

    def _members(self) -> list[str]:
        group = self.machine.groups.get("g")
        return sorted(group.members) if group is not None else []

    @rule(instance=st.sampled_from(INSTANCES))
    def join_without_an_id(self, instance: str | None) -> None:
        self._took(self.machine.join(self._request("", instance), self.now))

    @rule(data=st.data())
    def join_with_an_id(self, data: st.DataObject) -> None:
        known = self.handed_out + self._members()
        if known:
            member_id = data.draw(st.sampled_from(known))
            group = self.machine.groups.get("g")
            member = group.members.get(member_id) if group is not None else None
            instance = member.group_instance_id if member is not None else None
            self._took(self.machine.join(self._request(member_id, instance), self.now))

    @rule(data=st.data(), stale=st.booleans())
    def sync(self, data: st.DataObject, stale: bool) -> None:
        group = self.machine.groups.get("g")
        members = self._members()
        if group is None or not members:
            return
        member_id = data.draw(st.sampled_from(members))
        generation = group.generation_id - (1 if stale else 0)
        assignments = {m: m.encode() for m in members}
        instance = group.members[member_id].group_instance_id
        self._took(
            self.machine.sync(
                "g", generation, member_id, instance, None, None, assignments, self.now
            )
        )

    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        group = self.machine.groups.get("g")
        members = self._members()
        if group is not None and members:
            member_id = data.draw(st.sampled_from(members))
            self.machine.heartbeat("g", group.generation_id, member_id, None, self.now)

    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        members = self._members() + self.handed_out
        if members:
            member_id = data.draw(st.sampled_from(members))
            self._took(self.machine.leave("g", [(member_id, None)], self.now))

    @rule(elapsed_ms=st.integers(0, 2 * REBALANCE_MS))
    def tick(self, elapsed_ms: int) -> None:
        self.now += elapsed_ms
        self.machine.tick(self.now)
        self._took(None)

    @precondition(lambda self: bool(self.writes))
    @rule(data=st.data(), durable=st.booleans())
    def write_ends(self, data: st.DataObject, durable: bool) -> None:
        write = self.writes.pop(data.draw(st.integers(0, len(self.writes) - 1)))
        if write.then is not None:
            write.then(durable, self.now)
        self._took(None)

    @invariant()
    def the_group_is_consistent(self) -> None:
        group = self.machine.groups.get("g")
        if group is None:
            return
        assert group.generation_id >= self.generations[-1]  # never goes back
        self.generations.append(group.generation_id)
        if group.state is GroupState.EMPTY:
            assert not group.members
        if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            assert group.leader_id in group.members

    def teardown(self) -> None:
        """The members stop changing: writes become durable, a rebalance in progress runs
        out its deadline, the leader hands out the assignment. The group ends Stable or Empty."""
        group = self.machine.groups.get("g")
        if group is None:
            return
        for _ in range(10):
            while self.writes:
                write = self.writes.pop(0)
                if write.then is not None:
                    write.then(True, self.now)
                self._took(None)
            if group.state is GroupState.PREPARING_REBALANCE:
                self.now = max(self.now, group.rebalance_deadline_ms, group.join_ready_ms)
                self.machine.tick(self.now)
            elif group.state is GroupState.COMPLETING_REBALANCE:
                leader = group.leader_id or ""
                assignments = {m: b"" for m in group.members}
                instance = group.members[leader].group_instance_id
                result = self.machine.sync(
                    "g", group.generation_id, leader, instance, None, None, assignments, self.now
                )
                assert isinstance(result, Slot)
            self._took(None)
        assert group.state in GROUP_STABLE, group.state
        assert not self.writes


GroupWalk.TestCase.settings = settings(
    max_examples=150, stateful_step_count=WALK_STEPS_MAX, deadline=None
)
test_walks_over_the_group_machine = GroupWalk.TestCase
