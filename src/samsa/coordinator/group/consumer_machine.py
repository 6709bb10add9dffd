"""The consumer group protocol (KIP-848) as a state machine without I/O (Kafka's
GroupMetadataManager for consumer groups).

Theory of operation: each ConsumerGroupHeartbeat is decided against the replayed state and
returns records and a response (`Result`); the caller appends the records and replays them
(`ConsumerGroups.replay`), which is the only way the state changes, at start-up and live.
1. The member joins (epoch 0), or its epoch is checked (FENCED_MEMBER_EPOCH unless it is the
   current one, or the previous one with a subset of its assignment: the answer may be lost).
2. A changed subscription, or a change in the subscribed topics, bumps the *group epoch*.
3. When the group epoch passes the *target assignment epoch*, the group's assignor computes the
   target assignment of every member.
4. The member is reconciled towards its target (`reconcile.py`): partitions it must give up
   are first only taken away (it stays in its epoch, UNREVOKED_PARTITIONS) until it reports,
   in `topic_partitions`, that it no longer owns them; only then does it move to the target
   epoch.
   A partition another member still owns (or revokes) is not given out until released
   (UNRELEASED_PARTITIONS). So no partition is ever owned by two members.
Members leave with epoch -1 (or -2, a static member that will be back: it keeps its
assignment), and are fenced when their session times out or they do not revoke within their
rebalance timeout (`expired`, run by the coordinator's tick).

Time and member ids come in as parameters (`now`, `new_uuid`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from kio.schema.errors import ErrorCode

from samsa.coordinator.group.assignors import ASSIGNORS, AssignmentSpec, Partitions, TopicId
from samsa.coordinator.group.consumer import (
    ConsumerGroup,
    ConsumerGroups,
    ConsumerMember,
    MemberState,
    Record,
    current_record,
    group_record,
    member_record,
    member_tombstones,
    target_epoch_record,
    target_record,
)
from samsa.coordinator.group.machine import GroupSettings
from samsa.coordinator.group.model import Group
from samsa.coordinator.group.offsets import group_key
from samsa.coordinator.group.reconcile import owner_epoch, reconcile
from samsa.coordinator.group.regex import InvalidRegex, topic_matcher
from samsa.coordinator.group.states import GroupState

LEAVE_GROUP_MEMBER_EPOCH = -1
LEAVE_GROUP_STATIC_MEMBER_EPOCH = -2


@dataclass(frozen=True, slots=True)
class TopicsView:
    """The cluster's topics as the assignor sees them: name -> (topic id, partition count)."""

    topics: Mapping[str, tuple[TopicId, int]]
    internal: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class HeartbeatRequest:
    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None
    rack_id: str | None
    rebalance_timeout_ms: int
    subscribed_topic_names: tuple[str, ...] | None
    subscribed_topic_regex: str | None
    server_assignor: str | None
    topic_partitions: Partitions | None  # what the member owns; None: unchanged
    client_id: str
    client_host: str
    member_id_required: bool = True  # v1+: the client makes its member id


@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    error: ErrorCode = ErrorCode.none
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: Partitions | None = None


@dataclass(frozen=True, slots=True)
class Result:
    records: list[Record]
    response: HeartbeatResponse
    # set once the records are replayed: (member id, revocation deadline or None)
    touch: tuple[str, int | None] | None = None


