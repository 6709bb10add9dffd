"""Reconciliation of a consumer group member towards its target assignment (KIP-848; Kafka's
CurrentAssignmentBuilder), as pure functions of the member, its target and what it reports.

The rule that keeps a partition from being owned twice: partitions the member must give up are
first only taken from its assignment, and it stays in its epoch (UNREVOKED_PARTITIONS) until it
reports in `topic_partitions` that it no longer owns them; a partition another member owns or
still revokes is not given out until released (UNRELEASED_PARTITIONS).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from samsa.coordinator.group.assignors import Partitions, TopicId
from samsa.coordinator.group.consumer import ConsumerMember, MemberState


def owner_epoch(members: Mapping[str, ConsumerMember], topic: TopicId, partition: int) -> int:
    """The epoch of the member owning a partition, -1 if none (Kafka's currentPartitionEpoch)."""
    for owner in members.values():
        if partition in owner.assigned.get(topic, ()) or partition in (
            owner.pending_revocation.get(topic, ())
        ):
            return owner.member_epoch
    return -1


def _owns_any(owned: Partitions | None, partitions: Partitions) -> bool:
    """Does the member still own any of `partitions`? Not knowing (None) counts as yes."""
    if owned is None:
        return True
    return any(parts & partitions.get(topic, frozenset()) for topic, parts in owned.items())


def reconcile(
    member: ConsumerMember,
    target_epoch: int,
    target: Partitions,
    owned: Partitions | None,
    owner_epoch: Callable[[TopicId, int], int],
) -> ConsumerMember:
    """Kafka's CurrentAssignmentBuilder: the member's next step towards its target."""
    if member.is_reconciled_to(target_epoch):
        return member
    if member.state is MemberState.STABLE:
        return _next(member, member.member_epoch, target_epoch, target, owned, owner_epoch)
    if member.state is MemberState.UNREVOKED_PARTITIONS:
        if _owns_any(owned, member.pending_revocation):
            return member
        return _next(member, member.member_epoch + 1, target_epoch, target, owned, owner_epoch)
    return _next(member, member.member_epoch, target_epoch, target, owned, owner_epoch)


def _with_epoch(member: ConsumerMember, epoch: int, **changes: object) -> ConsumerMember:
    """Kafka's updateMemberEpoch: the old epoch becomes the previous one."""
    return replace(member, previous_member_epoch=member.member_epoch, member_epoch=epoch, **changes)  # type: ignore[arg-type]


def _next(
    member: ConsumerMember,
    epoch: int,
    target_epoch: int,
    target: Partitions,
    owned: Partitions | None,
    owner_epoch: Callable[[TopicId, int], int],
) -> ConsumerMember:
    """Kafka's computeNextAssignment."""
    unreleased = False
    assigned: dict[TopicId, frozenset[int]] = {}
    revoking: dict[TopicId, frozenset[int]] = {}
    adding: dict[TopicId, frozenset[int]] = {}
    for topic in sorted(set(target) | set(member.assigned)):
        wanted = target.get(topic, frozenset())
        current = member.assigned.get(topic, frozenset())
        kept = current & wanted
        new = wanted - kept
        free = frozenset(p for p in new if owner_epoch(topic, p) == -1)
        unreleased = unreleased or free != new
        if kept:
            assigned[topic] = kept
        if current - kept:
            revoking[topic] = current - kept
        if free:
            adding[topic] = free
    if revoking and _owns_any(owned, revoking):
        return _with_epoch(
            member,
            epoch,
            state=MemberState.UNREVOKED_PARTITIONS,
            assigned=assigned,
            pending_revocation=revoking,
        )
    for topic, parts in adding.items():
        assigned[topic] = assigned.get(topic, frozenset()) | parts
    state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
    return _with_epoch(member, target_epoch, state=state, assigned=assigned, pending_revocation={})
