"""The classic consumer-group protocol as a state machine without I/O (Kafka's
GroupMetadataManager for classic groups).

Theory of operation:
- A rebalance is a barrier. Any change of membership moves the group to PreparingRebalance;
  each member's JoinGroup waits (a `Slot`) until every known member has rejoined or the
  rebalance timeout passes (stragglers are removed). Then the generation is bumped, a protocol
  every member supports is chosen, the leader gets every member's metadata, and the group waits
  in CompletingRebalance for the leader's SyncGroup. Its assignment is the group record; once
  that is durable the group is Stable and every SyncGroup is answered.
- New members get their id through a first JoinGroup answered MEMBER_ID_REQUIRED (KIP-394);
  static members (`group.instance.id`, KIP-345) keep their assignment across restarts and a
  newer instance fences the older one (FENCED_INSTANCE_ID).
- Members that stop heartbeating for their session timeout are removed (`tick`).
- Commits are checked against the member and generation (`check_commit`; KIP-447 for
  transactional ones, `check_txn_commit`), so a zombie from an older generation cannot commit.

Records. The group record (`Group.encode`, Kafka's GroupMetadataValue: generation, protocol,
leader, members and their assignments) is what a restarted coordinator rebuilds a group from
(`replay`). The machine never writes it: every change it makes to a group's record is emitted
as a `GroupWrite` (`take_writes`), with what to do once it is durable (or is not), and the
caller's runtime appends it and reports back through `GroupWrite.then`. As in Kafka's classic
groups (their `CoordinatorResult`s carry `replayRecords=false`), a live group is changed as its
record is made, and the record's durability completes the requests that wait on it; only the
rebalance in progress (join and sync slots, heartbeats, member ids handed out) is never written.

Time and member ids come in as parameters (`now`, `new_uuid`), so a simulation can drive them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from samsa.config import DEFAULTS
from samsa.coordinator.group.model import Group, Member
from samsa.coordinator.group.states import GroupState, check_transition
from samsa.durability import Slot

log = logging.getLogger("samsa.group")

G = GroupState


@dataclass(frozen=True, slots=True)
class GroupSettings:
    session_timeout_ms_min: int = DEFAULTS.group_min_session_timeout_ms
    session_timeout_ms_max: int = DEFAULTS.group_max_session_timeout_ms
    initial_rebalance_delay_ms: int = DEFAULTS.group_initial_rebalance_delay_ms
    offset_metadata_bytes_max: int = DEFAULTS.offset_metadata_max_bytes
    # the consumer group protocol (KIP-848)
    consumer_session_timeout_ms: int = DEFAULTS.group_consumer_session_timeout_ms
    consumer_heartbeat_interval_ms: int = DEFAULTS.group_consumer_heartbeat_interval_ms
    consumer_assignors: tuple[str, ...] = tuple(DEFAULTS.group_consumer_assignors.split(","))


@dataclass(frozen=True, slots=True)
class JoinResult:
    error: ErrorCode
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    member_id: str = ""
    members: list[tuple[str, str | None, bytes]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SyncResult:
    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass(frozen=True, slots=True)
class JoinRequest:
    group_id: str
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    require_known_member_id: bool  # JoinGroup v4+ (KIP-394)


@dataclass(frozen=True, slots=True)
class GroupWrite:
    """A group record for the offsets log: `value` None is a tombstone. `then(durable, now)`,
    if given, runs once the record is durable (True) or never will be (False)."""

    group_id: str
    value: bytes | None
    then: Callable[[bool, int], None] | None = None


class GroupStateMachine:
    def __init__(self, settings: GroupSettings, new_uuid: Callable[[], uuid.UUID]) -> None:
        self.settings = settings
        self._new_uuid = new_uuid
        self.groups: dict[str, Group] = {}
        self._writes: list[GroupWrite] = []

    def take_writes(self) -> list[GroupWrite]:
        """The group records made since the last call, in the order they were made."""
        writes, self._writes = self._writes, []
        return writes

    def replay(self, group_id: str, value: bytes | None, now: int) -> None:
        """Rebuild a group from its durable record at start-up; a tombstone deletes it."""
        if value is None:
            self.groups.pop(group_id, None)
        else:
            self.groups[group_id] = Group.decode(group_id, value, now)

    def _write(self, group: Group, then: Callable[[bool, int], None] | None = None) -> None:
        self._writes.append(GroupWrite(group.group_id, group.encode(), then))

    def _new_member_id(self, prefix: str) -> str:
        return f"{prefix}-{self._new_uuid()}"

    # ----------------------------------------------------------------- membership helpers
    def _transition(self, group: Group, target: GroupState) -> None:
        check_transition(group.state, target)
        group.state = target

    def _prepare_rebalance(self, group: Group, now: int) -> None:
        if group.state is G.PREPARING_REBALANCE:
            return
        for member in group.members.values():
            if member.sync_slot is not None:
                member.sync_slot.resolve(SyncResult(ErrorCode.rebalance_in_progress))
                member.sync_slot = None
        was_empty = group.state is G.EMPTY
        self._transition(group, G.PREPARING_REBALANCE)
        timeout = max((m.rebalance_timeout_ms for m in group.members.values()), default=0)
        group.rebalance_deadline_ms = now + timeout
        group.join_ready_ms = now + (self.settings.initial_rebalance_delay_ms if was_empty else 0)

    def _remove_member(self, group: Group, member_id: str, now: int) -> None:
        member = group.members.pop(member_id, None)
        if member is None:
            return
        if member.join_slot is not None:
            member.join_slot.resolve(JoinResult(ErrorCode.unknown_member_id, member_id=member_id))
        if member.sync_slot is not None:
            member.sync_slot.resolve(SyncResult(ErrorCode.unknown_member_id))
        if group.state in (G.STABLE, G.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, now)
        self._maybe_complete_join(group, now)

    def _maybe_complete_join(self, group: Group, now: int, force: bool = False) -> None:
        """End the join barrier once every member has rejoined (or, `force`, its deadline
        passed): a new generation, Empty or waiting for the leader's assignment."""
        if group.state is not G.PREPARING_REBALANCE:
            return
        everyone = all(m.join_slot is not None for m in group.members.values())
        if not force and (not everyone or group.pending_members or now < group.join_ready_ms):
            return
        for member_id in [m for m, member in group.members.items() if member.join_slot is None]:
            log.info("group %s: member %s did not rejoin in time", group.group_id, member_id)
            group.members.pop(member_id)
        group.pending_members.clear()
        group.generation_id += 1
        if not group.members:
            self._transition(group, G.EMPTY)  # Kafka: a new generation, with no members
            group.protocol_name = None
            group.leader_id = None
            self._write(group)
            return
        group.protocol_name = _select_protocol(group)
        if group.leader_id not in group.members:
            group.leader_id = next(iter(group.members))
        self._transition(group, G.COMPLETING_REBALANCE)
        for member in group.members.values():
            member.last_heartbeat_ms = now
            slot, member.join_slot = member.join_slot, None
            if slot is not None:
                slot.resolve(_joined(group, member))

    # ----------------------------------------------------------------- JoinGroup
    def join(self, request: JoinRequest, now: int) -> JoinResult | Slot:
        settings = self.settings
        if not (
            settings.session_timeout_ms_min
            <= request.session_timeout_ms
            <= settings.session_timeout_ms_max
        ):
            return JoinResult(ErrorCode.invalid_session_timeout, member_id=request.member_id)
        group = self.groups.get(request.group_id)
        if group is None:
            if request.member_id:
                return JoinResult(ErrorCode.unknown_member_id, member_id=request.member_id)
            group = self.groups[request.group_id] = Group(request.group_id)
        if not _supports(group, request.protocol_type, request.protocols):
            return JoinResult(ErrorCode.inconsistent_group_protocol, member_id=request.member_id)
        if request.group_instance_id is not None:
            return self._join_static(group, request, now)
        if not request.member_id:
            return self._join_new(group, request, now)
        if request.member_id in group.pending_members:
            del group.pending_members[request.member_id]
            return self._add_member(group, request.member_id, request, now)
        member = group.members.get(request.member_id)
        if member is None:
            return JoinResult(ErrorCode.unknown_member_id, member_id=request.member_id)
        return self._rejoin(group, member, request, now)

    def _join_new(self, group: Group, request: JoinRequest, now: int) -> JoinResult | Slot:
        """A member without an id: v4+ gets one to rejoin with (KIP-394), older joins at once."""
        member_id = self._new_member_id(request.client_id or "member")
        if request.require_known_member_id:
            group.pending_members[member_id] = now + request.session_timeout_ms
            return JoinResult(ErrorCode.member_id_required, member_id=member_id)
        return self._add_member(group, member_id, request, now)

    def _join_static(self, group: Group, request: JoinRequest, now: int) -> JoinResult | Slot:
        instance_id = request.group_instance_id or ""
        existing = group.static_member(instance_id)
        if existing is None:
            if request.member_id:
                return JoinResult(ErrorCode.unknown_member_id, member_id=request.member_id)
            return self._add_member(group, self._new_member_id(instance_id), request, now)
        if request.member_id and request.member_id != existing.member_id:
            return JoinResult(ErrorCode.fenced_instance_id, member_id=request.member_id)
        if request.member_id:
            return self._rejoin(group, existing, request, now)
        return self._replace_static(group, existing, request, now)

    def _replace_static(
        self, group: Group, existing: Member, request: JoinRequest, now: int
    ) -> JoinResult | Slot:
        """A new instance of a known static member: it takes over the member under a new id
        (fencing the old one) and keeps the assignment, without a rebalance if nothing
        changed."""
        new_id = self._new_member_id(request.group_instance_id or "")
        group.members.pop(existing.member_id)
        old_slot, existing.join_slot = existing.join_slot, None
        if old_slot is not None:
            old_slot.resolve(JoinResult(ErrorCode.fenced_instance_id, member_id=existing.member_id))
        if existing.sync_slot is not None:
            existing.sync_slot.resolve(SyncResult(ErrorCode.fenced_instance_id))
            existing.sync_slot = None
        old_leader = group.leader_id
        if group.leader_id == existing.member_id:
            group.leader_id = new_id
        existing.member_id = new_id
        group.members[new_id] = existing
        existing.last_heartbeat_ms = now
        if group.state is G.STABLE and existing.protocols == request.protocols:
            return self._rejoin_stable(group, existing, old_leader or "")
        existing.protocols = request.protocols
        return self._await_join(group, existing, now)

    def _rejoin_stable(self, group: Group, member: Member, old_leader: str) -> Slot:
        """A restarted static member of a Stable group, nothing changed: no rebalance (KIP-345).

        The group record is written with the member's new id first. The answer names the *old*
        leader id, so a restarted leader does not run a trivial assignment that a Stable group
        would never hand out (Kafka's GroupCoordinator does the same)."""
        slot = Slot()
        generation = group.generation_id

        def then(durable: bool, now: int) -> None:
            if not durable or group.generation_id != generation:
                slot.resolve(
                    JoinResult(ErrorCode.rebalance_in_progress, member_id=member.member_id)
                )
            else:
                slot.resolve(
                    JoinResult(
                        ErrorCode.none,
                        generation,
                        group.protocol_type,
                        group.protocol_name,
                        old_leader,
                        member.member_id,
                    )
                )

        self._write(group, then)
        return slot

    def _add_member(
        self, group: Group, member_id: str, request: JoinRequest, now: int
    ) -> JoinResult | Slot:
        member = Member(
            member_id,
            request.group_instance_id,
            request.client_id,
            request.client_host,
            request.session_timeout_ms,
            request.rebalance_timeout_ms,
            request.protocol_type,
            list(request.protocols),
            last_heartbeat_ms=now,
        )
        if not group.members:
            group.protocol_type = request.protocol_type
        group.members[member_id] = member
        return self._await_join(group, member, now)

    def _rejoin(
        self, group: Group, member: Member, request: JoinRequest, now: int
    ) -> JoinResult | Slot:
        member.last_heartbeat_ms = now
        changed = member.protocols != request.protocols
        member.protocols = list(request.protocols)
        member.session_timeout_ms = request.session_timeout_ms
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
        if group.state is G.COMPLETING_REBALANCE and not changed:
            return _joined(group, member)
        if group.state is G.STABLE and not changed and member.member_id != group.leader_id:
            return _joined(group, member)
        return self._await_join(group, member, now)

    def _await_join(self, group: Group, member: Member, now: int) -> Slot:
        if member.join_slot is not None:
            member.join_slot.resolve(
                JoinResult(ErrorCode.unknown_member_id, member_id=member.member_id)
            )
        slot = member.join_slot = Slot()
        if group.state is not G.PREPARING_REBALANCE:
            self._prepare_rebalance(group, now)
        self._maybe_complete_join(group, now)
        return slot

    # ----------------------------------------------------------------- SyncGroup
    def _check_member(
        self, group: Group | None, member_id: str, instance_id: str | None, generation_id: int
    ) -> tuple[Member | None, ErrorCode]:
        if group is None or group.state is G.DEAD:
            return None, ErrorCode.unknown_member_id
        if instance_id is not None:
            static = group.static_member(instance_id)
            if static is not None and static.member_id != member_id:
                return None, ErrorCode.fenced_instance_id
        member = group.members.get(member_id)
        if member is None:
            return None, ErrorCode.unknown_member_id
        if generation_id != group.generation_id:
            return None, ErrorCode.illegal_generation
        return member, ErrorCode.none

    def sync(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
        now: int,
    ) -> SyncResult | Slot:
        group = self.groups.get(group_id)
        member, error = self._check_member(group, member_id, instance_id, generation_id)
        if member is None or group is None:
            return SyncResult(error)
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
            protocol_name is not None and protocol_name != group.protocol_name
        ):
            return SyncResult(ErrorCode.inconsistent_group_protocol)
        member.last_heartbeat_ms = now
        if group.state is G.PREPARING_REBALANCE:
            return SyncResult(ErrorCode.rebalance_in_progress)
        if group.state is G.STABLE:
            return SyncResult(
                ErrorCode.none, group.protocol_type, group.protocol_name, member.assignment
            )
        if member.sync_slot is not None:
            member.sync_slot.resolve(SyncResult(ErrorCode.rebalance_in_progress))
        slot = member.sync_slot = Slot()
        if member_id == group.leader_id:
            self._store_assignment(group, assignments)
        return slot

    def _store_assignment(self, group: Group, assignments: dict[str, bytes]) -> None:
        for member in group.members.values():
            member.assignment = assignments.get(member.member_id, b"")
        generation = group.generation_id

        def then(durable: bool, now: int) -> None:
            if group.state is not G.COMPLETING_REBALANCE or group.generation_id != generation:
                return  # a newer rebalance began meanwhile; its syncs were answered
            if not durable:
                self._prepare_rebalance(group, now)
                return
            self._transition(group, G.STABLE)
            for member in group.members.values():
                slot, member.sync_slot = member.sync_slot, None
                if slot is not None:
                    slot.resolve(
                        SyncResult(
                            ErrorCode.none,
                            group.protocol_type,
                            group.protocol_name,
                            member.assignment,
                        )
                    )

        self._write(group, then)

    # ----------------------------------------------------------------- Heartbeat, LeaveGroup
    def heartbeat(
        self, group_id: str, generation_id: int, member_id: str, instance_id: str | None, now: int
    ) -> ErrorCode:
        group = self.groups.get(group_id)
        member, error = self._check_member(group, member_id, instance_id, generation_id)
        if member is None or group is None:
            return error
        member.last_heartbeat_ms = now
        if group.state is G.PREPARING_REBALANCE:
            return ErrorCode.rebalance_in_progress
        return ErrorCode.none

    def leave(
        self, group_id: str, leaving: Iterable[tuple[str, str | None]], now: int
    ) -> list[ErrorCode]:
        group = self.groups.get(group_id)
        if group is None:
            return [ErrorCode.unknown_member_id for _ in leaving]
        return [self._leave_one(group, member, instance, now) for member, instance in leaving]

    def _leave_one(
        self, group: Group, member_id: str, instance_id: str | None, now: int
    ) -> ErrorCode:
        if instance_id is not None:
            static = group.static_member(instance_id)
            if static is None:
                return ErrorCode.unknown_member_id
            if member_id and static.member_id != member_id:
                return ErrorCode.fenced_instance_id
            member_id = static.member_id
        if member_id in group.pending_members:
            del group.pending_members[member_id]
            self._maybe_complete_join(group, now)
            return ErrorCode.none
        if member_id not in group.members:
            return ErrorCode.unknown_member_id
        self._remove_member(group, member_id, now)
        return ErrorCode.none

    def tick(self, now: int) -> None:
        """Expire members that stopped heartbeating; finish joins whose deadline passed."""
        for group in list(self.groups.values()):
            for member_id, deadline in list(group.pending_members.items()):
                if now >= deadline:
                    del group.pending_members[member_id]
                    self._maybe_complete_join(group, now)
            for member in list(group.members.values()):
                waiting = member.join_slot is not None
                if not waiting and now - member.last_heartbeat_ms > member.session_timeout_ms:
                    log.info(
                        "group %s: member %s missed its session timeout",
                        group.group_id,
                        member.member_id,
                    )
                    self._remove_member(group, member.member_id, now)
            if group.state is G.PREPARING_REBALANCE:
                self._maybe_complete_join(group, now, force=now >= group.rebalance_deadline_ms)

    # ----------------------------------------------------------------- offsets
    def check_commit(
        self, group_id: str, generation_id: int, member_id: str, instance_id: str | None, now: int
    ) -> ErrorCode:
        """May this (member, generation) commit offsets? (Kafka's validateOffsetCommit.)"""
        group = self.groups.get(group_id)
        if group is None or group.state is G.DEAD:
            return ErrorCode.none if generation_id < 0 else ErrorCode.illegal_generation
        if generation_id < 0 and not member_id and group.state is G.EMPTY:
            return ErrorCode.none  # a "simple" consumer that manages its own assignment
        fenced = _fenced(group, member_id, instance_id)
        if fenced != ErrorCode.none:
            return fenced
        if group.state is G.COMPLETING_REBALANCE and member_id in group.members:
            return ErrorCode.rebalance_in_progress
        if member_id not in group.members:
            return ErrorCode.unknown_member_id
        if generation_id != group.generation_id:
            return ErrorCode.illegal_generation
        group.members[member_id].last_heartbeat_ms = now
        return ErrorCode.none

    def check_txn_commit(
        self, group_id: str, generation_id: int, member_id: str, instance_id: str | None
    ) -> ErrorCode:
        """May this member commit offsets in a transaction? (KIP-447: a TxnOffsetCommit names
        the member and generation it consumed in, and a zombie of an older one is refused.)"""
        group = self.groups.get(group_id)
        if group is None or group.state is G.DEAD:
            return ErrorCode.none if generation_id < 0 else ErrorCode.illegal_generation
        fenced = _fenced(group, member_id, instance_id)
        if fenced != ErrorCode.none:
            return fenced
        if member_id and member_id not in group.members:
            return ErrorCode.unknown_member_id
        if generation_id >= 0 and generation_id != group.generation_id:
            return ErrorCode.illegal_generation
        return ErrorCode.none

    def group_for_offsets(self, group_id: str) -> Group:
        """The group a commit goes to; a simple consumer's commit creates it (Empty)."""
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = Group(group_id)
        return group

    def delete(self, group_id: str) -> None:
        """Forget a group whose tombstone has been appended (DeleteGroups)."""
        self.groups.pop(group_id, None)


