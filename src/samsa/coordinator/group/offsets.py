"""Committed offsets, event-sourced on `__consumer_offsets`.

Theory of operation: every commit is a record in the offsets log; the store's state is the replay
of that log up to its high watermark (only durable records count). `catch_up` applies whatever
became durable since the last call, batch by batch (`apply`), so start-up and live operation run
the same code, and a test can replay batches without a log.

- A plain commit record sets the committed offset of (group, topic, partition).
- A transactional commit (TxnOffsetCommit) is a record in a *transactional* batch of the
  producer: it is held as pending for that producer id until the producer's marker arrives in
  this log. COMMIT materialises it (unless a later plain commit already superseded it: the record
  with the higher log offset wins); ABORT drops it. So offsets committed inside a transaction
  become visible exactly when its COMMIT marker does (invariant 7).
- A tombstone (no value) deletes an offset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from kio.records.readers import read_batch

from samsa.coordinator.group.consumer import GROUP_KINDS
from samsa.log.partition import PartitionLog
from samsa.protocol.batch import BatchHeader
from samsa.protocol.control import COMMIT, marker_type

OffsetKey = tuple[str, str, int]  # group, topic, partition


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    offset: int
    leader_epoch: int
    metadata: str
    commit_ms: int
    record_offset: int  # where the commit sits in the offsets log


def offset_key(group: str, topic: str, partition: int) -> bytes:
    return json.dumps(["offset", group, topic, partition]).encode()


def offset_value(offset: int, leader_epoch: int, metadata: str, commit_ms: int) -> bytes:
    return json.dumps(
        {
            "offset": offset,
            "leader_epoch": leader_epoch,
            "metadata": metadata,
            "commit_ms": commit_ms,
        }
    ).encode()


def group_key(group: str) -> bytes:
    return json.dumps(["group", group]).encode()


class OffsetStore:
    def __init__(self, log_start_offset: int = 0) -> None:
        self.applied_offset = log_start_offset  # everything below is applied
        self.committed: dict[OffsetKey, CommittedOffset] = {}
        self.pending: dict[int, dict[OffsetKey, CommittedOffset | None]] = {}
        # Group records seen while catching up, for the coordinator to apply, in log order:
        # (key, value); the key is ("group", group) for a classic group, or a consumer group's
        # record key (`samsa.coordinator.group.consumer`).
        self.group_records: list[tuple[tuple[str, ...], bytes | None]] = []

    def catch_up(self, log: PartitionLog) -> None:
        """Apply every batch of `log` that became durable since the last call."""
        high_watermark = log.high_watermark
        if self.applied_offset >= high_watermark:
            return
        for header, data in log.batches(self.applied_offset, high_watermark):
            self.apply(header, data)
        self.applied_offset = max(self.applied_offset, high_watermark)

    def apply(self, header: BatchHeader, data: bytes) -> None:
        """Replay one durable batch of the offsets log; batches come in log order."""
        if header.is_control:
            self._end_transaction(header.producer_id, marker_type(data) == COMMIT)
        else:
            pid = header.producer_id if header.is_transactional else None
            self._apply_batch(data, pid)
        self.applied_offset = header.next_offset

    def _apply_batch(self, data: bytes, transactional_pid: int | None) -> None:
        batch, _ = read_batch(data, 0)
        for record in batch.records:
            if record.key is None:
                continue
            key = json.loads(record.key)
            if key[0] == "group" or key[0] in GROUP_KINDS:
                self.group_records.append((tuple(str(part) for part in key), record.value))
                continue
            if key[0] != "offset":
                continue
            offset_key_ = (str(key[1]), str(key[2]), int(key[3]))
            value = None
            if record.value is not None:
                raw = json.loads(record.value)
                value = CommittedOffset(
                    raw["offset"],
                    raw["leader_epoch"],
                    raw["metadata"],
                    raw["commit_ms"],
                    int(record.offset),
                )
            if transactional_pid is not None:
                self.pending.setdefault(transactional_pid, {})[offset_key_] = value
            elif value is None:
                self.committed.pop(offset_key_, None)
            else:
                self.committed[offset_key_] = value

    def _end_transaction(self, producer_id: int, commit: bool) -> None:
        pending = self.pending.pop(producer_id, {})
        if not commit:
            return
        for key, value in pending.items():
            current = self.committed.get(key)
            if value is None:
                self.committed.pop(key, None)
            elif current is None or current.record_offset < value.record_offset:
                self.committed[key] = value

    def is_pending(self, key: OffsetKey) -> bool:
        return any(key in offsets for offsets in self.pending.values())

    def group_offsets(self, group: str) -> dict[tuple[str, int], CommittedOffset]:
        return {(t, p): v for (g, t, p), v in self.committed.items() if g == group}

    def group_ids(self) -> set[str]:
        """Every group with an offset, committed or pending in a transaction."""
        return {g for g, _, _ in self.committed} | {
            g for offsets in self.pending.values() for g, _, _ in offsets
        }

    def has_offsets(self, group: str) -> bool:
        return group in self.group_ids()
