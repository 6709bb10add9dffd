"""The consumer group protocol's state machine (KIP-848), driven directly: a heartbeat in, the
records and the answer out, the records replayed as the coordinator replays them (so the state
a test sees is the state a restarted broker would rebuild). Also the assignors."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid

from hypothesis import example, given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from samsa.coordinator.group.assignors import AssignmentSpec, Partitions, range_, uniform
from samsa.coordinator.group.consumer import (
    ConsumerGroups,
    ConsumerGroupState,
    ConsumerMember,
    MemberState,
    Record,
)
from samsa.coordinator.group.consumer_machine import (
    ConsumerGroupMachine,
    HeartbeatRequest,
    HeartbeatResponse,
    TopicsView,
    subscribed_names,
)
from samsa.coordinator.group.machine import GroupSettings
from samsa.coordinator.group.model import Group

T1 = str(uuid.UUID(int=1))
T2 = str(uuid.UUID(int=2))
TOPICS = TopicsView({"t1": (T1, 4), "t2": (T2, 2), "__internal": (str(uuid.UUID(int=9)), 1)},
                    frozenset({"__internal"}))  # fmt: skip
SESSION_MS = 45_000


def state_of(h: Harness) -> ConsumerGroupState:
    """The group's state now (a call, so mypy keeps no earlier narrowing)."""
    return h.machine.groups["g"].state


class Harness:
    """A machine whose records are replayed as the coordinator replays them."""

    def __init__(self, assignors: tuple[str, ...] = ("uniform", "range")) -> None:
        self.machine = ConsumerGroupMachine(
            GroupSettings(consumer_assignors=assignors), lambda: uuid.UUID(int=7)
        )
        self.log: list[Record] = []
        self.now = 0

    def replay(self, records: list[Record], state: ConsumerGroups | None = None) -> None:
        for key, value in records:
            (state or self.machine.state).replay(tuple(json.loads(key)), value, self.now)

    def beat(
        self,
        member_id: str,
        epoch: int,
        owned: Partitions | None = None,
        topics: tuple[str, ...] | None = None,
        group: str = "g",
        instance_id: str | None = None,
        regex: str | None = None,
        assignor: str | None = None,
        classic: Group | None = None,
    ) -> HeartbeatResponse:
        joining = epoch == 0
        request = HeartbeatRequest(
            group_id=group,
            member_id=member_id,
            member_epoch=epoch,
            instance_id=instance_id,
            rack_id=None,
            rebalance_timeout_ms=30_000 if joining else -1,
            subscribed_topic_names=topics
            if topics is not None or not joining or regex
            else ("t1",),
            subscribed_topic_regex=regex,
            server_assignor=assignor,
            topic_partitions={} if joining else owned,
            client_id="c",
            client_host="/127.0.0.1",
        )
        result = self.machine.heartbeat(request, TOPICS, classic, self.now)
        self.log.extend(result.records)
        self.replay(result.records)
        self.machine.touch(group, result.touch, self.now)
        return result.response

    def member(self, member_id: str, group: str = "g") -> ConsumerMember:
        return self.machine.groups[group].members[member_id]


def test_the_first_member_gets_every_partition() -> None:
    h = Harness()
    answer = h.beat("a", 0)
    assert answer.error == ErrorCode.none
    assert (answer.member_id, answer.member_epoch) == ("a", 1)
    assert answer.assignment == {T1: frozenset({0, 1, 2, 3})}
    assert answer.heartbeat_interval_ms == 5_000
    assert state_of(h) is ConsumerGroupState.STABLE
    # a plain heartbeat changes nothing and carries no assignment
    again = h.beat("a", 1)
    assert (again.member_epoch, again.assignment) == (1, None)


def test_a_partition_moves_only_once_its_owner_revoked_it() -> None:
    h = Harness()
    h.beat("a", 0)
    b = h.beat("b", 0)
    assert b.member_epoch == 2 and b.assignment == {}  # its partitions are still a's
    assert h.member("b").state is MemberState.UNRELEASED_PARTITIONS
    assert state_of(h) is ConsumerGroupState.RECONCILING
    a = h.beat("a", 1)  # a must give two partitions up: it stays in epoch 1
    assert a.member_epoch == 1 and a.assignment is not None
    kept = a.assignment[T1]
    assert len(kept) == 2 and h.member("a").state is MemberState.UNREVOKED_PARTITIONS
    still = h.beat("b", 2)  # a has not said it revoked them
    assert still.assignment is None and h.member("b").assigned == {}
    a = h.beat("a", 1, owned={T1: kept})  # revoked: a moves to epoch 2
    assert a.member_epoch == 2 and h.member("a").state is MemberState.STABLE
    b = h.beat("b", 2)
    assert b.assignment == {T1: frozenset({0, 1, 2, 3}) - kept}
    assert state_of(h) is ConsumerGroupState.STABLE


