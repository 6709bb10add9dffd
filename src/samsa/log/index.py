"""Sparse offset and time indexes of one segment.

Both live in memory and are appended to their files as they grow. They are derived data: a
missing or damaged index file is rebuilt from the segment's batches (see `Segment.load`).

- offset index: (relative base offset i32, position i32) every `index.interval.bytes` of log.
- time index: (max timestamp so far i64, relative base offset i32), added at the same interval
  whenever the segment's max timestamp has grown since the last entry.
"""

from __future__ import annotations

import bisect
import struct

from samsa.log.storage import File

_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")


class OffsetIndex:
    def __init__(self, file: File, base_offset: int) -> None:
        self._file = file
        self.base_offset = base_offset
        self.offsets: list[int] = []
        self.positions: list[int] = []

    def append(self, offset: int, position: int) -> None:
        self._file.append(_OFFSET_ENTRY.pack(offset - self.base_offset, position))
        self.offsets.append(offset)
        self.positions.append(position)

    def mark(self) -> int:
        return len(self.offsets)

    def restore(self, mark: int) -> None:
        """Forget the entries appended since `mark` (a write that failed is undone)."""
        self._file.truncate(mark * _OFFSET_ENTRY.size)
        del self.offsets[mark:], self.positions[mark:]

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the last entry at or before `offset`; the segment start if none."""
        i = bisect.bisect_right(self.offsets, offset) - 1
        if i < 0:
            return self.base_offset, 0
        return self.offsets[i], self.positions[i]

    def load(self, log_bytes: int, next_offset_max: int) -> bool:
        """Read the file; False (and empty) if it is not a plausible index of this segment."""
        data = self._file.read(0, self._file.size())
        if len(data) % _OFFSET_ENTRY.size:
            return False
        last_offset, last_position = self.base_offset - 1, -1
        for relative, position in _OFFSET_ENTRY.iter_unpack(data):
            offset = self.base_offset + relative
            if offset <= last_offset or position <= last_position or position >= log_bytes:
                self.offsets.clear()
                self.positions.clear()
                return False
            if offset >= next_offset_max:
                self.offsets.clear()
                self.positions.clear()
                return False
            self.offsets.append(offset)
            self.positions.append(position)
            last_offset, last_position = offset, position
        return True

    def reset(self) -> None:
        self._file.truncate(0)
        self.offsets.clear()
        self.positions.clear()

    def sync(self) -> None:
        self._file.sync()

    def close(self) -> None:
        self._file.close()


class TimeIndex:
    def __init__(self, file: File, base_offset: int) -> None:
        self._file = file
        self.base_offset = base_offset
        self.timestamps: list[int] = []
        self.offsets: list[int] = []

    def maybe_append(self, timestamp: int, offset: int) -> None:
        if self.timestamps and timestamp <= self.timestamps[-1]:
            return
        self._file.append(_TIME_ENTRY.pack(timestamp, offset - self.base_offset))
        self.timestamps.append(timestamp)
        self.offsets.append(offset)

    def mark(self) -> int:
        return len(self.timestamps)

    def restore(self, mark: int) -> None:
        self._file.truncate(mark * _TIME_ENTRY.size)
        del self.timestamps[mark:], self.offsets[mark:]

    def lookup(self, timestamp: int) -> int:
        """An offset from which a scan finds the first batch with max timestamp >= `timestamp`.

        Entries hold the segment's max timestamp *so far*, so every batch before an entry whose
        timestamp is below the target is below it too.
        """
        i = bisect.bisect_left(self.timestamps, timestamp) - 1
        if i < 0:
            return self.base_offset
        return self.offsets[i]

    def load(self, next_offset_max: int) -> bool:
        data = self._file.read(0, self._file.size())
        if len(data) % _TIME_ENTRY.size:
            return False
        for timestamp, relative in _TIME_ENTRY.iter_unpack(data):
            offset = self.base_offset + relative
            if (self.timestamps and timestamp <= self.timestamps[-1]) or not (
                self.base_offset <= offset < next_offset_max
            ):
                self.timestamps.clear()
                self.offsets.clear()
                return False
            self.timestamps.append(timestamp)
            self.offsets.append(offset)
        return True

    def reset(self) -> None:
        self._file.truncate(0)
        self.timestamps.clear()
        self.offsets.clear()

    def sync(self) -> None:
        self._file.sync()

    def close(self) -> None:
        self._file.close()
