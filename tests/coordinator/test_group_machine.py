"""The group coordinator's state machine, driven directly as h11's state tests drive h11: a
request (or a tick, or a record's durability) in; the group's state, the answers and the group
records out. No broker, no log, no sockets: time and member ids are parameters."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

from kio.schema.errors import ErrorCode

from samsa.coordinator.group.machine import (
    GroupSettings,
    GroupStateMachine,
    GroupWrite,
    JoinRequest,
    JoinResult,
    SyncResult,
)
from samsa.coordinator.group.model import Group
from samsa.coordinator.group.states import GroupState
from samsa.durability import Slot

G = GroupState
SESSION_MS = 10_000
REBALANCE_MS = 30_000
PROTOCOLS = [("range", b"range-meta"), ("roundrobin", b"rr-meta")]


def state_of(m: GroupStateMachine, group_id: str) -> G:
    """The group's state now (a call, so mypy does not keep an earlier assert's narrowing)."""
    return m.groups[group_id].state


def counting_uuids() -> Callable[[], uuid.UUID]:
    """Member ids the test can predict: 00000000-...-000000000001, ...-0002, ..."""
    count = iter(range(1, 1 << 32))
    return lambda: uuid.UUID(int=next(count))


def machine() -> GroupStateMachine:
    return GroupStateMachine(GroupSettings(session_timeout_ms_min=1000), counting_uuids())


def request(
    member_id: str = "",
    instance_id: str | None = None,
    protocols: list[tuple[str, bytes]] | None = None,
) -> JoinRequest:
    return JoinRequest(
        group_id="g",
        member_id=member_id,
        group_instance_id=instance_id,
        client_id="client",
        client_host="",
        session_timeout_ms=SESSION_MS,
        rebalance_timeout_ms=REBALANCE_MS,
        protocol_type="consumer",
        protocols=PROTOCOLS if protocols is None else protocols,
        require_known_member_id=True,
    )


def answer(result: JoinResult | SyncResult | Slot) -> object:
    """The answer a request got, at once or through its slot (None while it waits)."""
    if isinstance(result, Slot):
        return result.value if result.done else None
    return result


def decoded(write: GroupWrite) -> Group:
    assert write.value is not None
    return Group.decode(write.group_id, write.value, 0)


def join_alone(m: GroupStateMachine, now: int = 0) -> str:
    """One member joins an empty group (KIP-394 two-step) and completes the rebalance."""
    first = m.join(request(), now)
    assert isinstance(first, JoinResult)
    m.join(request(first.member_id), now)
    sync = m.sync("g", 1, first.member_id, None, None, None, {first.member_id: b"a0"}, now)
    [write] = m.take_writes()
    assert write.then is not None
    write.then(True, now)
    assert answer(sync) == SyncResult(ErrorCode.none, "consumer", "range", b"a0")
    return first.member_id


def test_a_first_member_gets_an_id_then_leads_the_first_generation() -> None:
    m = machine()
    first = m.join(request(), 0)
    member = "client-00000000-0000-0000-0000-000000000001"
    assert first == JoinResult(ErrorCode.member_id_required, member_id=member)
    assert state_of(m, "g") is G.EMPTY and m.groups["g"].pending_members == {member: SESSION_MS}
    assert m.take_writes() == []  # a member id handed out is not written

    joined = m.join(request(member), 1)
    assert answer(joined) == JoinResult(
        ErrorCode.none, 1, "consumer", "range", member, member, [(member, None, b"range-meta")]
    )
    assert state_of(m, "g") is G.COMPLETING_REBALANCE
    assert m.take_writes() == []

    sync = m.sync("g", 1, member, None, "consumer", "range", {member: b"assigned"}, 2)
    assert answer(sync) is None  # waits for the group record
    [write] = m.take_writes()
    assert write.group_id == "g"
    assert decoded(write).members[member].assignment == b"assigned"
    assert state_of(m, "g") is G.COMPLETING_REBALANCE  # not Stable before it is durable
    assert write.then is not None
    write.then(True, 3)
    assert state_of(m, "g") is G.STABLE
    assert answer(sync) == SyncResult(ErrorCode.none, "consumer", "range", b"assigned")


def test_an_assignment_that_is_not_durable_starts_a_new_rebalance() -> None:
    m = machine()
    first = m.join(request(), 0)
    assert isinstance(first, JoinResult)
    m.join(request(first.member_id), 0)
    sync = m.sync("g", 1, first.member_id, None, None, None, {first.member_id: b"x"}, 0)
    [write] = m.take_writes()
    assert write.then is not None
    write.then(False, 5)
    assert state_of(m, "g") is G.PREPARING_REBALANCE
    assert answer(sync) == SyncResult(ErrorCode.rebalance_in_progress)
    assert m.heartbeat("g", 1, first.member_id, None, 6) == ErrorCode.rebalance_in_progress


def test_a_second_member_rebalances_the_group_and_the_first_rejoins() -> None:
    m = machine()
    one = join_alone(m)
    pending = m.join(request(), 10)
    assert isinstance(pending, JoinResult) and pending.error == ErrorCode.member_id_required
    two = pending.member_id
    waiting = m.join(request(two), 11)
    assert answer(waiting) is None and state_of(m, "g") is G.PREPARING_REBALANCE
    assert m.heartbeat("g", 1, one, None, 12) == ErrorCode.rebalance_in_progress
    rejoined = m.join(request(one), 13)  # the barrier: every known member is back
    leader_view: list[tuple[str, str | None, bytes]] = [
        (one, None, b"range-meta"),
        (two, None, b"range-meta"),
    ]
    assert answer(rejoined) == JoinResult(
        ErrorCode.none, 2, "consumer", "range", one, one, leader_view
    )
    assert answer(waiting) == JoinResult(ErrorCode.none, 2, "consumer", "range", one, two, [])
    # A zombie of generation 1 can no longer commit; the members of generation 2 can't either
    # until the leader's assignment is stored (REBALANCE_IN_PROGRESS, as Kafka).
    assert m.check_commit("g", 1, two, None, 14) == ErrorCode.rebalance_in_progress
    assert m.check_commit("g", 1, "someone", None, 14) == ErrorCode.unknown_member_id


def test_a_member_past_its_session_timeout_is_removed_and_the_group_empties() -> None:
    m = machine()
    member = join_alone(m)
    m.tick(SESSION_MS)
    assert state_of(m, "g") is G.STABLE  # exactly the timeout: still in
    m.tick(SESSION_MS + 1)
    group = m.groups["g"]
    assert (group.state, group.generation_id, group.members) == (G.EMPTY, 2, {})
    [write] = m.take_writes()  # the new, empty generation is written
    assert (decoded(write).generation_id, decoded(write).members, write.then) == (2, {}, None)
    assert m.heartbeat("g", 1, member, None, SESSION_MS + 2) == ErrorCode.unknown_member_id


def test_the_last_member_leaving_empties_the_group() -> None:
    m = machine()
    member = join_alone(m)
    assert m.leave("g", [(member, None), ("nobody", None)], 5) == [
        ErrorCode.none,
        ErrorCode.unknown_member_id,
    ]
    assert state_of(m, "g") is G.EMPTY
    [write] = m.take_writes()
    assert decoded(write).members == {}
    assert m.leave("other", [(member, None)], 6) == [ErrorCode.unknown_member_id]


def test_a_restarted_static_member_takes_over_without_a_rebalance() -> None:
    """KIP-345: a new instance of a static member gets a new id, fences the old one, keeps
    its assignment; the answer waits for the group record naming the new id."""
    m = machine()
    first = m.join(request(instance_id="i1"), 0)  # static: no MEMBER_ID_REQUIRED round
    old = "i1-00000000-0000-0000-0000-000000000001"
    assert answer(first) is not None
    m.sync("g", 1, old, "i1", None, None, {old: b"mine"}, 0)
    [stored] = m.take_writes()
    assert stored.then is not None
    stored.then(True, 0)

    restarted = m.join(request(instance_id="i1"), 100)
    new = "i1-00000000-0000-0000-0000-000000000002"
    assert answer(restarted) is None
    assert state_of(m, "g") is G.STABLE and list(m.groups["g"].members) == [new]
    [write] = m.take_writes()
    assert list(decoded(write).members) == [new]
    assert write.then is not None
    write.then(True, 101)
    # The answer names the old leader id: the restarted leader does not reassign.
    assert answer(restarted) == JoinResult(ErrorCode.none, 1, "consumer", "range", old, new, [])
    assert m.sync("g", 1, new, "i1", None, None, {}, 102) == SyncResult(
        ErrorCode.none, "consumer", "range", b"mine"
    )
    assert m.heartbeat("g", 1, old, "i1", 103) == ErrorCode.fenced_instance_id


def test_commits_are_checked_against_member_and_generation() -> None:
    m = machine()
    # A simple consumer (no member, no generation) commits to a group it creates.
    assert m.check_commit("simple", -1, "", None, 0) == ErrorCode.none
    m.group_for_offsets("simple")
    assert m.groups["simple"].state is G.EMPTY
    assert m.check_commit("nope", 3, "m", None, 0) == ErrorCode.illegal_generation
    member = join_alone(m)
    assert m.check_commit("g", 1, member, None, 1) == ErrorCode.none
    assert m.check_commit("g", 0, member, None, 1) == ErrorCode.illegal_generation
    # KIP-447: a transactional commit from a member of another generation is refused, one
    # without member and generation (an older client) is not.
    assert m.check_txn_commit("g", 0, member, None) == ErrorCode.illegal_generation
    assert m.check_txn_commit("g", 1, "zombie", None) == ErrorCode.unknown_member_id
    assert m.check_txn_commit("g", -1, "", None) == ErrorCode.none


def test_a_group_record_replays_into_a_stable_group_and_a_tombstone_deletes_it() -> None:
    m = machine()
    member = join_alone(m)
    m.take_writes()
    record = m.groups["g"].encode()

    restarted = machine()
    restarted.replay("g", record, 500)
    group = restarted.groups["g"]
    assert (group.state, group.generation_id, group.leader_id) == (G.STABLE, 1, member)
    assert group.members[member].assignment == b"a0"
    assert group.members[member].last_heartbeat_ms == 500  # a fresh session after a restart
    assert restarted.heartbeat("g", 1, member, None, 501) == ErrorCode.none
    restarted.replay("g", None, 502)
    assert "g" not in restarted.groups


def test_an_inconsistent_protocol_or_session_timeout_is_refused() -> None:
    m = machine()
    join_alone(m)
    other = request(protocols=[("sticky", b"")])
    assert answer(m.join(other, 0)) == JoinResult(ErrorCode.inconsistent_group_protocol)
    too_short = dataclasses.replace(request(), session_timeout_ms=1)
    assert m.join(too_short, 0) == JoinResult(ErrorCode.invalid_session_timeout)
    assert m.take_writes() == []