# --------------------------------------------------------------------- helpers
def _fenced(group: Group, member_id: str, instance_id: str | None) -> ErrorCode:
    """FENCED_INSTANCE_ID when a static member's instance is now held by another member id."""
    if instance_id is not None:
        static = group.static_member(instance_id)
        if static is not None and static.member_id != member_id:
            return ErrorCode.fenced_instance_id
    return ErrorCode.none


def _select_protocol(group: Group) -> str:
    """The protocol every member supports with the most first-preference votes."""
    members = list(group.members.values())
    common = [
        name
        for name, _ in members[0].protocols
        if all(any(n == name for n, _ in m.protocols) for m in members)
    ]
    votes = {name: 0 for name in common}
    for member in members:
        for name, _ in member.protocols:
            if name in votes:
                votes[name] += 1
                break
    return max(common, key=lambda name: votes[name])


def _supports(group: Group, protocol_type: str, protocols: list[tuple[str, bytes]]) -> bool:
    if not protocols or not protocol_type:
        return False
    if not group.members:
        return True
    if protocol_type != group.protocol_type:
        return False
    names = {name for name, _ in protocols}
    return all(names & {n for n, _ in m.protocols} for m in group.members.values())


def _joined(group: Group, member: Member) -> JoinResult:
    """The JoinGroup answer of the current generation; the leader's lists every member."""
    leader_view = (
        [
            (m.member_id, m.group_instance_id, m.metadata_for(group.protocol_name or ""))
            for m in group.members.values()
        ]
        if member.member_id == group.leader_id
        else []
    )
    return JoinResult(
        ErrorCode.none,
        group.generation_id,
        group.protocol_type,
        group.protocol_name,
        group.leader_id or "",
        member.member_id,
        leader_view,
    )