def test_a_leaving_member_hands_its_partitions_to_the_other() -> None:
    h = Harness()
    h.beat("a", 0)
    h.beat("b", 0)
    a = h.beat("a", 1)
    assert a.assignment is not None
    h.beat("a", 1, owned=a.assignment)
    h.beat("b", 2)
    left = h.beat("b", -1)
    assert (left.error, left.member_id, left.member_epoch) == (ErrorCode.none, "b", -1)
    assert h.machine.groups["g"].group_epoch == 3
    a = h.beat("a", 2)
    assert (a.member_epoch, a.assignment) == (3, {T1: frozenset({0, 1, 2, 3})})


def test_fencing_errors_are_kafkas() -> None:
    h = Harness()
    assert h.beat("a", 3, group="none").error == ErrorCode.group_id_not_found
    h.beat("a", 0)
    ahead = h.beat("a", 5)
    assert ahead.error == ErrorCode.fenced_member_epoch
    assert ahead.message is not None and "greater member epoch (5)" in ahead.message
    assert h.beat("x", 1).error == ErrorCode.unknown_member_id
    assert h.beat("x", -1).error == ErrorCode.unknown_member_id
    classic = Group("classic-g")
    classic.members = {"m": None}  # type: ignore[dict-item]
    assert h.beat("a", 0, group="classic-g", classic=classic).error == (
        ErrorCode.group_id_not_found
    )


def test_a_fenced_member_rejoins_under_its_own_id_with_epoch_zero() -> None:
    """librdkafka keeps its member id after FENCED_MEMBER_EPOCH and rejoins with epoch 0
    (KAFKA-19233: accepted; the member gets its assignment back)."""
    h = Harness()
    h.beat("a", 0)
    h.beat("b", 0)
    a = h.beat("a", 1)
    assert a.assignment is not None
    h.beat("a", 1, owned=a.assignment)
    assert h.beat("a", 7).error == ErrorCode.fenced_member_epoch
    again = h.beat("a", 0)
    assert (again.error, again.member_epoch, again.assignment) == (
        ErrorCode.none,
        2,
        a.assignment,
    )
    assert h.machine.groups["g"].group_epoch == 2  # nothing changed: no rebalance


def test_an_older_epoch_is_accepted_only_with_a_subset_of_the_assignment() -> None:
    h = Harness()
    h.beat("a", 0)
    h.beat("b", 0)
    h.beat("c", 0, topics=("t2",))  # a new topic: epoch 3; a now in epoch 1
    assert h.member("a").member_epoch == 1
    a = h.beat("a", 1)
    assert a.assignment is not None
    h.beat("a", 1, owned=a.assignment)
    assert (h.member("a").member_epoch, h.member("a").previous_member_epoch) == (3, 1)
    # the answer with epoch 3 was lost: epoch 1 again, owning a subset, is fine
    assert h.beat("a", 1, owned=a.assignment).error == ErrorCode.none
    # owning more than it has is not
    assert h.beat("a", 1, owned={T1: frozenset({0, 1, 2, 3})}).error == (
        ErrorCode.fenced_member_epoch
    )


def test_invalid_requests() -> None:
    h = Harness()
    invalid = ErrorCode.invalid_request
    assert (h.beat("a", 0, group="").error, h.beat("a", 0, group="").message) == (
        invalid,
        "GroupId can't be empty.",
    )
    assert h.beat("a", -3).message == "MemberEpoch is invalid."
    assert h.beat("a", -2).message == "InstanceId can't be null."
    assert (h.beat("", 1).error, h.beat("", 1).message) == (invalid, "MemberId can't be empty.")
    wrong = h.beat("a", 0, assignor="sticky")
    assert wrong.error == ErrorCode.unsupported_assignor
    assert (
        wrong.message
        == "ServerAssignor sticky is not supported. Supported assignors: uniform, range."
    )
    assert h.beat("a", 0, regex="(").error == ErrorCode.invalid_regular_expression


def test_a_regex_subscribes_to_the_topics_it_matches_whole() -> None:
    h = Harness()
    answer = h.beat("a", 0, topics=(), regex="t.")
    assert answer.assignment == {T1: frozenset({0, 1, 2, 3}), T2: frozenset({0, 1})}
    assert h.beat("b", 0, topics=(), regex="t").assignment == {}  # "t" matches no name whole


