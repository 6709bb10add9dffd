"""One segment of a partition log: `<base offset>.log` plus its `.index` and `.timeindex`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from samsa.log.index import OffsetIndex, TimeIndex
from samsa.log.storage import Bytes, File, Storage
from samsa.log.txn_index import TxnIndex
from samsa.protocol.batch import HEADER_BYTES, BatchHeader, crc_ok, iter_batches, parse_header

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
    batches: int


class Segment:
    def __init__(
        self, storage: Storage, directory: str, base_offset: int, index_interval_bytes: int
    ) -> None:
        self.base_offset = base_offset
        self.path = os.path.join(directory, segment_name(base_offset))
        self.log: File = storage.open(self.path + ".log")
        self.offset_index = OffsetIndex(storage.open(self.path + ".index"), base_offset)
        self.time_index = TimeIndex(storage.open(self.path + ".timeindex"), base_offset)
        self.txn_index = TxnIndex(storage.open(self.path + ".txnindex"))
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
        return its file position."""
        position = self.log.size()
        if self._bytes_since_index >= self._index_interval_bytes or position == 0:
            self.offset_index.append(header.base_offset, position)
            self.time_index.maybe_append(
                max(self.max_timestamp, header.max_timestamp), header.base_offset
            )
            self._bytes_since_index = 0
        self.log.append(*parts)
        self._track(header)
        self._bytes_since_index += header.size
        return position

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
        """Position and header of the batch holding `offset`, or None if it is past the end."""
        _, position = self.offset_index.lookup(offset)
        for batch_position, header in self.batches(position, chunk_bytes=FIND_CHUNK_BYTES):
            if header.last_offset >= offset:
                return batch_position, header
        return None

    def read(self, position: int, end: int) -> bytes:
        return self.log.read(position, end - position)

    def load(self, recover: bool) -> RecoveryReport:
        """Rebuild in-memory state from the files.

        With `recover`, every batch is checked (length, magic, CRC) and a torn or corrupt tail is
        cut off, then both indexes are rebuilt. Otherwise the indexes are checked for plausibility
        (sorted, inside the file, starting with the first batch, the last entry at a batch of
        that offset, the walk from it ending exactly at the end of the file) and the segment is
        rescanned only when they fail. Both indexes always have an entry for the first batch,
        so an empty one (a deleted file) fails too.
        """
        size = self.log.size()
        if (
            recover
            or size == 0
            or not self.offset_index.load(size, 2**63 - 1)
            or not self.offset_index.positions
            or self.offset_index.positions[0] != 0
        ):
            return self._recover(size)
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
            return self._recover(size)
        self.next_offset = last.next_offset
        timestamps = self.time_index.timestamps
        self.max_timestamp = max(max_timestamp, timestamps[-1] if timestamps else -1)
        self.first_batch_timestamp = parse_header(self.log.read(0, HEADER_BYTES)).max_timestamp
        self.txn_index.load(self.base_offset, self.next_offset)
        return RecoveryReport(size, 0, -1)

    def _recover(self, size: int) -> RecoveryReport:
        self.offset_index.reset()
        self.time_index.reset()
        self.next_offset = self.base_offset
        self.max_timestamp = -1
        self.first_batch_timestamp = None
        self._bytes_since_index = 0
        valid = 0
        count = 0
        expected = self.base_offset
        for position, header in self.batches(0, size):
            if header.magic != 2 or header.base_offset < expected or header.last_offset_delta < 0:
                break
            if not crc_ok(self.log.read(position, header.size), 0, header):
                break
            if self._bytes_since_index >= self._index_interval_bytes or position == 0:
                self.offset_index.append(header.base_offset, position)
                self.time_index.maybe_append(
                    max(self.max_timestamp, header.max_timestamp), header.base_offset
                )
                self._bytes_since_index = 0
            self._bytes_since_index += header.size
            self._track(header)
            expected = header.next_offset
            valid = position + header.size
            count += 1
        if valid < size:
            self.log.truncate(valid)
        self.txn_index.load(self.base_offset, self.next_offset)
        return RecoveryReport(valid, size - valid, count)

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
        self.close()
        for suffix in (".log", ".index", ".timeindex", ".txnindex"):
            storage.remove(self.path + suffix)
