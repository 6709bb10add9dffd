"""The log of one topic partition: ordered segments, offsets, high watermark, retention.

Offsets: `log_start_offset` <= `high_watermark` <= `log_end_offset`. Appends advance the log end
offset at once; the high watermark only moves to a `SyncPoint` that has been fsynced, so a
consumer never reads a batch that a crash could take back (invariant 2). With syncing relaxed
(`durable=False`), the high watermark follows the log end offset.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from samsa.log.segment import RecoveryReport, Segment, segment_name
from samsa.log.storage import Storage
from samsa.log.txn_index import AbortedTxn
from samsa.protocol.batch import (
    HEADER_BYTES,
    BatchHeader,
    assign_offset,
    iter_batches,
    parse_header,
)
from samsa.protocol.control import ABORT, marker_batch, marker_type
from samsa.protocol.records import record_timestamps
from samsa.state.producers import (
    Append,
    CompletedTxn,
    Duplicate,
    ProducerStateError,
    ProducerStateManager,
)

SNAPSHOT_SUFFIX = ".snapshot"
SNAPSHOTS_RETAINED = 2


@dataclass(frozen=True, slots=True)
class LogConfig:
    segment_bytes: int = 1 << 30
    segment_ms: int = 7 * 24 * 3600 * 1000
    retention_ms: int = 7 * 24 * 3600 * 1000  # -1: keep forever
    retention_bytes: int = -1  # -1: no size limit
    index_interval_bytes: int = 4096
    durable: bool = True
    producer_id_expiration_ms: int = 24 * 3600 * 1000


@dataclass(slots=True)
class SyncPoint:
    """What one fsync round must make durable for a log: every segment written since the last."""

    log_end_offset: int
    segments: list[Segment] = field(default_factory=list)

    def run(self) -> None:
        """Blocking; runs on a worker thread while the event loop keeps appending."""
        for segment in self.segments:
            segment.sync()


class PartitionLog:
    def __init__(
        self, storage: Storage, directory: str, topic: str, partition: int, config: LogConfig
    ) -> None:
        self.storage = storage
        self.directory = directory
        self.topic = topic
        self.partition = partition
        self.config = config
        self.segments: list[Segment] = []
        self.high_watermark = 0
        self.recovery: list[RecoveryReport] = []
        self._unsynced: list[Segment] = []
        # Set once an fsync of this log failed: see `fail_sync`.
        self.sync_failed = False
        self.producers = ProducerStateManager(config.producer_id_expiration_ms)
        self.batches_replayed = 0

    # ----------------------------------------------------------------- opening and closing
    @classmethod
    def open(
        cls,
        storage: Storage,
        directory: str,
        topic: str,
        partition: int,
        config: LogConfig,
        now_ms: int,
        recover: bool,
    ) -> PartitionLog:
        """Open (or create) the log; with `recover`, the newest segment is rescanned and cut back
        to its last whole, CRC-valid batch (what an unclean shutdown may have left torn)."""
        log = cls(storage, directory, topic, partition, config)
        storage.makedirs(directory)
        bases = sorted(
            int(name[: -len(".log")])
            for name in storage.listdir(directory)
            if name.endswith(".log") and name[: -len(".log")].isdigit()
        )
        for i, base in enumerate(bases):
            segment = Segment(storage, directory, base, config.index_interval_bytes)
            log.recovery.append(segment.load(recover=recover and i == len(bases) - 1))
            # segment.ms counts from the segment's first batch (Kafka's rollingBasedTimestamp),
            # so a restart does not reset it.
            first = segment.first_batch_timestamp
            segment.created_ms = now_ms if first is None else min(first, now_ms)
            log.segments.append(segment)
        if not log.segments:
            log._add_segment(0, now_ms)
        if recover:
            # After a crash the files may hold writes that were never fsynced (the process died,
            # the page cache did not). They become the high watermark below, so they must be
            # made durable first: another crash must not take back what readers may now see.
            for segment in log.segments:
                segment.sync()
        log.high_watermark = log.log_end_offset
        log._load_producer_state(now_ms)
        return log

    # ----------------------------------------------------------------- producer state
    def _snapshot_offsets(self) -> list[int]:
        return sorted(
            int(name[: -len(SNAPSHOT_SUFFIX)])
            for name in self.storage.listdir(self.directory)
            if name.endswith(SNAPSHOT_SUFFIX) and name[: -len(SNAPSHOT_SUFFIX)].isdigit()
        )

    def _snapshot_path(self, offset: int) -> str:
        return os.path.join(self.directory, segment_name(offset) + SNAPSHOT_SUFFIX)

    def _load_producer_state(self, now_ms: int) -> None:
        """Newest valid snapshot at or below the log end, then replay of the batches after it.

        A snapshot past the log end describes writes a crash took back: it is deleted, as is a
        damaged one (Kafka's ProducerStateManager.truncateAndReload does the same).
        """
        start = self.log_start_offset
        for offset in reversed(self._snapshot_offsets()):
            path = self._snapshot_path(offset)
            data = self.storage.read_all(path)
            if (
                offset <= self.log_end_offset
                and data
                and self.producers.load_snapshot(data, now_ms)
            ):
                start = max(offset, self.log_start_offset)
                break
            self.storage.remove(path)
        self.batches_replayed = self._replay(start)

    def _replay(self, start: int) -> int:
        """Apply every producer batch from `start` to the log end to the producer state, and
        complete the aborted-transaction index with the ABORT markers it lacks."""
        count = 0
        for segment in self.segments[self._segment_index(start) :]:
            found = segment.find_position(start)
            if found is None:
                continue
            indexed = {entry.last_offset for entry in segment.txn_index.entries}
            for position, header in segment.batches(found[0]):
                if not header.has_producer_id:
                    continue
                count += 1
                if not header.is_control:
                    self.producers.apply(header)
                    continue
                aborted = marker_type(segment.read(position, position + header.size)) == ABORT
                completed = self.producers.apply_marker(header, aborted, 0)
                if completed is not None and aborted and header.base_offset not in indexed:
                    self._index_abort(segment, completed)
        self.producers.on_high_watermark(self.high_watermark)
        return count

    def _index_abort(self, segment: Segment, completed: CompletedTxn) -> None:
        """Index an aborted transaction; its last stable offset is the LSO once it is closed
        (Kafka's AbortedTxn.lastStableOffset, which lets a fetch stop scanning early)."""
        others = [
            first
            for first, marker in self.producers.unstable_completed
            if marker != completed.last_offset
        ]
        others.extend(self.producers.open_transactions().values())
        stable = min(others) if others else completed.last_offset + 1
        segment.txn_index.append(
            AbortedTxn(completed.producer_id, completed.first_offset, completed.last_offset, stable)
        )

    def take_snapshot(self) -> None:
        """Persist producer state as of the log end (on roll and on close)."""
        self.storage.write_atomic(
            self._snapshot_path(self.log_end_offset), self.producers.snapshot()
        )
        for offset in self._snapshot_offsets()[:-SNAPSHOTS_RETAINED]:
            self.storage.remove(self._snapshot_path(offset))

    def close(self) -> None:
        self.take_snapshot()
        for segment in self.segments:
            segment.sync()
            segment.sync_indexes()
            segment.close()

    def delete(self) -> None:
        for segment in self.segments:
            segment.close()
        self.segments.clear()
        self.storage.rmtree(self.directory)

    # ----------------------------------------------------------------- offsets
    @property
    def active(self) -> Segment:
        return self.segments[-1]

    @property
    def log_start_offset(self) -> int:
        return self.segments[0].base_offset

    @property
    def log_end_offset(self) -> int:
        return self.active.next_offset

    @property
    def size_bytes(self) -> int:
        return sum(segment.size for segment in self.segments)

    # ----------------------------------------------------------------- writing
    def append(
        self,
        records: bytes,
        header: BatchHeader,
        now_ms: int,
        verify_txn: Callable[[BatchHeader], ErrorCode] | None = None,
        coordinator: bool = False,
    ) -> BatchHeader | Duplicate:
        """Assign offsets to one validated batch and write it; return its rewritten header, or
        `Duplicate` for an exact retry of a batch already written (nothing is written then).

        Raises `ProducerStateError` for a batch that breaks the idempotence rules, or that opens
        a transaction here which `verify_txn` (the transaction coordinator) does not know of:
        KIP-890 part 1, so a delayed write cannot land in the producer's next transaction.
        """
        verdict = self.producers.check(header, coordinator)
        if isinstance(verdict, Duplicate):
            return verdict
        if not isinstance(verdict, Append):
            raise TypeError(verdict)
        if verdict.opens_txn:
            error = ErrorCode.invalid_txn_state if verify_txn is None else verify_txn(header)
            if error != ErrorCode.none:
                raise ProducerStateError(
                    error,
                    f"producer {header.producer_id} epoch {header.producer_epoch} has no "
                    f"ongoing transaction with {self.topic}-{self.partition} in it",
                )
        self._maybe_roll(len(records), now_ms)
        written, head, rest = assign_offset(records, header, self.log_end_offset, 0)
        self.active.append(written, head, rest)
        self.producers.apply(written)
        self._written()
        return written

    def append_marker(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        now_ms: int,
    ) -> BatchHeader:
        """Write a COMMIT or ABORT marker for the producer's transaction and close it here.

        Raises `ProducerStateError` (INVALID_PRODUCER_EPOCH) for a marker from an older epoch.
        """
        self.producers.check_marker(producer_id, producer_epoch)
        data = marker_batch(
            producer_id, producer_epoch, commit, coordinator_epoch, self.log_end_offset, now_ms
        )
        self._maybe_roll(len(data), now_ms)
        header = parse_header(data)
        segment = self.active
        segment.append(header, data)
        completed = self.producers.apply_marker(header, not commit, coordinator_epoch)
        if completed is not None and not commit:
            self._index_abort(segment, completed)
        self._written()
        return header

    def _written(self) -> None:
        if not self._unsynced or self._unsynced[-1] is not self.active:
            self._unsynced.append(self.active)
        if not self.config.durable:
            self.high_watermark = self.log_end_offset
            self.producers.on_high_watermark(self.high_watermark)

    def _maybe_roll(self, incoming_bytes: int, now_ms: int) -> None:
        active = self.active
        if active.size == 0:
            return
        too_big = active.size + incoming_bytes > self.config.segment_bytes
        too_old = now_ms - active.created_ms >= self.config.segment_ms
        if too_big or too_old:
            active.sync_indexes()
            self._add_segment(self.log_end_offset, now_ms)
            self.take_snapshot()

    def _add_segment(self, base_offset: int, now_ms: int) -> None:
        segment = Segment(
            self.storage, self.directory, base_offset, self.config.index_interval_bytes
        )
        segment.created_ms = now_ms
        self.segments.append(segment)
        self.storage.sync_dir(self.directory)

    def sync_point(self) -> SyncPoint:
        point = SyncPoint(self.log_end_offset, self._unsynced)
        self._unsynced = []
        return point

    def fail_sync(self, point: SyncPoint) -> None:
        """`point.run()` raised. What it covered may not be on disk, later rounds do not sync
        those segments again, and a retried fsync may report success for pages the kernel has
        already dropped: the high watermark of this log never moves again (until a restart
        recovers it from the files)."""
        self.sync_failed = True

    def complete_sync(self, point: SyncPoint) -> bool:
        """After `point.run()`: move the high watermark. True if it moved."""
        if self.sync_failed:
            return False
        if point.log_end_offset > self.high_watermark:
            self.high_watermark = point.log_end_offset
            self.producers.on_high_watermark(self.high_watermark)
            return True
        return False

    @property
    def last_stable_offset(self) -> int:
        """Below it every transaction's outcome is decided and durable (read_committed bound)."""
        first_unstable = self.producers.first_unstable_offset()
        if first_unstable is None:
            return self.high_watermark
        return min(first_unstable, self.high_watermark)

    def aborted_transactions(self, fetch_offset: int, upper_offset: int) -> list[AbortedTxn]:
        """Aborted transactions overlapping [fetch_offset, upper_offset), for read_committed
        fetches (Kafka's LocalLog.collectAbortedTransactions)."""
        found: list[AbortedTxn] = []
        for segment in self.segments[self._segment_index(fetch_offset) :]:
            for entry in segment.txn_index.entries:
                if entry.last_offset >= fetch_offset and entry.first_offset < upper_offset:
                    found.append(entry)
                if entry.last_stable_offset >= upper_offset:
                    return found
        return found

    # ----------------------------------------------------------------- reading
    def _segment_index(self, offset: int) -> int:
        bases = [segment.base_offset for segment in self.segments]
        return max(bisect.bisect_right(bases, offset) - 1, 0)

    def read(
        self, offset: int, max_bytes: int, limit_offset: int, min_one: bool
    ) -> bytes | memoryview:
        """Whole batches from the one holding `offset`, none reaching `limit_offset`, at most
        `max_bytes` unless `min_one` and the first batch alone is larger (KIP-74).

        A view of what was read rather than a copy when its tail is cut off: fetch responses
        send the records without copying them again."""
        for segment in self.segments[self._segment_index(offset) :]:
            if segment.base_offset >= limit_offset:
                return b""
            found = segment.find_position(offset)
            if found is None:
                continue
            position, first = found
            if first.last_offset >= limit_offset:
                return b""
            data = segment.read(position, min(segment.size, position + max_bytes))
            end = 0
            for relative, header in iter_batches(data):
                if header.last_offset >= limit_offset:
                    break
                end = relative + header.size
            if end == 0 and min_one:
                return segment.read(position, position + first.size)
            return data if end == len(data) else memoryview(data)[:end]
        return b""

    def offset_for_timestamp(self, timestamp: int, limit_offset: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record below `limit_offset` whose timestamp is at
        least `timestamp` (ListOffsets by timestamp). The indexes find the batch; only that
        batch's records are decoded."""
        for segment in self.segments:
            if segment.max_timestamp < timestamp:
                continue
            start = segment.time_index.lookup(timestamp)
            _, position = segment.offset_index.lookup(start)
            for batch_position, header in segment.batches(position):
                if header.base_offset >= limit_offset:
                    return None
                if header.max_timestamp < timestamp or header.is_control:
                    continue
                batch = segment.read(batch_position, batch_position + header.size)
                for offset, record_timestamp in record_timestamps(batch):
                    if record_timestamp >= timestamp and offset < limit_offset:
                        return offset, record_timestamp
        return None

    def max_timestamp_offset(self, limit_offset: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with the largest timestamp (ListOffsets -3)."""
        best: tuple[int, int, int, int] | None = None  # timestamp, segment, position, size
        for index, segment in enumerate(self.segments):
            for batch_position, header in segment.batches():
                if header.base_offset >= limit_offset:
                    break
                if not header.is_control and (best is None or header.max_timestamp > best[0]):
                    best = (header.max_timestamp, index, batch_position, header.size)
        if best is None:
            return None
        timestamp, index, position, size = best
        batch = self.segments[index].read(position, position + size)
        for offset, record_timestamp in record_timestamps(batch):
            if record_timestamp == timestamp:
                return offset, timestamp
        return parse_header(batch).last_offset, timestamp

    def first_header(self, offset: int) -> BatchHeader | None:
        segment = self.segments[self._segment_index(offset)]
        found = segment.find_position(offset)
        return None if found is None else found[1]

    # ----------------------------------------------------------------- retention
    def apply_retention(self, now_ms: int) -> int:
        """Delete whole segments past `retention.ms` or beyond `retention.bytes`; never the
        active one, nor one holding data above the high watermark. Returns segments deleted."""
        deleted = 0
        total = self.size_bytes
        while len(self.segments) > 1:
            oldest = self.segments[0]
            if self.segments[1].base_offset > self.high_watermark:
                break
            expired = (
                self.config.retention_ms >= 0
                and oldest.max_timestamp >= 0
                and now_ms - oldest.max_timestamp > self.config.retention_ms
            )
            oversized = (
                self.config.retention_bytes >= 0
                and total - oldest.size >= self.config.retention_bytes
            )
            if not (expired or oversized):
                break
            total -= oldest.size
            self.segments.pop(0)
            if oldest in self._unsynced:
                self._unsynced.remove(oldest)
            oldest.delete(self.storage)
            deleted += 1
        return deleted


def partition_directory(data_dir: str, topic: str, partition: int) -> str:
    return os.path.join(data_dir, f"{topic}-{partition}")


__all__ = ["HEADER_BYTES", "LogConfig", "PartitionLog", "SyncPoint", "partition_directory"]
