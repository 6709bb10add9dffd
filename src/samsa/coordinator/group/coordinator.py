"""The group coordinator: the classic consumer-group protocol and committed offsets, on the
offsets log (`__consumer_offsets`).

The decisions are the state machines': `GroupStateMachine` (`machine.py`: membership) and the
offset commits (`commits.py`). This module is what runs them: one `CoordinatorRuntime` appends
their records to the offsets log and, once they are durable, replays the log into `OffsetStore`
(`catch_up`); the group records a membership change made are appended in the order they were
made, and their durability is reported back to the state machine (`GroupWrite.then`). At
start-up the same replay rebuilds the offsets, the pending transactional offsets and the groups.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence

from kio.records.readers import read_batch
from kio.schema.errors import ErrorCode

from samsa.coordinator.group.consumer import GROUP_KINDS as CONSUMER_GROUP_KINDS
from samsa.coordinator.group.consumer import ConsumerGroup, ConsumerGroups, group_tombstones
from samsa.coordinator.group.consumer_machine import (
    OFFSET_COMMIT_MEMBER_EPOCH_VERSION,
    ConsumerGroupMachine,
    HeartbeatRequest,
    HeartbeatResponse,
    TopicsView,
)
from samsa.coordinator.group.machine import (
    GroupSettings,
    GroupStateMachine,
    GroupWrite,
    JoinRequest,
    JoinResult,
    SyncResult,
)
from samsa.coordinator.group.model import Group
from samsa.coordinator.group.offsets import OffsetStore, group_key, offset_key
from samsa.coordinator.group.states import GroupState, GroupType
from samsa.coordinator.runtime import CoordinatorRuntime, KeyValue
from samsa.durability import Durable, Failed, Later, Slot
from samsa.log.partition import PartitionLog

__all__ = ["GroupCoordinator", "GroupSettings", "JoinRequest", "JoinResult", "SyncResult"]

G = GroupState
log = logging.getLogger("samsa.group")


class GroupCoordinator:
    def __init__(
        self,
        offsets_log: PartitionLog,
        clock_ms: Callable[[], int],
        settings: GroupSettings,
        background: Callable[[Later], None],
        new_uuid: Callable[[], uuid.UUID],
        topics: Callable[[], TopicsView] = lambda: TopicsView({}),
    ) -> None:
        self.log = offsets_log
        self.topics = topics  # what consumer groups subscribe to and the assignors divide
        self.offsets = OffsetStore(offsets_log.log_start_offset)
        self.clock_ms = clock_ms
        self.settings = settings
        self._background = background
        self.machine = GroupStateMachine(settings, new_uuid)
        self.consumer = ConsumerGroupMachine(settings, new_uuid)
        self.runtime: CoordinatorRuntime[KeyValue] = CoordinatorRuntime(
            offsets_log, _same, self._replay, clock_ms
        )

    @property
    def groups(self) -> dict[str, Group]:
        return self.machine.groups

    # ----------------------------------------------------------------- log
    def load(self) -> None:
        """Replay the offsets log: committed offsets, pending transactional ones, groups."""
        self.offsets.catch_up(self.log)
        now = self.clock_ms()
        for key, value in self.offsets.group_records:
            self._replay_group(key, value, now)
        self.offsets.group_records.clear()
        # As Kafka's loader: a group with offsets (committed, or pending in a transaction) and
        # no metadata of its own is an Empty classic group.
        for group_id in self.offsets.group_ids():
            self.group_for_offsets(group_id)

    def _replay_group(self, key: Sequence[str], value: bytes | None, now: int) -> None:
        if key[0] == "group":
            self.machine.replay(key[1], value, now)
        elif key[0] in CONSUMER_GROUP_KINDS:
            self.consumer.state.replay(key, value, now)

    def catch_up(self) -> None:
        self.offsets.catch_up(self.log)
        self.offsets.group_records.clear()  # live group changes were applied as they were made

    def _replay(self, records: Sequence[KeyValue]) -> None:
        self.catch_up()

    def _flush(self) -> None:
        """Append the group records the state machine made, and report their durability."""
        for write in self.machine.take_writes():
            self._background(self._write_group(write))

    def _write_group(self, write: GroupWrite) -> Later:
        """Append a group record; it is not replayed live (Kafka's `replayRecords=false` for
        classic groups: the group changed as the record was made), only reported durable."""
        end = self.runtime.append([(group_key(write.group_id), write.value)])

        def then(failed: Failed) -> Later | None:
            if write.then is not None:
                write.then(not failed, self.clock_ms())
                self._flush()
            return None

        return Later([(self.log, end)], then)

    # ----------------------------------------------------------------- membership
    def join(self, request: JoinRequest) -> JoinResult | Slot:
        """JoinGroup. A group id is of one type (KIP-848): an empty consumer group gives way to
        a classic one (Kafka's maybeDeleteEmptyConsumerGroup); a consumer group with members
        refuses a classic member (Kafka 4.0 could take it in as a classic member of the
        consumer group; samsa does not migrate groups)."""
        consumer_group = self.consumer.groups.get(request.group_id)
        if consumer_group is not None:
            if consumer_group.members:
                return JoinResult(
                    ErrorCode.inconsistent_group_protocol, member_id=request.member_id
                )
            self._background(
                self._write_consumer(group_tombstones(consumer_group), self.clock_ms())
            )
        result = self.machine.join(request, self.clock_ms())
        self._flush()
        return result

    def sync(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
    ) -> SyncResult | Slot:
        result = self.machine.sync(
            group_id,
            generation_id,
            member_id,
            instance_id,
            protocol_type,
            protocol_name,
            assignments,
            self.clock_ms(),
        )
        self._flush()
        return result

    def heartbeat(
        self, group_id: str, generation_id: int, member_id: str, instance_id: str | None
    ) -> ErrorCode:
        return self.machine.heartbeat(
            group_id, generation_id, member_id, instance_id, self.clock_ms()
        )

    def leave(self, group_id: str, leaving: Iterable[tuple[str, str | None]]) -> list[ErrorCode]:
        errors = self.machine.leave(group_id, leaving, self.clock_ms())
        self._flush()
        return errors

    def tick(self) -> None:
        """Expire members that stopped heartbeating; finish joins whose deadline passed; fence
        consumer group members whose session or revocation timed out."""
        now = self.clock_ms()
        self.machine.tick(now)
        self._flush()
        for group, member, why in self.consumer.expired(now):
            if group.members.get(member.member_id) is not member:
                continue  # a member fenced in this same pass made the group change
            log.info("group %s: member %s fenced: %s", group.group_id, member.member_id, why)
            records = self.consumer.fence(group, member, self.topics())
            self._background(self._write_consumer(records, now))

    # ----------------------------------------------------------------- consumer groups (KIP-848)
    def consumer_heartbeat(
        self, request: HeartbeatRequest
    ) -> Durable[HeartbeatResponse] | HeartbeatResponse:
        """ConsumerGroupHeartbeat: its records are appended and replayed at once (Kafka replays
        a consumer group's records as it appends them), the answer waits until they are
        durable."""
        self.catch_up()
        now = self.clock_ms()
        classic = self.machine.groups.get(request.group_id)
        result = self.consumer.heartbeat(request, self.topics(), classic, now)
        if not result.records:
            self.consumer.touch(request.group_id, result.touch, now)
            return result.response
        end = self._append_consumer(result.records, now)
        self.consumer.touch(request.group_id, result.touch, now)
        response = result.response

        def then(failed: Failed) -> HeartbeatResponse:
            if failed:
                self._reload_consumer_groups()
                return HeartbeatResponse(ErrorCode.not_coordinator, "The write failed.")
            return response

        return Durable([(self.log, end)], then)

    def _append_consumer(self, records: Sequence[KeyValue], now: int) -> int:
        end = self.runtime.append(records)
        for key, value in records:
            self._replay_group(tuple(json.loads(key)), value, now)
        return end

    def _write_consumer(self, records: Sequence[KeyValue], now: int) -> Later:
        end = self._append_consumer(records, now)

        def then(failed: Failed) -> None:
            if failed:
                self._reload_consumer_groups()

        return Later([(self.log, end)], then)

    def _reload_consumer_groups(self) -> None:
        """After a consumer group write failed: the groups as the log holds them. (Kafka reverts
        to its last committed state and fails every write pending after it; samsa's log undid
        the failed batch, or went offline, and replaying what the log holds, later pending
        writes included, gives the state those writes were decided on, less the failed one.)"""
        rebuilt = ConsumerGroups()
        now = self.clock_ms()
        try:
            for header, data in self.log.batches(
                self.log.log_start_offset, self.log.log_end_offset
            ):
                if header.is_control or header.is_transactional:
                    continue
                batch, _ = read_batch(data, 0)
                for record in batch.records:
                    key = json.loads(record.key) if record.key is not None else [""]
                    if key[0] in CONSUMER_GROUP_KINDS:
                        rebuilt.replay(tuple(str(k) for k in key), record.value, now)
        except OSError:
            log.exception("the consumer groups could not be read back after a failed write")
            return
        for group_id, group in rebuilt.groups.items():
            live = self.consumer.groups.get(group_id)
            if live is not None:  # the members' sessions go on
                group.last_heartbeat_ms.update(
                    (m, t) for m, t in live.last_heartbeat_ms.items() if m in group.members
                )
        self.consumer.state.groups = rebuilt.groups

    def all_groups(self) -> list[Group | ConsumerGroup]:
        """Classic and consumer groups alike; each has a `type`, "classic" or "consumer"."""
        return [*self.machine.groups.values(), *self.consumer.groups.values()]

    def group_type(self, group_id: str) -> GroupType | None:
        """CLASSIC or CONSUMER (KIP-848: a group id is of one type), None if unknown."""
        if group_id in self.consumer.groups:
            return GroupType.CONSUMER
        return GroupType.CLASSIC if group_id in self.machine.groups else None

    # ----------------------------------------------------------------- offsets
    def check_commit(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        instance_id: str | None,
        api_version: int,
    ) -> ErrorCode:
        """May this (member, generation or member epoch) commit offsets? (Kafka's
        validateOffsetCommit, of the group's type.)"""
        consumer_group = self.consumer.groups.get(group_id)
        if consumer_group is not None:
            error, _ = self.consumer.check_commit(
                consumer_group, member_id, generation_id, False, api_version
            )
            return error
        if (
            group_id not in self.machine.groups
            and generation_id >= 0
            and api_version >= OFFSET_COMMIT_MEMBER_EPOCH_VERSION
        ):
            # OffsetCommit v9 names the missing group for both protocols (Kafka).
            return ErrorCode.group_id_not_found
        return self.machine.check_commit(
            group_id, generation_id, member_id, instance_id, self.clock_ms()
        )

    def check_txn_commit(
        self, group_id: str, generation_id: int, member_id: str, instance_id: str | None
    ) -> ErrorCode:
        """KIP-447's check of a TxnOffsetCommit; for a consumer group `generation_id` is the
        member epoch (a stale one is ILLEGAL_GENERATION, as Kafka's OffsetMetadataManager)."""
        consumer_group = self.consumer.groups.get(group_id)
        if consumer_group is not None:
            error, _ = self.consumer.check_commit(
                consumer_group, member_id, generation_id, True, OFFSET_COMMIT_MEMBER_EPOCH_VERSION
            )
            return error
        return self.machine.check_txn_commit(group_id, generation_id, member_id, instance_id)

    def _delete_consumer_group(self, group: ConsumerGroup) -> ErrorCode:
        if group.members:
            return ErrorCode.non_empty_group
        records: list[KeyValue] = [
            (offset_key(group.group_id, t, p), None)
            for t, p in self.offsets.group_offsets(group.group_id)
        ]
        self._append_consumer([*records, *group_tombstones(group)], self.clock_ms())
        return ErrorCode.none

    def check_fetch(self, group_id: str, member_id: str | None, member_epoch: int) -> ErrorCode:
        """OffsetFetch v9 names the member and its epoch: checked for a consumer group."""
        consumer_group = self.consumer.groups.get(group_id)
        if consumer_group is None:
            return ErrorCode.none
        return self.consumer.check_fetch(consumer_group, member_id, member_epoch)

    def group_for_offsets(self, group_id: str) -> None:
        """A simple consumer's commit creates the (classic, Empty) group it goes to."""
        if group_id not in self.consumer.groups:
            self.machine.group_for_offsets(group_id)

    def delete_groups(self, group_ids: Iterable[str]) -> Durable[dict[str, ErrorCode]]:
        """Tombstone empty groups and their offsets (DeleteGroups)."""
        self.catch_up()
        # Kafka expires a member the moment its session ends (a timer per member); samsa's tick
        # runs every GROUP_TICK_MS. Expire what is due now, so a group whose last member's
        # session has just ended is Empty here too (librdkafka 0081 deletes it right then).
        self.tick()
        results: dict[str, ErrorCode] = {}
        for group_id in group_ids:
            group = self.groups.get(group_id)
            consumer_group = self.consumer.groups.get(group_id)
            if consumer_group is not None:
                results[group_id] = self._delete_consumer_group(consumer_group)
            elif group is None and not self.offsets.has_offsets(group_id):
                results[group_id] = ErrorCode.group_id_not_found
            elif group is not None and group.state is not G.EMPTY:
                results[group_id] = ErrorCode.non_empty_group
            else:
                records: list[KeyValue] = [
                    (offset_key(group_id, t, p), None)
                    for t, p in self.offsets.group_offsets(group_id)
                ]
                records.append((group_key(group_id), None))
                self.runtime.append(records)
                self.machine.delete(group_id)
                results[group_id] = ErrorCode.none

        def then(failed: Failed) -> dict[str, ErrorCode]:
            self.catch_up()
            if failed:
                return {
                    g: ErrorCode.kafka_storage_error if e == ErrorCode.none else e
                    for g, e in results.items()
                }
            return results

        return Durable([(self.log, self.log.log_end_offset)], then)


def _same(record: KeyValue) -> KeyValue:
    return record
