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

import uuid
from collections.abc import Callable, Iterable, Sequence

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
from samsa.coordinator.group.offsets import OffsetStore, group_key, offset_key
from samsa.coordinator.group.states import GroupState
from samsa.coordinator.runtime import CoordinatorRuntime, KeyValue
from samsa.durability import Durable, Failed, Later, Slot
from samsa.log.partition import PartitionLog

__all__ = ["GroupCoordinator", "GroupSettings", "JoinRequest", "JoinResult", "SyncResult"]

G = GroupState


class GroupCoordinator:
    def __init__(
        self,
        offsets_log: PartitionLog,
        clock_ms: Callable[[], int],
        settings: GroupSettings,
        background: Callable[[Later], None],
        new_uuid: Callable[[], uuid.UUID],
    ) -> None:
        self.log = offsets_log
        self.offsets = OffsetStore(offsets_log.log_start_offset)
        self.clock_ms = clock_ms
        self.settings = settings
        self._background = background
        self.machine = GroupStateMachine(settings, new_uuid)
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
        for group_id, value in self.offsets.group_records:
            self.machine.replay(group_id, value, now)
        self.offsets.group_records.clear()

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
        """Expire members that stopped heartbeating; finish joins whose deadline passed."""
        self.machine.tick(self.clock_ms())
        self._flush()

    # ----------------------------------------------------------------- offsets
    def check_commit(
        self, group_id: str, generation_id: int, member_id: str, instance_id: str | None
    ) -> ErrorCode:
        """May this (member, generation) commit offsets? (Kafka's validateOffsetCommit.)"""
        return self.machine.check_commit(
            group_id, generation_id, member_id, instance_id, self.clock_ms()
        )

    def group_for_offsets(self, group_id: str) -> Group:
        """The group a commit goes to; a simple consumer's commit creates it (Empty)."""
        return self.machine.group_for_offsets(group_id)

    def delete_groups(self, group_ids: Iterable[str]) -> Durable[dict[str, ErrorCode]]:
        """Tombstone empty groups and their offsets (DeleteGroups)."""
        self.catch_up()
        results: dict[str, ErrorCode] = {}
        for group_id in group_ids:
            group = self.groups.get(group_id)
            if group is None and not self.offsets.has_offsets(group_id):
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
