"""The aborted-transaction index of one segment (`.txnindex`), in Kafka's 34-byte entries:

    version i16 (0) | producer id i64 | first offset i64 | last offset i64 | last stable offset i64

An entry is added when an ABORT marker lands in the segment (`last offset` is the marker's).
read_committed fetches hand the entries overlapping their range to the client, which drops the
aborted records. The index is derived data: on recovery it is cut back to the recovered log and
completed by replaying the log tail.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from samsa.log.storage import File

_ENTRY = struct.Struct(">hqqqq")


@dataclass(frozen=True, slots=True)
class AbortedTxn:
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


class TxnIndex:
    def __init__(self, file: File) -> None:
        self._file = file
        self.entries: list[AbortedTxn] = []
        self.damaged = False

    def append(self, entry: AbortedTxn) -> None:
        self._file.append(
            _ENTRY.pack(
                0,
                entry.producer_id,
                entry.first_offset,
                entry.last_offset,
                entry.last_stable_offset,
            )
        )
        self.entries.append(entry)

    def load(self, base_offset: int, next_offset: int) -> None:
        """Read the file, keeping the whole entries whose marker lies in [base, next).

        Entries past `next_offset` describe markers a crash took back, and a partial last
        entry is a torn append: both are dropped. Anything else that does not parse as an
        entry of this segment sets `damaged`: the entries after it are lost, and only a replay
        of the whole log can restore them (a replay from a snapshot would not reach them)."""
        data = self._file.read(0, self._file.size())
        whole = len(data) - len(data) % _ENTRY.size
        kept: list[AbortedTxn] = []
        self.damaged = False
        previous = base_offset - 1
        for version, pid, first, last, stable in _ENTRY.iter_unpack(data[:whole]):
            if last >= next_offset and version == 0:
                break
            if version != 0 or last <= previous or first > last or last < base_offset:
                self.damaged = True
                break
            kept.append(AbortedTxn(pid, first, last, stable))
            previous = last
        self.entries = kept
        if len(kept) * _ENTRY.size != len(data):
            # The kept entries are the file's first bytes: cut what follows them, never rewrite
            # them (a truncate-and-rewrite that failed or crashed halfway lost entries whose
            # markers lie before the newest snapshot, which no replay brings back).
            self._file.truncate(len(kept) * _ENTRY.size)

    def sync(self) -> None:
        self._file.sync()

    def close(self) -> None:
        self._file.close()
