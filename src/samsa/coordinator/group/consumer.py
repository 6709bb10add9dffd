"""Consumer groups of the KIP-848 protocol: the group, its members, and the records that persist
them in the offsets log (Kafka's ConsumerGroup, ConsumerGroupMember and the
ConsumerGroup*Key/Value records).

A consumer group is whatever replaying its records gives (`ConsumerGroups.replay`): the group
decides nothing here, `consumer_machine.py` does and returns records. The records, one kind per
concern, as Kafka's:
- group: the group epoch and the subscription metadata (topic name -> id, partition count);
- member: a member's subscription and identity (ConsumerGroupMemberMetadata);
- target: the partitions the assignor gave the member (ConsumerGroupTargetAssignmentMember);
- target epoch: the group epoch the target assignment was computed for;
- current: the member's epoch, reconciliation state, assigned partitions and those pending
  revocation (ConsumerGroupCurrentMemberAssignment).
A tombstone (no value) removes a member's record, or the whole group.

The group's state is derived, as Kafka's `maybeUpdateGroupState`: Empty without members,
Assigning while the target assignment lags the group epoch, Reconciling while a member is not
yet at the target assignment, else Stable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from samsa.coordinator.group.assignors import Partitions, TopicId
from samsa.coordinator.group.states import GroupType

PROTOCOL_TYPE = "consumer"
GROUP_KINDS = frozenset(
    {
        "consumer_group",
        "consumer_member",
        "consumer_target",
        "consumer_target_epoch",
        "consumer_current",
    }
)


class MemberState(Enum):
    """Where a member is in reconciling towards its target (Kafka's MemberState)."""

    STABLE = "stable"
    UNREVOKED_PARTITIONS = "unrevoked_partitions"  # must give partitions up first
    UNRELEASED_PARTITIONS = "unreleased_partitions"  # waits for partitions others still own


class ConsumerGroupState(Enum):
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(frozen=True, slots=True)
class ConsumerMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: tuple[str, ...] = ()
    subscribed_topic_regex: str | None = None
    rebalance_timeout_ms: int = -1
    server_assignor: str | None = None
    # the current assignment (the "current" record)
    member_epoch: int = 0
    previous_member_epoch: int = 0
    state: MemberState = MemberState.STABLE
    assigned: Partitions = field(default_factory=dict)
    pending_revocation: Partitions = field(default_factory=dict)

    def metadata_value(self) -> dict[str, object]:
        return {
            "instance_id": self.instance_id,
            "rack_id": self.rack_id,
            "client_id": self.client_id,
            "client_host": self.client_host,
            "subscribed_topic_names": list(self.subscribed_topic_names),
            "subscribed_topic_regex": self.subscribed_topic_regex,
            "rebalance_timeout_ms": self.rebalance_timeout_ms,
            "server_assignor": self.server_assignor,
        }

    def current_value(self) -> dict[str, object]:
        return {
            "member_epoch": self.member_epoch,
            "previous_member_epoch": self.previous_member_epoch,
            "state": self.state.value,
            "assigned": _encode_partitions(self.assigned),
            "pending_revocation": _encode_partitions(self.pending_revocation),
        }

    def is_reconciled_to(self, epoch: int) -> bool:
        return self.state is MemberState.STABLE and self.member_epoch == epoch


@dataclass(slots=True)
class ConsumerGroup:
    group_id: str
    group_epoch: int = 0
    # subscribed topic name -> (topic id, partition count), as of the last group epoch bump
    subscription_metadata: dict[str, tuple[TopicId, int]] = field(default_factory=dict)
    target_assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    targets: dict[str, Partitions] = field(default_factory=dict)
    # not persisted: when each member last heartbeated, and a revocation's deadline
    last_heartbeat_ms: dict[str, int] = field(default_factory=dict)
    revocation_deadline_ms: dict[str, int] = field(default_factory=dict)

    @property
    def type(self) -> GroupType:
        """The ConsumerGroupHeartbeat protocol's groups (KIP-848)."""
        return GroupType.CONSUMER

    @property
    def state(self) -> ConsumerGroupState:
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch != self.target_assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        if any(not m.is_reconciled_to(self.target_assignment_epoch) for m in self.members.values()):
            return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    @property
    def protocol_type(self) -> str:
        return PROTOCOL_TYPE

    def static_member(self, instance_id: str) -> ConsumerMember | None:
        for member in self.members.values():
            if member.instance_id == instance_id:
                return member
        return None


# --------------------------------------------------------------------- records
Record = tuple[bytes, bytes | None]


def _key(kind: str, group_id: str, member_id: str | None = None) -> bytes:
    parts = [kind, group_id] if member_id is None else [kind, group_id, member_id]
    return json.dumps(parts).encode()


def _value(value: Mapping[str, object]) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


def _encode_partitions(partitions: Partitions) -> dict[str, list[int]]:
    return {topic: sorted(parts) for topic, parts in sorted(partitions.items())}


def _decode_partitions(raw: object) -> Partitions:
    if not isinstance(raw, dict):
        return {}
    return {str(topic): frozenset(int(p) for p in parts) for topic, parts in raw.items()}


def group_record(group_id: str, epoch: int, metadata: dict[str, tuple[TopicId, int]]) -> Record:
    value = {"epoch": epoch, "metadata": {n: list(v) for n, v in sorted(metadata.items())}}
    return _key("consumer_group", group_id), _value(value)


def group_tombstones(group: ConsumerGroup) -> list[Record]:
    """Every record of a group, deleted (an empty group converted to a classic one, or
    DeleteGroups)."""
    records: list[Record] = []
    for member_id in group.members:
        records.extend(member_tombstones(group.group_id, member_id))
    records.append((_key("consumer_target_epoch", group.group_id), None))
    records.append((_key("consumer_group", group.group_id), None))
    return records


def member_record(group_id: str, member: ConsumerMember) -> Record:
    return _key("consumer_member", group_id, member.member_id), _value(member.metadata_value())


def target_record(group_id: str, member_id: str, partitions: Partitions) -> Record:
    value = {"partitions": _encode_partitions(partitions)}
    return _key("consumer_target", group_id, member_id), _value(value)


def target_epoch_record(group_id: str, epoch: int) -> Record:
    return _key("consumer_target_epoch", group_id), _value({"epoch": epoch})


def current_record(group_id: str, member: ConsumerMember) -> Record:
    return _key("consumer_current", group_id, member.member_id), _value(member.current_value())


def member_tombstones(group_id: str, member_id: str) -> list[Record]:
    """A member removed: its current assignment, its target and its metadata, in Kafka's
    order (so a replay never sees a member without metadata that still has an assignment)."""
    return [
        (_key("consumer_current", group_id, member_id), None),
        (_key("consumer_target", group_id, member_id), None),
        (_key("consumer_member", group_id, member_id), None),
    ]


class ConsumerGroups:
    """The consumer groups, as replaying their records makes them."""

    def __init__(self) -> None:
        self.groups: dict[str, ConsumerGroup] = {}

    def replay(self, key: Sequence[str], value: bytes | None, now: int) -> None:
        """Apply one record (its decoded key and its value) of the offsets log."""
        kind, group_id = key[0], key[1]
        member_id = key[2] if len(key) > 2 else ""
        raw = json.loads(value) if value is not None else None
        if kind == "consumer_group" and raw is None:
            self.groups.pop(group_id, None)
            return
        group = self.groups.get(group_id)
        if group is None:
            if raw is None:
                return
            group = self.groups[group_id] = ConsumerGroup(group_id)
        if kind == "consumer_group" and raw is not None:
            group.group_epoch = int(raw["epoch"])
            group.subscription_metadata = {
                str(n): (str(v[0]), int(v[1])) for n, v in raw["metadata"].items()
            }
        elif kind == "consumer_target_epoch":
            group.target_assignment_epoch = int(raw["epoch"]) if raw is not None else 0
        elif kind == "consumer_target":
            if raw is None:
                group.targets.pop(member_id, None)
            else:
                group.targets[member_id] = _decode_partitions(raw["partitions"])
        elif kind == "consumer_member":
            self._replay_member(group, member_id, raw, now)
        elif kind == "consumer_current":
            self._replay_current(group, member_id, raw)

    @staticmethod
    def _replay_member(
        group: ConsumerGroup, member_id: str, raw: dict[str, object] | None, now: int
    ) -> None:
        if raw is None:
            group.members.pop(member_id, None)
            group.last_heartbeat_ms.pop(member_id, None)
            group.revocation_deadline_ms.pop(member_id, None)
            return
        member = group.members.get(member_id) or ConsumerMember(member_id)
        names = raw["subscribed_topic_names"]
        timeout = raw["rebalance_timeout_ms"]
        group.members[member_id] = replace(
            member,
            instance_id=_text(raw["instance_id"]),
            rack_id=_text(raw["rack_id"]),
            client_id=str(raw["client_id"]),
            client_host=str(raw["client_host"]),
            subscribed_topic_names=tuple(str(n) for n in names) if isinstance(names, list) else (),
            subscribed_topic_regex=_text(raw["subscribed_topic_regex"]),
            rebalance_timeout_ms=int(timeout) if isinstance(timeout, int) else -1,
            server_assignor=_text(raw["server_assignor"]),
        )
        group.last_heartbeat_ms.setdefault(member_id, now)

    @staticmethod
    def _replay_current(
        group: ConsumerGroup, member_id: str, raw: dict[str, object] | None
    ) -> None:
        member = group.members.get(member_id)
        if member is None:
            return  # Kafka too ignores (removes) an assignment of an unknown member
        if raw is None:
            group.members[member_id] = replace(
                member,
                member_epoch=0,
                previous_member_epoch=0,
                assigned={},
                pending_revocation={},
                state=MemberState.STABLE,
            )
            return
        epoch, previous = raw["member_epoch"], raw["previous_member_epoch"]
        group.members[member_id] = replace(
            member,
            member_epoch=int(epoch) if isinstance(epoch, int) else 0,
            previous_member_epoch=int(previous) if isinstance(previous, int) else 0,
            state=MemberState(raw["state"]),
            assigned=_decode_partitions(raw["assigned"]),
            pending_revocation=_decode_partitions(raw["pending_revocation"]),
        )


def _text(value: object) -> str | None:
    return None if value is None else str(value)