class GroupError(Exception):
    """A heartbeat refused with a Kafka error code and message (Kafka's ApiException)."""

    def __init__(self, error: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


@dataclass(slots=True)
class _Plan:
    records: list[Record] = field(default_factory=list)


# The group configs Kafka 4.0 has for consumer groups (`GroupConfig`).
SESSION_TIMEOUT_CONFIG = "consumer.session.timeout.ms"
HEARTBEAT_INTERVAL_CONFIG = "consumer.heartbeat.interval.ms"


class ConsumerGroupMachine:
    def __init__(self, settings: GroupSettings, new_uuid: Callable[[], uuid.UUID]) -> None:
        self.settings = settings
        self._new_uuid = new_uuid
        self.state = ConsumerGroups()
        self.assignors = [a for a in settings.consumer_assignors if a in ASSIGNORS] or ["uniform"]
        # Dynamic group configs (KIP-848, IncrementalAlterConfigs on a GROUP resource): group
        # id -> config name -> value in ms, over the broker's defaults in `settings`.
        self.group_configs: dict[str, dict[str, int]] = {}

    def session_timeout_ms(self, group_id: str) -> int:
        return self.group_configs.get(group_id, {}).get(
            SESSION_TIMEOUT_CONFIG, self.settings.consumer_session_timeout_ms
        )

    def heartbeat_interval_ms(self, group_id: str) -> int:
        return self.group_configs.get(group_id, {}).get(
            HEARTBEAT_INTERVAL_CONFIG, self.settings.consumer_heartbeat_interval_ms
        )

    @property
    def groups(self) -> dict[str, ConsumerGroup]:
        return self.state.groups

    def preferred_assignor(self, group: ConsumerGroup) -> str:
        return _preferred(group.members.values(), self.assignors[0])

    def touch(self, group_id: str, touch: tuple[str, int | None] | None, now: int) -> None:
        """After a heartbeat's records are replayed: its session starts again."""
        group = self.groups.get(group_id)
        if group is None or touch is None or touch[0] not in group.members:
            return
        member_id, deadline = touch
        group.last_heartbeat_ms[member_id] = now
        if deadline is None:
            group.revocation_deadline_ms.pop(member_id, None)
        else:
            group.revocation_deadline_ms.setdefault(member_id, deadline)

    # ----------------------------------------------------------------- heartbeat
    def heartbeat(
        self, request: HeartbeatRequest, topics: TopicsView, classic: Group | None, now: int
    ) -> Result:
        try:
            self._validate(request)
            if request.member_epoch in (LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH):
                return self._leave(request, classic, topics)
            return self._heartbeat(request, topics, classic, now)
        except GroupError as exc:
            return Result([], HeartbeatResponse(exc.error, exc.message))

    def _validate(self, request: HeartbeatRequest) -> None:
        """Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid."""
        invalid = ErrorCode.invalid_request
        if not request.group_id:
            raise GroupError(invalid, "GroupId can't be empty.")
        if request.instance_id == "":
            raise GroupError(invalid, "InstanceId can't be empty.")
        if request.rack_id == "":
            raise GroupError(invalid, "RackId can't be empty.")
        epoch = request.member_epoch
        if epoch > 0 or epoch == LEAVE_GROUP_MEMBER_EPOCH:
            if not request.member_id:
                raise GroupError(invalid, "MemberId can't be empty.")
        elif epoch == 0:
            if request.member_id_required and not request.member_id:
                raise GroupError(invalid, "MemberId can't be empty.")
            if request.rebalance_timeout_ms == -1:
                raise GroupError(invalid, "RebalanceTimeoutMs must be provided in first request.")
            if request.topic_partitions is None or request.topic_partitions:
                raise GroupError(invalid, "TopicPartitions must be empty when (re-)joining.")
            if not request.subscribed_topic_names and request.subscribed_topic_regex is None:
                raise GroupError(
                    invalid,
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                )
        elif epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            if not request.member_id:
                raise GroupError(invalid, "MemberId can't be empty.")
            if request.instance_id is None:
                raise GroupError(invalid, "InstanceId can't be null.")
        else:
            raise GroupError(invalid, "MemberEpoch is invalid.")
        if request.server_assignor is not None and request.server_assignor not in self.assignors:
            raise GroupError(
                ErrorCode.unsupported_assignor,
                f"ServerAssignor {request.server_assignor} is not supported. Supported "
                f"assignors: {', '.join(self.assignors)}.",
            )
        if request.subscribed_topic_regex is not None:
            _check_regex(request.subscribed_topic_regex)

    def _group(
        self, group_id: str, create: bool, classic: Group | None, plan: _Plan
    ) -> ConsumerGroup:
        """Kafka's getOrMaybeCreateConsumerGroup: an empty classic group is replaced (the online
        upgrade of an empty group); a classic group with members is not a consumer group."""
        group = self.groups.get(group_id)
        if group is not None:
            return group
        if classic is not None:
            if create and not classic.members and classic.state is GroupState.EMPTY:
                plan.records.append((group_key(group_id), None))  # its tombstone
                return ConsumerGroup(group_id)
            raise GroupError(
                ErrorCode.group_id_not_found, f"Group {group_id} is not a consumer group."
            )
        if not create:
            raise GroupError(ErrorCode.group_id_not_found, f"Consumer group {group_id} not found.")
        return ConsumerGroup(group_id)

    def _heartbeat(
        self, request: HeartbeatRequest, topics: TopicsView, classic: Group | None, now: int
    ) -> Result:
        plan = _Plan()
        joining = request.member_epoch == 0
        group = self._group(request.group_id, joining, classic, plan)
        member_id = request.member_id or str(self._new_uuid())
        replaced: str | None = None
        if request.instance_id is None:
            member = self._dynamic_member(group, member_id, request)
        else:
            member, replaced = self._static_member(group, member_id, request, plan)
        updated = replace(
            member,
            instance_id=request.instance_id or member.instance_id,
            rack_id=request.rack_id or member.rack_id,
            rebalance_timeout_ms=request.rebalance_timeout_ms
            if request.rebalance_timeout_ms != -1
            else member.rebalance_timeout_ms,
            server_assignor=request.server_assignor or member.server_assignor,
            subscribed_topic_names=request.subscribed_topic_names
            if request.subscribed_topic_names is not None
            else member.subscribed_topic_names,
            subscribed_topic_regex=request.subscribed_topic_regex
            if request.subscribed_topic_regex is not None
            else member.subscribed_topic_regex,
            client_id=request.client_id,
            client_host=request.client_host,
        )
        known = member if replaced is not None else group.members.get(member_id)
        bump = False
        if known is None or known.metadata_value() != updated.metadata_value():
            plan.records.append(member_record(group.group_id, updated))
            bump = known is None or (
                known.subscribed_topic_names != updated.subscribed_topic_names
                or known.subscribed_topic_regex != updated.subscribed_topic_regex
            )
        members = {m: v for m, v in group.members.items() if m != replaced}
        members[member_id] = updated
        previous = {m: t for m, t in group.targets.items() if m != replaced}
        if replaced is not None:
            previous[member_id] = group.targets.get(replaced, {})
        metadata = subscription_metadata(members.values(), topics)
        if bump or metadata != group.subscription_metadata:
            group_epoch = group.group_epoch + 1
            plan.records.append(group_record(group.group_id, group_epoch, metadata))
        else:
            group_epoch = group.group_epoch
        if group_epoch > group.target_assignment_epoch:
            targets = self._assign(group.group_id, members, metadata, previous, plan)
            plan.records.append(target_epoch_record(group.group_id, group_epoch))
            target_epoch = group_epoch
        else:
            targets = previous
            target_epoch = group.target_assignment_epoch
        reconciled = reconcile(
            updated,
            target_epoch,
            targets.get(member_id, {}),
            request.topic_partitions,
            lambda t, p: owner_epoch(members, t, p),
        )
        if known is None or reconciled != known:
            plan.records.append(current_record(group.group_id, reconciled))
        deadline = (
            now + max(reconciled.rebalance_timeout_ms, 0)
            if reconciled.state is MemberState.UNREVOKED_PARTITIONS
            else None
        )
        full = joining or (
            request.rebalance_timeout_ms != -1
            and request.subscribed_topic_names is not None
            and request.topic_partitions is not None
        )
        changed = reconciled.assigned != (known.assigned if known is not None else None)
        return Result(
            plan.records,
            HeartbeatResponse(
                member_id=member_id,
                member_epoch=reconciled.member_epoch,
                heartbeat_interval_ms=self.heartbeat_interval_ms(group.group_id),
                assignment=reconciled.assigned if full or changed else None,
            ),
            (member_id, deadline),
        )

    def _dynamic_member(
        self, group: ConsumerGroup, member_id: str, request: HeartbeatRequest
    ) -> ConsumerMember:
        member = group.members.get(member_id)
        if member is None:
            if request.member_epoch != 0:
                raise GroupError(
                    ErrorCode.unknown_member_id,
                    f"Member {member_id} is not a member of group {group.group_id}.",
                )
            return ConsumerMember(member_id)
        _check_epoch(member, request.member_epoch, request.topic_partitions)
        return member

    def _static_member(
        self, group: ConsumerGroup, member_id: str, request: HeartbeatRequest, plan: _Plan
    ) -> tuple[ConsumerMember, str | None]:
        """Kafka's getOrMaybeSubscribeStaticConsumerGroupMember: the member, and the id of the
        member it replaces (a static member back under a new member id)."""
        instance_id = request.instance_id or ""
        existing = group.static_member(instance_id)
        if request.member_epoch == 0:
            if existing is None:
                return group.members.get(member_id) or ConsumerMember(member_id), None
            if existing.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH:
                raise GroupError(
                    ErrorCode.unreleased_instance_id,
                    f"Static member {member_id} with instance id {instance_id} cannot join the "
                    f"group because the instance id is owned by {existing.member_id} member.",
                )
            # The new instance takes over the old one's assignment, under its own member id.
            replacing = replace(
                existing, member_id=member_id, member_epoch=0, previous_member_epoch=0
            )
            plan.records.extend(member_tombstones(group.group_id, existing.member_id))
            plan.records.append(member_record(group.group_id, replacing))
            target = group.targets.get(existing.member_id, {})
            plan.records.append(target_record(group.group_id, member_id, target))
            plan.records.append(current_record(group.group_id, replacing))
            return replacing, existing.member_id
        if existing is None:
            raise GroupError(ErrorCode.unknown_member_id, f"Instance id {instance_id} is unknown.")
        _check_fenced(existing, group.group_id, member_id, instance_id)
        _check_epoch(existing, request.member_epoch, request.topic_partitions)
        return existing, None

    def _assign(
        self,
        group_id: str,
        members: Mapping[str, ConsumerMember],
        metadata: Mapping[str, tuple[TopicId, int]],
        previous: Mapping[str, Partitions],
        plan: _Plan,
    ) -> dict[str, Partitions]:
        """Kafka's updateTargetAssignment: the new target of every member; a record for each
        member whose target changed."""
        ids = {name: topic_id for name, (topic_id, _) in metadata.items()}
        counts = {topic_id: count for topic_id, count in metadata.values()}
        subscriptions = {
            m.member_id: {ids[n] for n in subscribed_names(m, metadata, frozenset()) if n in ids}
            for m in members.values()
        }
        name = _preferred(members.values(), self.assignors[0])
        targets = ASSIGNORS[name](AssignmentSpec(subscriptions, counts, previous))
        for member_id, partitions in sorted(targets.items()):
            if previous.get(member_id) != partitions or member_id not in previous:
                plan.records.append(target_record(group_id, member_id, partitions))
        return targets

    # ----------------------------------------------------------------- leave
    def _leave(
        self, request: HeartbeatRequest, classic: Group | None, topics: TopicsView
    ) -> Result:
        group = self.groups.get(request.group_id)
        if group is None:
            if classic is not None:
                message = f"Group {request.group_id} is not a consumer group."
            else:
                message = f"Consumer group {request.group_id} not found."
            raise GroupError(ErrorCode.group_id_not_found, message)
        left = HeartbeatResponse(member_id=request.member_id, member_epoch=request.member_epoch)
        if request.instance_id is None:
            member = group.members.get(request.member_id)
            if member is None:
                raise GroupError(
                    ErrorCode.unknown_member_id,
                    f"Member {request.member_id} is not a member of group {group.group_id}.",
                )
            return Result(self.fence(group, member, topics), left)
        instance_id = request.instance_id
        static = group.static_member(instance_id)
        if static is None:
            raise GroupError(ErrorCode.unknown_member_id, f"Instance id {instance_id} is unknown.")
        _check_fenced(static, group.group_id, request.member_id, instance_id)
        if request.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            # The static member will be back: it keeps its assignment until its session ends.
            leaving = replace(
                static,
                member_epoch=LEAVE_GROUP_STATIC_MEMBER_EPOCH,
                previous_member_epoch=static.member_epoch,
                pending_revocation={},
            )
            return Result(
                [current_record(group.group_id, leaving)],
                HeartbeatResponse(
                    member_id=static.member_id, member_epoch=LEAVE_GROUP_STATIC_MEMBER_EPOCH
                ),
            )
        return Result(self.fence(group, static, topics), left)

    def fence(
        self, group: ConsumerGroup, member: ConsumerMember, topics: TopicsView
    ) -> list[Record]:
        """Remove a member: its records go, the group epoch is bumped (Kafka's
        consumerGroupFenceMember), so the others are given its partitions."""
        records = member_tombstones(group.group_id, member.member_id)
        others = [m for m in group.members.values() if m.member_id != member.member_id]
        metadata = subscription_metadata(others, topics)
        records.append(group_record(group.group_id, group.group_epoch + 1, metadata))
        return records

    # ----------------------------------------------------------------- timers
    def expired(self, now: int) -> list[tuple[ConsumerGroup, ConsumerMember, str]]:
        """Members whose session timed out, or who did not revoke within their rebalance
        timeout: (group, member, why)."""
        found = []
        for group in self.groups.values():
            session_ms = self.session_timeout_ms(group.group_id)
            for member in group.members.values():
                seen = group.last_heartbeat_ms.get(member.member_id, now)
                deadline = group.revocation_deadline_ms.get(member.member_id)
                if now - seen > session_ms:
                    found.append((group, member, "the member session expired"))
                elif deadline is not None and now > deadline:
                    found.append((group, member, "the member failed to revoke in time"))
        return found

    # ----------------------------------------------------------------- offsets
    def check_commit(
        self,
        group: ConsumerGroup,
        member_id: str,
        member_epoch: int,
        transactional: bool,
        api_version: int,
    ) -> tuple[ErrorCode, str | None]:
        """Kafka's ConsumerGroup.validateOffsetCommit (and, transactional, the
        OffsetMetadataManager's mapping of STALE_MEMBER_EPOCH to ILLEGAL_GENERATION)."""
        if member_epoch < 0 and not group.members:
            return ErrorCode.none, None
        member = group.members.get(member_id)
        if member is None:
            return ErrorCode.unknown_member_id, (
                f"Member {member_id} is not a member of group {group.group_id}."
            )
        if not transactional and api_version < OFFSET_COMMIT_MEMBER_EPOCH_VERSION:
            return ErrorCode.unsupported_version, (
                "OffsetCommit version 9 or above must be used by members using the modern "
                "group protocol"
            )
        if member_epoch != member.member_epoch:
            if transactional:
                return ErrorCode.illegal_generation, None
            return ErrorCode.stale_member_epoch, (
                f"The received member epoch {member_epoch} does not match the expected member "
                f"epoch {member.member_epoch}."
            )
        return ErrorCode.none, None

    def check_fetch(
        self, group: ConsumerGroup, member_id: str | None, member_epoch: int
    ) -> ErrorCode:
        """Kafka's ConsumerGroup.validateOffsetFetch (OffsetFetch v9)."""
        if member_id is None and member_epoch < 0:
            return ErrorCode.none
        member = group.members.get(member_id or "")
        if member is None:
            return ErrorCode.unknown_member_id
        if member_epoch != member.member_epoch:
            return ErrorCode.stale_member_epoch
        return ErrorCode.none


OFFSET_COMMIT_MEMBER_EPOCH_VERSION = 9


# --------------------------------------------------------------------- helpers
def _check_regex(regex: str) -> None:
    """INVALID_REGULAR_EXPRESSION for a pattern RE2 refuses (`samsa.coordinator.group.regex`)."""
    try:
        topic_matcher(regex)
    except InvalidRegex as exc:
        raise GroupError(
            ErrorCode.invalid_regular_expression,
            f"SubscribedTopicRegex `{regex}` is not a valid regular expression: {exc}.",
        ) from exc


def subscribed_names(
    member: ConsumerMember, topics: Mapping[str, object], internal: frozenset[str] = frozenset()
) -> set[str]:
    """The topics a member subscribes to among `topics`: its names, and those its regex matches
    (internal topics never match a regex)."""
    names = {n for n in member.subscribed_topic_names if n in topics}
    if member.subscribed_topic_regex is not None:
        try:
            matches = topic_matcher(member.subscribed_topic_regex)
        except InvalidRegex:
            return names
        names |= {t for t in topics if t not in internal and matches(t)}
    return names


def subscription_metadata(
    members: Iterable[ConsumerMember], topics: TopicsView
) -> dict[str, tuple[TopicId, int]]:
    """The subscribed topics that exist: name -> (topic id, partition count)."""
    found: dict[str, tuple[TopicId, int]] = {}
    for member in members:
        for name in subscribed_names(member, topics.topics, topics.internal):
            found[name] = topics.topics[name]
    return found


def _preferred(members: Iterable[ConsumerMember], default: str) -> str:
    """The server assignor most members ask for (Kafka's computePreferredServerAssignor)."""
    votes: dict[str, int] = {}
    for member in members:
        if member.server_assignor is not None:
            votes[member.server_assignor] = votes.get(member.server_assignor, 0) + 1
    return max(sorted(votes), key=lambda n: votes[n]) if votes else default


def _check_fenced(member: ConsumerMember, group_id: str, member_id: str, instance_id: str) -> None:
    if member.member_id != member_id:
        raise GroupError(
            ErrorCode.fenced_instance_id,
            f"Static member {member_id} with instance id {instance_id} was fenced by member "
            f"{member.member_id}.",
        )


def _is_subset(owned: Partitions | None, assigned: Partitions) -> bool:
    if owned is None:
        return False
    return all(parts <= assigned.get(topic, frozenset()) for topic, parts in owned.items())


def _check_epoch(member: ConsumerMember, epoch: int, owned: Partitions | None) -> None:
    """Kafka's throwIfConsumerGroupMemberEpochIsInvalid. Epoch 0 is a member rejoining under
    its own id (librdkafka keeps its member id after FENCED_MEMBER_EPOCH, KIP-1082): accepted,
    as Kafka does since KAFKA-19233; it is given its current assignment back."""
    if epoch == 0:
        return
    if epoch > member.member_epoch:
        raise GroupError(
            ErrorCode.fenced_member_epoch,
            f"The consumer group member has a greater member epoch ({epoch}) than the one known "
            f"by the group coordinator ({member.member_epoch}). The member must abandon all its "
            "partitions and rejoin.",
        )
    if epoch < member.member_epoch and (
        epoch != member.previous_member_epoch or not _is_subset(owned, member.assigned)
    ):
        raise GroupError(
            ErrorCode.fenced_member_epoch,
            f"The consumer group member has a smaller member epoch ({epoch}) than the one known "
            f"by the group coordinator ({member.member_epoch}). The member must abandon all its "
            "partitions and rejoin.",
        )
