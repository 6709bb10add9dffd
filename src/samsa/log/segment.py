"""One segment of a partition log: `<base offset>.log` plus its `.index` and `.timeindex`."""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

from samsa.log.index import OffsetIndex, TimeIndex
from samsa.log.storage import Bytes, File, Storage
from samsa.log.txn_index import TxnIndex
from samsa.protocol.batch import (
    HEADER_BYTES,
    LOG_OVERHEAD,
    MAGIC,
    BatchHeader,
    crc_ok,
    iter_batches,
    parse_header,
)

log = logging.getLogger("samsa.log")

# How much of the log a scan reads at a time.
SCAN_CHUNK_BYTES = 1 << 20
# Looking up an offset scans from the index entry below it, a few `index.interval.bytes` at most:
# reading a whole scan chunk there would read a large batch twice per fetch.
FIND_CHUNK_BYTES = 16 * 1024


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    valid_bytes: int
    truncated_bytes: int
    batches: int  # -1: loaded from its indexes, not rescanned


@dataclass(frozen=True, slots=True)
class Scan:
    """What a full read of a segment found: whole, CRC-valid batches up to `valid_bytes`, then
    (if `problem`) something that is not one, and maybe a valid batch after it at `valid_after`.

    Writes are sequential, so an invalid region with nothing valid after it (in this segment or
    a later one) is what a crash mid-write leaves: a torn tail. A valid batch after it means the
    bytes were damaged after they were written: corruption.
    """

    size: int
    valid_bytes: int
    batches: int
    next_offset: int
    problem: str | None = None
    valid_after: int | None = None


class SegmentDamaged(OSError):
    """The segment's file no longer matches what the log believes it holds (a failed write
    that could not be undone, damage found while reading): its partition must go offline. An
    OSError, so the read paths that take a log offline on an I/O error do so for it too."""


