"""The log of one topic partition: ordered segments, offsets, high watermark, retention.

Offsets: `log_start_offset` <= `high_watermark` <= `log_end_offset`. Appends advance the log end
offset at once; the high watermark only moves to a `SyncPoint` that has been fsynced, so a
consumer never reads a batch that a crash could take back (invariant 2). With syncing relaxed
(`durable=False`), the high watermark follows the log end offset.

Nothing acknowledged is lost or altered silently (invariant 9):
- A write that fails is undone (the segment cut back to its size before it), so no partial
  batch is left for later writes to land behind; if it cannot be undone, or after any failed
  fsync (the page cache's state is then unknown: PostgreSQL's and Kafka's "fsyncgate" lesson),
  the log goes `offline` until a restart recovers it from the files. An offline log refuses
  every read and write with KAFKA_STORAGE_ERROR.
- Opening tells a torn tail (an invalid batch with nothing valid after it anywhere in the log:
  what a crash mid-write leaves) from corruption (an invalid batch followed by a valid one, a
  gap between segments, a missing segment, an index or snapshot whose segment is gone). The
  first is cut off with a WARNING; the second raises `CorruptLog` and the files are left
  exactly as found, for `samsa log repair`.
- The log start offset is checkpointed (`log-start-offset`) before retention deletes a segment,
  so a missing first segment is told from a deleted one.

The log start offset is where reads may begin. Retention moves it to a segment's base offset;
DeleteRecords (`delete_records`, Kafka's `maybeIncrementLogStartOffset`) to any offset up to the
high watermark, so it may lie inside the first segment: a read below it is out of range, and the
segment goes once every offset in it is below the log start.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from samsa.config import DEFAULTS
from samsa.log import swap
from samsa.log.compaction import CompactionConfig
from samsa.log.segment import RecoveryReport, Scan, Segment, SegmentDamaged, segment_name
from samsa.log.storage import Bytes, FileRegion, OsFile, OutOfDescriptors, Storage
from samsa.log.txn_index import AbortedTxn
from samsa.protocol.batch import (
    HEADER_BYTES,
    BatchHeader,
    assign_offset,
    iter_batches,
    parse_header,
)
from samsa.protocol.compression import DecompressionFailed
from samsa.protocol.control import ABORT, marker_batch, marker_type
from samsa.protocol.records import record_timestamps
from samsa.protocol.records_walk import RecordsInvalid
from samsa.ratelog import RateLimitedLog
from samsa.state.producers import (
    Append,
    CompletedTxn,
    Duplicate,
    ProducerStateError,
    ProducerStateManager,
)

log = logging.getLogger("samsa.log")
# A full disk (or no descriptor) fails every write that meets it: one line per interval.
_limited = RateLimitedLog(log)

SNAPSHOT_SUFFIX = ".snapshot"
SNAPSHOTS_RETAINED = 2
LOG_START_FILE = "log-start-offset"
SEGMENT_SUFFIXES = (".log", ".index", ".timeindex", ".txnindex")
# A zero-copy read returns a `FileRegion` from this size up; below it reading the bytes costs
# less than waiting for the socket to drain before an `os.sendfile`.
ZERO_COPY_MIN_BYTES = 64 * 1024


class StorageError(Exception):
    """A read or write this log cannot do: the disk failed it, or the log is offline. Clients
    get KAFKA_STORAGE_ERROR for the partition; nothing was written."""

    error = ErrorCode.kafka_storage_error


class OffsetOutOfRange(Exception):
    """DeleteRecords asked for a log start offset beyond the high watermark (or below 0): the
    client gets OFFSET_OUT_OF_RANGE for the partition; nothing changed."""

    error = ErrorCode.offset_out_of_range


class CorruptLog(Exception):
    """The files of a partition hold damage that recovery must not cut away silently: the
    partition stays offline, its files untouched, until `samsa log repair`."""

    def __init__(self, path: str, position: int | None, reason: str) -> None:
        where = f"{path} at byte {position}" if position is not None else path
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.position = position


@dataclass(frozen=True, slots=True)
class LogConfig:
    """One partition's settings, resolved from its topic's and the broker's (defaults: the
    broker's, `samsa.config.DEFAULTS`)."""

    segment_bytes: int = DEFAULTS.log_segment_bytes
    segment_ms: int = DEFAULTS.log_roll_ms
    retention_ms: int = DEFAULTS.log_retention_ms  # -1: keep forever
    retention_bytes: int = DEFAULTS.log_retention_bytes  # -1: no size limit
    index_interval_bytes: int = DEFAULTS.log_index_interval_bytes
    durable: bool = DEFAULTS.durable
    producer_id_expiration_ms: int = DEFAULTS.producer_id_expiration_ms
    # message.decompressed.max.bytes: what a read (a timestamp lookup) may inflate a batch to.
    inflated_bytes_max: int = DEFAULTS.message_decompressed_max_bytes
    # cleanup.policy: "delete" in it (retention applies), "compact" in it (the cleaner's
    # settings in `compaction`; `samsa.log.cleaner`).
    cleanup_delete: bool = True
    compaction: CompactionConfig = field(default_factory=CompactionConfig)

    @property
    def roll_ms(self) -> int:
        """segment.ms, bounded by max.compaction.lag.ms on a compacted topic (Kafka's
        `LogConfig.maxSegmentMs`): the active segment is never cleaned, so it must roll for
        its records to be compacted within the lag."""
        if self.compaction.compact and self.compaction.max_compaction_lag_ms > 0:
            return min(self.segment_ms, self.compaction.max_compaction_lag_ms)
        return self.segment_ms


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
        # Where reads may begin: the checkpoint's, or the first segment's base offset if later.
        self._log_start_offset = 0
        self.recovery: list[RecoveryReport] = []
        self._unsynced: list[Segment] = []
        # The log end offset the last sync point taken covers: once that fsync ends, the high
        # watermark is there (a wait up to it needs no further round).
        self.sync_taken_offset = 0
        # Why the log refuses reads and writes (None: it serves); see `go_offline`.
        self.offline: str | None = None
        self.deleted = False  # its topic was deleted: requests still holding it find it gone
        self.producers = ProducerStateManager(config.producer_id_expiration_ms)
        # The log cleaner's first dirty offset, as its checkpoint holds it (`samsa.log.swap`).
        self.cleaner_first_dirty = 0
        self.batches_replayed = 0

    @property
    def name(self) -> str:
        return f"{self.topic}-{self.partition}"

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
        create: bool = True,
    ) -> PartitionLog:
        """Open the log; without `create` (a log the topics metadata lists) its directory and
        at least one segment must exist. With `recover` (after an unclean
        shutdown) the newest segment is rescanned; any segment whose indexes do not fit its
        file is too. A torn tail is cut off; damage raises `CorruptLog` with nothing changed.
        """
        log = cls(storage, directory, topic, partition, config)
        if not create and not storage.exists(directory):
            raise CorruptLog(directory, None, "the partition's directory is missing")
        storage.makedirs(directory)
        try:
            log._load_segments(now_ms, recover, create)
            if recover:
                # After a crash the files may hold writes that were never fsynced (the process
                # died, the page cache did not). They become the high watermark below, so they
                # must be made durable first: another crash must not take back what readers
                # may now see.
                for segment in log.segments:
                    segment.sync()
        except (CorruptLog, OSError):
            log.close_files()
            raise
        log.high_watermark = log.log_end_offset
        log._load_producer_state(now_ms, strict=not recover)
        return log

    @classmethod
    def offline_placeholder(
        cls,
        storage: Storage,
        directory: str,
        topic: str,
        partition: int,
        config: LogConfig,
        reason: str,
    ) -> PartitionLog:
        """A log that could not be opened: it holds no files and answers KAFKA_STORAGE_ERROR."""
        log = cls(storage, directory, topic, partition, config)
        log.offline = reason
        return log

    def _load_segments(self, now_ms: int, recover: bool, create: bool) -> None:
        try:
            swap.recover(self.storage, self.directory)
            first_dirty, compacted_below = swap.read_checkpoint(self.storage, self.directory)
            self.cleaner_first_dirty = first_dirty
        except swap.CleanerFilesDamaged as exc:
            raise CorruptLog(self.directory, None, str(exc)) from None
        names = set(self.storage.listdir(self.directory))
        bases = _numbered(names, ".log")
        start = self._checkpointed_start()
        first = 0 if start is None else start
        self._log_start_offset = first
        kept = first_kept_segment(bases, first)
        self._finish_deletions(names, bases, kept)
        bases = [base for base in bases if base >= kept]
        self._check_orphans(names, set(bases), kept)
        if not bases:
            if not create:
                raise CorruptLog(self.directory, None, "no segment file: the log is gone")
            self._add_segment(first, now_ms)
            return
        if bases[0] > first:
            raise CorruptLog(
                os.path.join(self.directory, segment_name(first) + ".log"),
                None,
                f"segment missing: the log starts at offset {first}, its first segment at "
                f"{bases[0]}",
            )
        scans: list[Scan | None] = []
        for i, base in enumerate(bases):
            segment = Segment(self.storage, self.directory, base, self.config.index_interval_bytes)
            self.segments.append(segment)
            routine = recover and i == len(bases) - 1
            scan = segment.load(recover=routine)
            if scan is not None and not routine and segment.size:
                log.warning(
                    "%s: the indexes of %s.log do not match it: rescanned and rebuilt",
                    self.name,
                    segment.path,
                )
            scans.append(scan)
        self._settle_scans(scans)
        for segment in self.segments:
            # segment.ms counts from the segment's first batch (Kafka's rollingBasedTimestamp),
            # so a restart does not reset it.
            first_ts = segment.first_batch_timestamp
            segment.created_ms = now_ms if first_ts is None else min(first_ts, now_ms)
        for previous, segment in zip(self.segments, self.segments[1:], strict=False):
            # Below the cleaner's checkpoint a gap is records compaction removed.
            gap_ok = previous.next_offset < segment.base_offset <= compacted_below
            if previous.next_offset != segment.base_offset and not gap_ok:
                raise CorruptLog(
                    segment.path + ".log",
                    None,
                    f"offsets {previous.next_offset} to {segment.base_offset - 1} are missing "
                    f"between this segment and the one before it",
                )
        if self.log_end_offset < first:
            self._start_over(first, now_ms, recover)

    def _start_over(self, start: int, now_ms: int, recover: bool) -> None:
        """The log ends below its checkpointed start. After a crash that is a tail the crash
        took back (unsynced, `durable=False`) and DeleteRecords had already deleted: as Kafka's
        LogLoader, the segments go and the log starts empty at its start. After a clean
        shutdown everything was synced: the log lost its end."""
        last = self.active
        if not recover:
            raise CorruptLog(
                last.path + ".log",
                None,
                f"the log ends at offset {self.log_end_offset}, below its start {start}",
            )
        log.warning(
            "%s: the log ends at offset %d, below its start %d (records lost in the crash were "
            "deleted already): it starts over, empty, at %d",
            self.name,
            self.log_end_offset,
            start,
            start,
        )
        for segment in self.segments:
            segment.delete(self.storage)
        self.segments.clear()
        self._add_segment(start, now_ms)

    def _settle_scans(self, scans: list[Scan | None]) -> None:
        """Rebuild every rescanned segment; cut a torn tail; refuse corruption."""
        damaged = next((i for i, scan in enumerate(scans) if scan and scan.problem), None)
        for i, scan in enumerate(scans):
            segment = self.segments[i]
            if scan is None:
                self.recovery.append(RecoveryReport(segment.size, 0, -1))
            elif damaged is None or i < damaged:
                segment.rebuild(scan.valid_bytes)
                self.recovery.append(RecoveryReport(scan.valid_bytes, 0, scan.batches))
        if damaged is None:
            return
        scan = scans[damaged]
        assert scan is not None and scan.problem is not None
        segment = self.segments[damaged]
        later = self.segments[damaged + 1 :]
        valid_later = next(
            (
                s
                for s, later_scan in zip(later, scans[damaged + 1 :], strict=True)
                if (later_scan is None and s.size > 0)
                or (later_scan is not None and (later_scan.batches or later_scan.valid_after))
            ),
            None,
        )
        if scan.valid_after is not None or valid_later is not None:
            found = (
                f"a valid batch at byte {scan.valid_after} of this segment"
                if scan.valid_after is not None
                else f"valid data in the later segment {valid_later.path}.log"
                if valid_later is not None
                else ""
            )
            raise CorruptLog(
                segment.path + ".log",
                scan.valid_bytes,
                f"{scan.problem} after offset {scan.next_offset - 1}, followed by {found}: "
                "corruption, not a torn write",
            )
        # A torn tail: nothing valid follows, so nothing after it was ever acknowledged.
        removed = scan.size - scan.valid_bytes + sum(s.size for s in later)
        log.warning(
            "%s: torn tail cut off in %s.log at byte %d (%s): %d byte(s) removed, the log now "
            "ends at offset %d",
            self.name,
            segment.path,
            scan.valid_bytes,
            scan.problem,
            removed,
            scan.next_offset,
        )
        segment.rebuild(scan.valid_bytes)
        self.recovery.append(
            RecoveryReport(scan.valid_bytes, scan.size - scan.valid_bytes, scan.batches)
        )
        for dropped in later:
            log.warning("%s: removing %s.log, which held no whole batch", self.name, dropped.path)
            dropped.delete(self.storage)
            self.recovery.append(RecoveryReport(0, dropped.size, 0))
        del self.segments[damaged + 1 :]

    def _checkpointed_start(self) -> int | None:
        raw = self.storage.read_all(os.path.join(self.directory, LOG_START_FILE))
        if raw is None:
            return None
        text = raw.decode(errors="replace").strip()
        if not text.isdigit():
            raise CorruptLog(
                os.path.join(self.directory, LOG_START_FILE), None, f"unreadable: {text[:40]!r}"
            )
        return int(text)

    def _finish_deletions(self, names: set[str], bases: list[int], kept: int) -> None:
        """Segments before `kept` lie wholly below the checkpointed log start: retention or
        DeleteRecords checkpointed the new start and a crash came before they were deleted.
        Finish the job."""
        for base in bases:
            if base < kept:
                log.warning(
                    "%s: finishing an interrupted deletion of segment %s (below log start %d)",
                    self.name,
                    segment_name(base),
                    self._log_start_offset,
                )
                for suffix in (*SEGMENT_SUFFIXES[1:], SEGMENT_SUFFIXES[0]):
                    self.storage.remove(os.path.join(self.directory, segment_name(base) + suffix))
        for suffix in SEGMENT_SUFFIXES[1:]:
            for base in _numbered(names, suffix):
                if base < kept:
                    self.storage.remove(os.path.join(self.directory, segment_name(base) + suffix))

    def _check_orphans(self, names: set[str], bases: set[int], kept: int) -> None:
        """An index without its segment: the segment was lost (deletion removes it last)."""
        for suffix in SEGMENT_SUFFIXES[1:]:
            for base in _numbered(names, suffix):
                if base not in bases and base >= kept:
                    raise CorruptLog(
                        os.path.join(self.directory, segment_name(base) + ".log"),
                        None,
                        f"segment missing: its {suffix} file is there, the log file is not",
                    )

    def close_files(self) -> None:
        for segment in self.segments:
            segment.close()
        self.segments.clear()

    # ----------------------------------------------------------------- producer state
    def _snapshot_offsets(self) -> list[int]:
        return sorted(
            int(name[: -len(SNAPSHOT_SUFFIX)])
            for name in self.storage.listdir(self.directory)
            if name.endswith(SNAPSHOT_SUFFIX) and name[: -len(SNAPSHOT_SUFFIX)].isdigit()
        )

    def _snapshot_path(self, offset: int) -> str:
        return os.path.join(self.directory, segment_name(offset) + SNAPSHOT_SUFFIX)

    def _load_producer_state(self, now_ms: int, strict: bool) -> None:
        """Newest valid snapshot at or below the log end, then replay of the batches after it.

        After a crash, a snapshot past the log end describes writes the crash took back: it is
        deleted, as is a damaged one (Kafka's ProducerStateManager.truncateAndReload does the
        same). After a clean shutdown (`strict`) every write was synced, so a snapshot past the
        log end means the log lost its end: corruption.
        """
        start = self.log_start_offset
        damaged = [s for s in self.segments if s.txn_index.damaged]
        for segment in damaged:
            log.warning(
                "%s: %s.txnindex is damaged: replaying the whole log to rebuild it",
                self.name,
                segment.path,
            )
        for offset in [] if damaged else reversed(self._snapshot_offsets()):
            path = self._snapshot_path(offset)
            if strict and offset > self.log_end_offset:
                damage = CorruptLog(
                    path,
                    None,
                    f"a producer snapshot at offset {offset} but the log ends at "
                    f"{self.log_end_offset}: its last segment lost data",
                )
                self.close_files()
                raise damage
            if offset > self.log_end_offset:
                log.warning("%s: removing %s, taken past the recovered log end", self.name, path)
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

    def close(self) -> bool:
        """Snapshot, sync and close; False if something could not be made durable (then the
        next start must recover, so no clean-shutdown marker may be written)."""
        if self.offline is not None:
            # Not synced (an offline log is never trusted again): the next start must rescan
            # it from what is really on disk, not take the page cache or its indexes for it.
            self.close_files()
            return False
        durable = True
        for segment in self.segments:
            try:
                segment.sync()
                segment.sync_indexes()
            except OSError as exc:
                log.error("%s: fsync at shutdown failed: %s", self.name, exc)
                durable = False
        # Only after everything is durable: a snapshot says "no need to replay what is before
        # me", and the aborted-transaction index entries before it are rebuilt only by a replay.
        if durable:
            try:
                self.take_snapshot()
            except OSError as exc:  # producer state is rebuilt by replay: it costs only time
                log.warning("%s: no producer snapshot at shutdown: %s", self.name, exc)
        self.close_files()
        return durable

    def delete(self) -> None:
        self.close_files()
        self.storage.rmtree(self.directory)

    def go_offline(self, reason: str) -> None:
        """Refuse every read and write from now until a restart recovers the log from its files.
        The high watermark stays where it is: nothing above it was acknowledged."""
        if self.offline is None:
            self.offline = reason
            log.error("%s is offline: %s", self.name, reason)

    def read_failed(self, exc: OSError) -> None:
        """A read raised `exc`: the file no longer reads as written, so the log goes offline;
        unless no descriptor could be had (`OutOfDescriptors`), which the disk is not to blame
        for: that read alone fails."""
        if not isinstance(exc, OutOfDescriptors):
            self.go_offline(f"a read failed: {exc}")

    def check_online(self) -> None:
        if self.offline is not None:
            raise StorageError(f"{self.name} is offline: {self.offline}")

    # ----------------------------------------------------------------- offsets
    @property
    def active(self) -> Segment:
        return self.segments[-1]

    @property
    def log_start_offset(self) -> int:
        if not self.segments:
            return self._log_start_offset
        return max(self._log_start_offset, self.segments[0].base_offset)

    @property
    def log_end_offset(self) -> int:
        return self.active.next_offset if self.segments else 0

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
        self.check_online()
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
        written, head, rest = assign_offset(records, header, self.log_end_offset, 0)
        self._write(len(records), now_ms, written, head, rest)
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
        self.check_online()
        self.producers.check_marker(producer_id, producer_epoch)
        data = marker_batch(
            producer_id, producer_epoch, commit, coordinator_epoch, self.log_end_offset, now_ms
        )
        header = parse_header(data)
        self._write(len(data), now_ms, header, data)
        segment = self.active
        completed = self.producers.apply_marker(header, not commit, coordinator_epoch)
        if completed is not None and not commit:
            try:
                self._index_abort(segment, completed)
            except OSError as exc:
                # The marker is written and the producer state moved on: the index cannot be
                # left short of it, and the write cannot be taken back now.
                self.go_offline(f"the aborted-transaction index could not be written: {exc}")
        self._written()
        return header

    def _write(self, size: int, now_ms: int, header: BatchHeader, *parts: Bytes) -> None:
        """Roll if due, then append one batch: all of it or, raising `StorageError`, none.

        A failed append was cut back by the segment (the log stays online, and writes resume
        once the disk has room); one that could not be cut back, or a failed roll that left
        files behind it cannot remove, takes the log offline."""
        segments = len(self.segments)
        try:
            self._maybe_roll(size, now_ms)
            self.active.append(header, *parts)
        except SegmentDamaged as exc:
            self.go_offline(str(exc))
            raise StorageError(str(exc)) from exc
        except OSError as exc:
            self._undo_roll(segments)
            _limited.warning(
                "%s: write of offset %d failed and was undone: %s",
                self.name,
                header.base_offset,
                exc,
            )
            raise StorageError(f"{self.name}: write failed: {exc}") from exc

    def _undo_roll(self, segments: int) -> None:
        while len(self.segments) > segments:
            added = self.segments.pop()
            if added in self._unsynced:
                self._unsynced.remove(added)
            try:
                added.delete(self.storage)
            except OSError as exc:
                self.go_offline(f"a segment of a failed roll could not be removed: {exc}")

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
        too_old = now_ms - active.created_ms >= self.config.roll_ms
        if too_big or too_old:
            # The rolled segment is made durable first: a crash must not take back its tail
            # while a later segment survives (a gap no recovery can tell from lost data, now
            # that segments roll often on compacted topics). A failed fsync is never retried
            # (see `fail_sync`): the log goes offline.
            try:
                active.sync()
            except OSError as exc:
                raise SegmentDamaged(f"{active.path}.log: fsync at roll failed: {exc}") from exc
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

    def is_synced(self, segment: Segment) -> bool:
        """No fsync round still has to cover `segment` (one in flight holds it until done)."""
        return segment not in self._unsynced

    def sync_point(self) -> SyncPoint:
        point = SyncPoint(self.log_end_offset, self._unsynced)
        self._unsynced = []
        self.sync_taken_offset = point.log_end_offset
        return point

    def fail_sync(self, point: SyncPoint, reason: str = "fsync failed") -> None:
        """`point.run()` raised. What it covered may not be on disk, later rounds do not sync
        those segments again, and a retried fsync may report success for pages the kernel has
        already dropped: the log goes offline, its high watermark never moves again (until a
        restart recovers it from the files)."""
        self.go_offline(reason)

    def never_durable(self, offset: int) -> bool:
        """A wait up to `offset` can never be met: the log is offline, or the offset lies past
        its end (a write the disk refused and the log undid)."""
        return self.offline is not None or offset > self.log_end_offset

    @property
    def sync_failed(self) -> bool:
        return self.offline is not None

    def complete_sync(self, point: SyncPoint) -> bool:
        """After `point.run()`: move the high watermark. True if it moved."""
        if self.offline is not None:
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
        # A transaction DeleteRecords cut into is unstable from the log start on, as in Kafka's
        # maybeIncrementFirstUnstableOffset: the LSO never lies below the log start.
        return min(max(first_unstable, self.log_start_offset), self.high_watermark)

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
    def batches(self, from_offset: int, upto_offset: int) -> Iterator[tuple[BatchHeader, bytes]]:
        """Every whole batch that holds an offset in [from_offset, upto_offset), in log order,
        as (header, bytes): how the coordinators replay their logs, never through segments."""
        for segment in self.segments[self._segment_index(from_offset) :]:
            if segment.base_offset >= upto_offset:
                return
            found = segment.find_position(from_offset)
            if found is None:
                continue
            for position, header in segment.batches(found[0]):
                if header.base_offset >= upto_offset:
                    return
                yield header, segment.read(position, position + header.size)

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
        found = self._first_batch(offset, limit_offset)
        if found is None:
            return b""
        segment, position, first = found
        data = segment.read(position, min(segment.size, position + max_bytes))
        end = 0
        for relative, header in iter_batches(data):
            if header.last_offset >= limit_offset:
                break
            end = relative + header.size
        if end == 0 and min_one:
            return segment.read(position, position + first.size)
        return data if end == len(data) else memoryview(data)[:end]

    def read_zero_copy(
        self, offset: int, max_bytes: int, limit_offset: int, min_one: bool
    ) -> bytes | memoryview | FileRegion:
        """What `read` returns, but from `ZERO_COPY_MIN_BYTES` up not read at all: a
        `FileRegion` of the segment, for the caller to send from the file and close."""
        found = self._first_batch(offset, limit_offset)
        if found is None:
            return b""
        segment, position, first = found
        if not isinstance(segment.log, OsFile):  # a simulated disk
            return self.read(offset, max_bytes, limit_offset, min_one)
        end_max = min(segment.size, position + max_bytes)
        return self._region(segment, segment.log, position, first, end_max, limit_offset, min_one)

    def _first_batch(
        self, offset: int, limit_offset: int
    ) -> tuple[Segment, int, BatchHeader] | None:
        """The segment, position and header of the batch holding `offset`; None if there is
        none below `limit_offset`."""
        for segment in self.segments[self._segment_index(offset) :]:
            if segment.base_offset >= limit_offset:
                return None
            found = segment.find_position(offset)
            if found is None:
                continue
            position, first = found
            if first.last_offset >= limit_offset:
                return None
            return segment, position, first
        return None

    def _region(
        self,
        segment: Segment,
        file: OsFile,
        position: int,
        first: BatchHeader,
        end_max: int,
        limit_offset: int,
        min_one: bool,
    ) -> bytes | FileRegion:
        end, next_offset = segment.cut(position, end_max, limit_offset)
        if end == position:
            if not min_one:
                return b""
            end, next_offset = position + first.size, first.next_offset
        if end - position < ZERO_COPY_MIN_BYTES:
            return segment.read(position, end)
        region = file.region(position, end - position)
        region.next_offset = next_offset
        return region

    def offset_for_timestamp(self, timestamp: int, limit_offset: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record below `limit_offset` whose timestamp is at
        least `timestamp` (ListOffsets by timestamp), none below the log start (Kafka's
        `findOffsetByTimestamp` from the log start). The indexes find the batch; only that
        batch's records are decoded."""
        log_start = self.log_start_offset
        for segment in self.segments:
            if segment.max_timestamp < timestamp:
                continue
            start = max(segment.time_index.lookup(timestamp), log_start)
            _, position = segment.offset_index.lookup(start)
            for batch_position, header in segment.batches(position):
                if header.base_offset >= limit_offset:
                    return None
                if header.max_timestamp < timestamp or header.is_control:
                    continue
                if header.last_offset < log_start:
                    continue
                batch = segment.read(batch_position, batch_position + header.size)
                stamps = self._timestamps(batch, header)
                if stamps is None:  # undecodable within the bound: the batch as a whole
                    return max(header.base_offset, log_start), header.max_timestamp
                for offset, record_timestamp in stamps:
                    if record_timestamp >= timestamp and log_start <= offset < limit_offset:
                        return offset, record_timestamp
        return None

    def _timestamps(self, batch: bytes, header: BatchHeader) -> list[tuple[int, int]] | None:
        """The records' (offset, timestamp), inflating the batch no further than the bound;
        None (logged) for a batch that cannot be decoded so: one stored before records were
        validated, or under a larger `message.decompressed.max.bytes`."""
        try:
            return record_timestamps(batch, self.config.inflated_bytes_max)
        except (DecompressionFailed, RecordsInvalid) as exc:
            _limited.warning(
                "%s: the records of the batch at offset %d are not read (%s); a timestamp "
                "lookup answers with the batch's first offset and max timestamp",
                self.name,
                header.base_offset,
                exc,
            )
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
        header = parse_header(batch)
        for offset, record_timestamp in self._timestamps(batch, header) or ():
            if record_timestamp == timestamp:
                return offset, timestamp
        return header.last_offset, timestamp

    def first_header(self, offset: int) -> BatchHeader | None:
        segment = self.segments[self._segment_index(offset)]
        found = segment.find_position(offset)
        return None if found is None else found[1]

    # ----------------------------------------------------------------- retention
    def apply_retention(self, now_ms: int) -> int:
        """Delete whole segments past `retention.ms` or beyond `retention.bytes`; never the
        active one, nor one holding data above the high watermark. Returns segments deleted.

        The new log start is checkpointed first: a crash before the files are gone leaves
        segments below it, which the next start deletes, never a log that looks shortened."""
        if self.offline is not None or not self.config.cleanup_delete:
            return 0
        doomed = 0
        total = self.size_bytes
        while doomed < len(self.segments) - 1:
            oldest = self.segments[doomed]
            if self.segments[doomed + 1].base_offset > self.high_watermark:
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
            doomed += 1
        if doomed:
            start = max(self.segments[doomed].base_offset, self.log_start_offset)
            try:
                self._checkpoint_start(start)
            except OSError as exc:
                log.warning(
                    "%s: retention postponed, log start not checkpointed: %s", self.name, exc
                )
                return 0
            self._delete_oldest(doomed)
        return doomed

    def delete_records(self, offset: int) -> bool:
        """DeleteRecords: move the log start offset up to `offset` (Kafka's
        `maybeIncrementLogStartOffset`) and delete the segments wholly below it. True if it
        moved; an offset at or below the log start changes nothing.

        The high watermark bounds it, not the last stable offset: Kafka lets a client delete
        into an open transaction, whose records then read from the log start on. Producer state
        is kept. Raises `OffsetOutOfRange` beyond the high watermark, `StorageError` when the
        log is offline or the new start cannot be checkpointed (nothing changed then)."""
        self.check_online()
        if not 0 <= offset <= self.high_watermark:
            raise OffsetOutOfRange(
                f"cannot move the log start of {self.name} to {offset}: the high watermark "
                f"is {self.high_watermark}"
            )
        if offset <= self.log_start_offset:
            return False
        try:
            self._checkpoint_start(offset)
        except OSError as exc:
            raise StorageError(f"{self.name}: log start not checkpointed: {exc}") from exc
        doomed = 0
        while doomed < len(self.segments) - 1 and self.segments[doomed + 1].base_offset <= offset:
            doomed += 1
        self._delete_oldest(doomed)
        return True

    def _checkpoint_start(self, start: int) -> None:
        """Durably record the new log start before any segment below it goes: a crash between
        the two leaves segments the next start deletes, never a log that looks shortened."""
        self.storage.write_atomic(
            os.path.join(self.directory, LOG_START_FILE), f"{start}\n".encode()
        )
        self._log_start_offset = start

    def _delete_oldest(self, count: int) -> None:
        for oldest in self.segments[:count]:
            if oldest in self._unsynced:
                self._unsynced.remove(oldest)
            oldest.delete(self.storage)
        del self.segments[:count]


def first_kept_segment(bases: list[int], log_start_offset: int) -> int:
    """The base offset of the segment holding `log_start_offset` (the largest at or below it):
    the segments before it hold only offsets below the log start. `log_start_offset` itself
    when no segment begins at or below it (none is left, or the first one is missing)."""
    holding = [base for base in bases if base <= log_start_offset]
    return holding[-1] if holding else log_start_offset


def _numbered(names: set[str], suffix: str) -> list[int]:
    """The base offsets of the files named `<20 digits><suffix>`, sorted."""
    return sorted(
        int(name[: -len(suffix)])
        for name in names
        if name.endswith(suffix) and name[: -len(suffix)].isdigit()
    )


def partition_directory(data_dir: str, topic: str, partition: int) -> str:
    return os.path.join(data_dir, f"{topic}-{partition}")


__all__ = ["HEADER_BYTES", "LogConfig", "PartitionLog", "SyncPoint", "partition_directory"]