def test_a_regex_is_re2_and_matches_in_linear_time() -> None:
    """A pattern that backtracks exponentially in Python's `re` (`(a|a)*b` on a long name)
    matches at once with RE2; RE2 refuses what RE2/J refuses (lookarounds)."""
    topics = {"a" * 249: ("x", 1), "ab": ("y", 1)}
    member = ConsumerMember("m", subscribed_topic_regex="(a|a)*b")
    started = time.monotonic()
    assert subscribed_names(member, topics) == {"ab"}
    assert time.monotonic() - started < 1.0
    answer = Harness().beat("a", 0, topics=(), regex="t(?=1)")
    assert answer.error == ErrorCode.invalid_regular_expression
    assert answer.message is not None and answer.message.startswith(
        "SubscribedTopicRegex `t(?=1)` is not a valid regular expression: "
    )


def test_static_members_leave_with_minus_two_and_come_back_under_a_new_id() -> None:
    h = Harness()
    h.beat("a", 0, instance_id="i1")
    assert h.beat("b", 0, instance_id="i1").error == ErrorCode.unreleased_instance_id
    fenced = h.beat("b", 1, instance_id="i1")
    assert fenced.error == ErrorCode.fenced_instance_id
    left = h.beat("a", -2, instance_id="i1")
    assert (left.error, left.member_epoch) == (ErrorCode.none, -2)
    assert h.member("a").assigned == {T1: frozenset({0, 1, 2, 3})}  # kept while away
    back = h.beat("b", 0, instance_id="i1")
    assert (back.error, back.member_epoch) == (ErrorCode.none, 1)
    assert back.assignment == {T1: frozenset({0, 1, 2, 3})}
    assert set(h.machine.groups["g"].members) == {"b"}
    assert h.machine.groups["g"].group_epoch == 1  # no rebalance


def test_a_member_past_its_session_is_fenced_and_the_other_gets_all() -> None:
    h = Harness()
    h.beat("a", 0)
    h.beat("b", 0)
    h.now = SESSION_MS + 1
    h.beat("b", 2)
    expired = h.machine.expired(h.now)
    assert [(m.member_id, why) for _, m, why in expired] == [("a", "the member session expired")]
    group, member, _ = expired[0]
    h.replay(h.machine.fence(group, member, TOPICS))
    b = h.beat("b", 2)
    assert b.assignment == {T1: frozenset({0, 1, 2, 3})}


def test_a_member_that_does_not_revoke_within_its_rebalance_timeout_is_fenced() -> None:
    h = Harness()
    h.beat("a", 0)
    h.beat("b", 0)
    h.beat("a", 1)  # told to revoke: its rebalance timeout (30 s) starts
    assert h.member("a").state is MemberState.UNREVOKED_PARTITIONS
    h.now = 30_000
    h.beat("a", 1)  # heartbeats, but still owns what it must give up
    h.beat("b", 2)
    assert h.machine.expired(h.now) == []
    h.now = 30_001
    h.beat("b", 2)
    assert [(m.member_id, why) for _, m, why in h.machine.expired(h.now)] == [
        ("a", "the member failed to revoke in time")
    ]


def test_the_records_rebuild_the_same_groups() -> None:
    h = Harness()
    h.beat("a", 0)
    h.beat("b", 0, topics=("t1", "t2"))
    a = h.beat("a", 1)
    h.beat("a", 1, owned=a.assignment)
    h.beat("b", 2)
    h.beat("c", 0, instance_id="i")
    h.beat("c", -2, instance_id="i")
    rebuilt = ConsumerGroups()
    h.replay(h.log, rebuilt)
    live, again = h.machine.groups["g"], rebuilt.groups["g"]
    assert dataclasses.replace(again, last_heartbeat_ms={}, revocation_deadline_ms={}) == (
        dataclasses.replace(live, last_heartbeat_ms={}, revocation_deadline_ms={})
    )


def test_the_server_assignor_is_the_members_choice() -> None:
    h = Harness()
    h.beat("a", 0, topics=("t1", "t2"), assignor="range")
    h.beat("b", 0, topics=("t1", "t2"), assignor="range")
    assert h.machine.groups["g"].targets == {
        "a": {T1: frozenset({0, 1}), T2: frozenset({0})},
        "b": {T1: frozenset({2, 3}), T2: frozenset({1})},
    }
    assert h.machine.preferred_assignor(h.machine.groups["g"]) == "range"