class Segment:
    def __init__(
        self,
        storage: Storage,
        directory: str,
        base_offset: int,
        index_interval_bytes: int,
        suffix: str = "",
    ) -> None:
        """`suffix` follows each file's name: the log cleaner builds a segment beside the one
        it replaces as `<base>.log.cleaned` and so on (`samsa.log.cleaner`)."""
        self.base_offset = base_offset
        self.path = os.path.join(directory, segment_name(base_offset))
        self.log: File = storage.open(self.path + ".log" + suffix)
        self.offset_index = OffsetIndex(storage.open(self.path + ".index" + suffix), base_offset)
        self.time_index = TimeIndex(storage.open(self.path + ".timeindex" + suffix), base_offset)
        self.txn_index = TxnIndex(storage.open(self.path + ".txnindex" + suffix))
        self._index_interval_bytes = index_interval_bytes
        self._bytes_since_index = 0
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.first_batch_timestamp: int | None = None
        self.created_ms = 0

    @property
    def size(self) -> int:
        return self.log.size()

    def append(self, header: BatchHeader, *parts: Bytes) -> int:
        """Append one batch whose offsets are already assigned, given as consecutive parts;
        return its file position.

        All or nothing: if a write fails (a full disk, an I/O error), what it wrote to the log
        and its indexes is cut off again and the OSError propagates; `SegmentDamaged` if even
        that fails."""
        position = self.log.size()
        index_due = self._bytes_since_index >= self._index_interval_bytes or position == 0
        marks = (self.offset_index.mark(), self.time_index.mark())
        try:
            self.log.append(*parts)
            if index_due:
                self.offset_index.append(header.base_offset, position)
                self.time_index.maybe_append(
                    max(self.max_timestamp, header.max_timestamp), header.base_offset
                )
        except OSError:
            self._undo(position, marks)
            raise
        if index_due:
            self._bytes_since_index = 0
        self._track(header)
        self._bytes_since_index += header.size
        return position

    def _undo(self, position: int, marks: tuple[int, int]) -> None:
        try:
            self.log.truncate(position)
            self.offset_index.restore(marks[0])
            self.time_index.restore(marks[1])
        except OSError as exc:
            raise SegmentDamaged(
                f"{self.path}.log: a failed write could not be undone: {exc}"
            ) from exc

    def _track(self, header: BatchHeader) -> None:
        self.next_offset = header.next_offset
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
        if self.first_batch_timestamp is None:
            self.first_batch_timestamp = header.max_timestamp

    def batches(
        self, position: int = 0, end: int | None = None, chunk_bytes: int = SCAN_CHUNK_BYTES
    ) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each whole batch from `position` (a batch start) to `end`."""
        end = self.log.size() if end is None else end
        while position < end:
            chunk = self.log.read(position, min(chunk_bytes, end - position))
            consumed = 0
            for relative, header in iter_batches(chunk):
                yield position + relative, header
                consumed = relative + header.size
            if consumed == 0:
                # A batch larger than one chunk: its header is at the start of the chunk.
                if len(chunk) < HEADER_BYTES:
                    return
                header = parse_header(chunk)
                if header.size <= HEADER_BYTES or position + header.size > end:
                    return
                yield position, header
                consumed = header.size
            position += consumed

    def find_position(self, offset: int) -> tuple[int, BatchHeader] | None:
        """Position and header of the batch holding `offset`, or None if it is past the end.

        The index entry used is checked on the way (the batch at its position must start at
        its offset): start-up checks only an index's last entry, and a damaged middle entry
        would otherwise make reads below the high watermark come back empty. A mismatch
        rebuilds the indexes from the log."""
        indexed, position = self.offset_index.lookup(offset)
        checked = position == 0  # the segment's start needs no index entry
        for batch_position, header in self.batches(position, chunk_bytes=FIND_CHUNK_BYTES):
            if not checked and header.base_offset != indexed:
                break
            checked = True
            if header.last_offset >= offset:
                return batch_position, header
        if not checked:
            self._rebuild_indexes(f"entry {indexed} -> byte {position} is not that batch's start")
            return self.find_position(offset)
        return None

    def cut(self, position: int, end: int, limit_offset: int) -> tuple[int, int]:
        """(end, next offset) of the whole batches from `position` (a batch start) that end by
        byte `end` and lie below `limit_offset`, found without reading those batches: from the
        segment's own ends, the offset index and a few batch headers. The next offset is the
        base offset of the first batch left out (the segment's next offset when none is): an
        upper bound of the last one's, as Kafka's `fetchUpperBoundOffset` is."""
        size = self.size
        cut = min(end, size)
        if limit_offset < self.next_offset:
            found = self.find_position(limit_offset)
            if found is not None:
                cut = min(cut, found[0])
        if cut < size:
            # The last whole batch ending by `cut` starts at or after the index entry below it.
            positions = self.offset_index.positions
            below = bisect.bisect_right(positions, cut) - 1
            entry = positions[below] if below >= 0 else 0
            last = max(position, min(entry, cut))
            for batch_position, header in self.batches(last, cut, FIND_CHUNK_BYTES):
                last = batch_position + header.size
            cut = last
        if cut >= size:
            return size, self.next_offset
        return cut, parse_header(self.log.read(cut, HEADER_BYTES)).base_offset

    def _rebuild_indexes(self, why: str) -> None:
        size, next_offset = self.log.size(), self.next_offset
        scan = self.scan()
        if scan.problem is not None or scan.valid_bytes != size or scan.next_offset != next_offset:
            raise SegmentDamaged(f"{self.path}.index is damaged ({why}), and so is the log")
        log.warning("%s.index is damaged (%s): rebuilt from the log", self.path, why)
        self.rebuild(size)

    def read(self, position: int, end: int) -> bytes:
        return self.log.read(position, end - position)

    def load(self, recover: bool) -> Scan | None:
        """Rebuild in-memory state from the files; None when the indexes were trusted.

        With `recover`, every batch is read and checked (length, magic, offsets, CRC), and so
        it is when the indexes are not plausible (sorted, inside the file, starting with the
        first batch, the last entry at a batch of that offset, the walk from it ending exactly
        at the end of the file; an empty index, as after a deleted file, fails too). A scan
        only reads: the caller decides what to do with what it found (`rebuild`), so a segment
        found damaged is left exactly as it was.
        """
        size = self.log.size()
        if (
            recover
            or size == 0
            or not self.offset_index.load(size, 2**63 - 1)
            or not self.offset_index.positions
            or self.offset_index.positions[0] != 0
        ):
            return self.scan()
        indexed, position = self.offset_index.lookup(2**63 - 1)
        end = position
        max_timestamp = -1
        first: BatchHeader | None = None
        last: BatchHeader | None = None
        for batch_position, header in self.batches(position):
            first = first or header
            last = header
            max_timestamp = max(max_timestamp, header.max_timestamp)
            end = batch_position + header.size
        if (
            first is None
            or last is None
            or first.base_offset != indexed
            or end != size
            or not self.time_index.load(last.next_offset)
            or not self.time_index.timestamps
        ):
            return self.scan()
        self.next_offset = last.next_offset
        timestamps = self.time_index.timestamps
        self.max_timestamp = max(max_timestamp, timestamps[-1] if timestamps else -1)
        self.first_batch_timestamp = parse_header(self.log.read(0, HEADER_BYTES)).max_timestamp
        self.txn_index.load(self.base_offset, self.next_offset)
        return None

    def scan(self) -> Scan:
        """Read every batch from the start; stop at the first that is not whole and valid, and
        look for a valid batch beyond it. Changes nothing."""
        size = self.log.size()
        valid = count = 0
        expected = self.base_offset
        problem: str | None = None
        for position, header in self.batches(0, size):
            problem = batch_problem(header, expected)
            if problem is None and not crc_ok(self.log.read(position, header.size), 0, header):
                problem = "CRC-32C mismatch"
            if problem is not None:
                break
            expected = header.next_offset
            valid = position + header.size
            count += 1
        if valid < size and problem is None:
            problem = "a partial or unreadable batch"
        valid_after = None if problem is None else self.find_valid_batch(valid + 1, expected)
        return Scan(size, valid, count, expected, problem, valid_after)

    def find_valid_batch(self, start: int, expected_offset: int) -> int | None:
        """Position of the first whole, CRC-valid batch at or after `start` whose offsets are
        not below `expected_offset`, found by trying every position whose magic byte is 2."""
        size = self.log.size()
        chunk_start = start
        while chunk_start < size:
            chunk = self.log.read(
                chunk_start, min(SCAN_CHUNK_BYTES + HEADER_BYTES, size - chunk_start)
            )
            at = chunk.find(b"\x02", MAGIC_AT)
            limit = min(len(chunk), SCAN_CHUNK_BYTES + MAGIC_AT)
            while 0 <= at < limit:
                position = chunk_start + at - MAGIC_AT
                if position + HEADER_BYTES <= size:
                    header = parse_header(self.log.read(position, HEADER_BYTES))
                    if (
                        batch_problem(header, expected_offset) is None
                        and position + header.size <= size
                        # true of every batch samsa writes; cheap, so garbage rarely costs
                        # a CRC over the length it claims
                        and header.records_count == header.last_offset_delta + 1
                        and crc_ok(self.log.read(position, header.size), 0, header)
                    ):
                        return position
                at = chunk.find(b"\x02", at + 1)
            chunk_start += SCAN_CHUNK_BYTES
        return None

    def rebuild(self, valid_bytes: int) -> None:
        """Cut the log back to `valid_bytes` (whole valid batches, as `scan` found) and rebuild
        both indexes and the in-memory state from it."""
        if valid_bytes < self.log.size():
            self.log.truncate(valid_bytes)
        self.offset_index.reset()
        self.time_index.reset()
        self.next_offset = self.base_offset
        self.max_timestamp = -1
        self.first_batch_timestamp = None
        self._bytes_since_index = 0
        for position, header in self.batches(0, valid_bytes):
            if self._bytes_since_index >= self._index_interval_bytes or position == 0:
                self.offset_index.append(header.base_offset, position)
                self.time_index.maybe_append(
                    max(self.max_timestamp, header.max_timestamp), header.base_offset
                )
                self._bytes_since_index = 0
            self._bytes_since_index += header.size
            self._track(header)
        self.txn_index.load(self.base_offset, self.next_offset)

    def sync(self) -> None:
        self.log.sync()

    def sync_indexes(self) -> None:
        self.offset_index.sync()
        self.time_index.sync()
        self.txn_index.sync()

    def close(self) -> None:
        self.log.close()
        self.offset_index.close()
        self.time_index.close()
        self.txn_index.close()

    def delete(self, storage: Storage) -> None:
        """The `.log` file goes last: an index without its log is evidence of a lost segment
        (see `PartitionLog.open`), so a crash halfway must not leave one behind."""
        self.close()
        for suffix in (".index", ".timeindex", ".txnindex", ".log"):
            storage.remove(self.path + suffix)


# Where the magic byte sits in a batch: after baseOffset i64, batchLength i32, leaderEpoch i32.
MAGIC_AT = 16


def batch_problem(header: BatchHeader, expected_offset: int) -> str | None:
    """Why a batch header read from the log cannot be a batch the log wrote, or None."""
    if header.magic != MAGIC:
        return f"magic {header.magic}"
    if header.batch_length < HEADER_BYTES - LOG_OVERHEAD:
        return f"batch length {header.batch_length}"
    if header.base_offset < expected_offset:
        return f"offset {header.base_offset} below {expected_offset}"
    if header.last_offset_delta < 0:
        return f"last offset delta {header.last_offset_delta}"
    return None