def test_offset_commits_are_checked_against_the_member_epoch() -> None:
    h = Harness()
    h.beat("a", 0)
    group = h.machine.groups["g"]
    check = h.machine.check_commit
    assert check(group, "a", 1, False, 9) == (ErrorCode.none, None)
    assert check(group, "a", 2, False, 9)[0] == ErrorCode.stale_member_epoch
    assert check(group, "a", 1, False, 8)[0] == ErrorCode.unsupported_version
    assert check(group, "x", 1, False, 9)[0] == ErrorCode.unknown_member_id
    assert check(group, "a", 0, True, 3)[0] == ErrorCode.illegal_generation
    assert check(group, "a", 1, True, 3) == (ErrorCode.none, None)
    assert check(group, "", -1, False, 9)[0] == ErrorCode.unknown_member_id  # it has members
    assert h.machine.check_fetch(group, "a", 0) == ErrorCode.stale_member_epoch
    assert h.machine.check_fetch(group, None, -1) == ErrorCode.none


# --------------------------------------------------------------------- walked by Hypothesis
OPS = st.lists(
    st.tuples(st.sampled_from(["join", "beat", "ack", "leave", "expire"]), st.integers(0, 2)),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
@example([("join", 0), ("join", 1), ("beat", 0), ("beat", 0), ("beat", 1)])
def test_no_partition_is_ever_owned_twice_and_the_group_settles(ops: list[tuple[str, int]]) -> None:
    """Clients as librdkafka runs them: a client holds what it was last given, plus what it was
    told to give up until it acknowledges (a heartbeat reporting only what it keeps). No two
    clients ever hold one partition; the coordinator's own books agree."""
    h = Harness()
    clients = Clients(h)
    names = [f"m{i}" for i in range(4)]
    for op, index in ops:
        h.now += 1_000
        member_id = names[index]
        group = h.machine.groups.get("g")
        member = group.members.get(member_id) if group is not None else None
        if op == "join" and member is None:
            clients.answer(member_id, h.beat(member_id, 0, topics=("t1", "t2")))
        elif member is not None and op in ("beat", "ack"):
            clients.beat(member_id, member.member_epoch, ack=op == "ack")
        elif member is not None and op == "leave":
            h.beat(member_id, -1)
            clients.held.pop(member_id, None)
        elif member is not None and group is not None and op == "expire":
            h.replay(h.machine.fence(group, member, TOPICS))
            clients.held.pop(member_id, None)
        clients.check()
    # Every member acknowledging what it holds settles the group on the target assignment.
    for _ in range(6):
        group = h.machine.groups.get("g")
        for member in list(group.members.values()) if group is not None else []:
            clients.beat(member.member_id, member.member_epoch, ack=True)
            clients.check()
    group = h.machine.groups.get("g")
    if group is not None and group.members:
        assert group.state is ConsumerGroupState.STABLE
        held = sorted(
            (t, p) for m in group.members.values() for t, ps in m.assigned.items() for p in ps
        )
        assert held == sorted([(T1, p) for p in range(4)] + [(T2, p) for p in range(2)])


class Clients:
    def __init__(self, h: Harness) -> None:
        self.h = h
        self.told: dict[str, Partitions] = {}  # the last assignment each client was given
        self.held: dict[str, set[tuple[str, int]]] = {}

    def answer(self, member_id: str, answer: HeartbeatResponse) -> None:
        assert answer.error == ErrorCode.none, answer.message
        if answer.assignment is not None:
            self.told[member_id] = answer.assignment
            given = {(t, p) for t, ps in answer.assignment.items() for p in ps}
            self.held[member_id] = self.held.get(member_id, set()) | given

    def beat(self, member_id: str, epoch: int, ack: bool) -> None:
        if ack:  # the client revoked what it was told to: it holds its assignment only
            told = self.told.get(member_id, {})
            self.held[member_id] = {(t, p) for t, ps in told.items() for p in ps}
            self.answer(member_id, self.h.beat(member_id, epoch, owned={**told}))
        else:
            self.answer(member_id, self.h.beat(member_id, epoch))

    def check(self) -> None:
        seen: set[tuple[str, int]] = set()
        for held in self.held.values():
            assert not held & seen, f"{sorted(held & seen)} held by two clients"
            seen |= held
        _check_single_owners(self.h)


def _check_single_owners(h: Harness) -> None:
    group = h.machine.groups.get("g")
    if group is None:
        return
    seen: set[tuple[str, int]] = set()
    for member in group.members.values():
        for parts in (member.assigned, member.pending_revocation):
            for topic, partitions in parts.items():
                for p in partitions:
                    assert (topic, p) not in seen, f"{topic}-{p} owned twice"
                    seen.add((topic, p))


SPECS = st.builds(
    lambda members, counts, subscribed: AssignmentSpec(
        {m: {t for t in counts if (m + t) in subscribed or not subscribed} for m in members},
        counts,
        {},
    ),
    st.sets(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1),
    st.dictionaries(st.sampled_from([T1, T2]), st.integers(0, 9), min_size=1),
    st.sets(st.sampled_from([m + t for m in "abcde" for t in (T1, T2)])),
)


@given(SPECS)
def test_assignors_give_every_subscribed_partition_to_exactly_one_subscriber(
    spec: AssignmentSpec,
) -> None:
    for assignor in (uniform, range_):
        targets = assignor(spec)
        owners: dict[tuple[str, int], str] = {}
        for member, parts in targets.items():
            for topic, partitions in parts.items():
                assert topic in spec.subscriptions[member]
                for p in partitions:
                    assert (topic, p) not in owners
                    owners[topic, p] = member
        wanted = {
            (t, p)
            for t, n in spec.partition_counts.items()
            if any(t in s for s in spec.subscriptions.values())
            for p in range(n)
        }
        assert set(owners) == wanted


@given(st.integers(1, 6), st.integers(0, 30), st.integers(1, 6))
def test_uniform_is_balanced_and_sticky(members: int, partitions: int, joining: int) -> None:
    names = [f"m{i}" for i in range(members)]
    spec = AssignmentSpec({m: {T1} for m in names}, {T1: partitions}, {})
    before = uniform(spec)
    sizes = [len(before[m].get(T1, ())) for m in names]
    assert max(sizes) - min(sizes) <= 1
    more = names + [f"n{i}" for i in range(joining)]
    after = uniform(AssignmentSpec({m: {T1} for m in more}, {T1: partitions}, before))
    sizes = [len(after[m].get(T1, ())) for m in more]
    assert max(sizes) - min(sizes) <= 1
    quota = partitions // len(more)
    for m in names:  # the old members keep what they had, up to the new share
        kept = before[m].get(T1, frozenset()) & after[m].get(T1, frozenset())
        assert len(kept) >= min(len(before[m].get(T1, ())), quota)


def test_range_gives_co_partitioned_topics_alike() -> None:
    spec = AssignmentSpec({"b": {T1, T2}, "a": {T1, T2}}, {T1: 5, T2: 5}, {})
    assert range_(spec) == {
        "a": {T1: frozenset({0, 1, 2}), T2: frozenset({0, 1, 2})},
        "b": {T1: frozenset({3, 4}), T2: frozenset({3, 4})},
    }


HEARTBEATS = st.builds(
    HeartbeatRequest,
    group_id=st.sampled_from(["g", "", "h"]),
    member_id=st.sampled_from(["a", "b", ""]),
    member_epoch=st.integers(-3, 4),
    instance_id=st.sampled_from([None, "", "i"]),
    rack_id=st.sampled_from([None, "", "r"]),
    rebalance_timeout_ms=st.sampled_from([-1, 0, 30_000]),
    subscribed_topic_names=st.sampled_from([None, (), ("t1",), ("t1", "t2", "nope")]),
    subscribed_topic_regex=st.sampled_from([None, "", "t.*", "(", "\\C", "(?i)T1"]),
    server_assignor=st.sampled_from([None, "uniform", "range", "x"]),
    topic_partitions=st.sampled_from(
        [None, {}, {T1: frozenset({0, 9})}, {"not-a-topic": frozenset({-1})}]
    ),
    client_id=st.just("c"),
    client_host=st.just("h"),
    member_id_required=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(HEARTBEATS, max_size=12))
def test_any_heartbeat_is_answered_with_a_code_and_replays(
    requests: list[HeartbeatRequest],
) -> None:
    """Whatever the fields, a heartbeat is answered (an error code, never an exception) and its
    records replay; a fresh replay of all of them gives the same groups."""
    h = Harness()
    for request in requests:
        result = h.machine.heartbeat(request, TOPICS, None, h.now)
        assert isinstance(result.response.error, ErrorCode)
        h.log.extend(result.records)
        h.replay(result.records)
        _check_single_owners(h)
    rebuilt = ConsumerGroups()
    h.replay(h.log, rebuilt)
    assert set(rebuilt.groups) == set(h.machine.groups)
    for group_id, group in rebuilt.groups.items():
        assert group.members == h.machine.groups[group_id].members
