"""Producer state of one partition: what makes a retried batch a duplicate and not a new write.

Theory of operation (Kafka's ProducerStateManager / ProducerAppendInfo, KIP-98 and KIP-360):

- Each producer id has an entry: its epoch, the sequence ranges and offsets of its last
  `BATCHES_RETAINED` batches, and the timestamp of its last write.
- `check(header)` looks at a batch against a *copy* of nothing: it only reads state, and returns
  `Duplicate` (an exact retry of a retained batch: answer with the original offsets, write
  nothing), or `Append` (write it), or raises `ProducerStateError` with Kafka's error code.
  `apply(header)` records the batch once it is written. Nothing may happen in between but the
  append itself, which is how the broker's handlers run (no await between check and action).
- The rules, in Kafka's order: duplicate first; an older epoch is INVALID_PRODUCER_EPOCH; a new
  epoch must start at sequence 0; in the same epoch the batch must follow the last sequence
  (wrapping at 2^31-1); a producer the partition does not know may start anywhere (KIP-360).
  Every failure is OUT_OF_ORDER_SEQUENCE_NUMBER, never DUPLICATE_SEQUENCE_NUMBER.
- Unlike Kafka, snapshots keep the whole retained window, not only the last batch, so every retry
  in flight when the broker restarted is still recognised after it.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import crc32c
from kio.schema.errors import ErrorCode

from samsa.protocol.batch import INT32_MAX, NO_SEQUENCE, BatchHeader

BATCHES_RETAINED = 5
NO_PRODUCER_EPOCH = -1
SNAPSHOT_VERSION = 1


class ProducerStateError(Exception):
    """A batch that breaks the producer rules; `error` goes into the partition's response."""

    def __init__(self, error: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error = error


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    first_sequence: int
    last_sequence: int
    first_offset: int
    last_offset: int
    timestamp: int


@dataclass(slots=True)
class ProducerEntry:
    producer_id: int
    epoch: int = NO_PRODUCER_EPOCH
    batches: deque[BatchMetadata] = field(default_factory=lambda: deque(maxlen=BATCHES_RETAINED))
    last_timestamp: int = -1

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence if self.batches else NO_SEQUENCE

    def find(self, first_sequence: int, last_sequence: int) -> BatchMetadata | None:
        for batch in self.batches:
            if batch.first_sequence == first_sequence and batch.last_sequence == last_sequence:
                return batch
        return None


@dataclass(frozen=True, slots=True)
class Duplicate:
    """An exact retry: answer with these offsets and write nothing."""

    batch: BatchMetadata


@dataclass(frozen=True, slots=True)
class Append:
    """Write the batch, then `apply` it."""


def in_sequence(last_sequence: int, next_sequence: int) -> bool:
    return next_sequence == last_sequence + 1 or (next_sequence == 0 and last_sequence == INT32_MAX)


class ProducerStateManager:
    def __init__(self, expiration_ms: int) -> None:
        self.expiration_ms = expiration_ms
        self.entries: dict[int, ProducerEntry] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def check(self, header: BatchHeader) -> Duplicate | Append:
        if not header.has_producer_id:
            return Append()
        entry = self.entries.get(header.producer_id)
        if entry is None:
            return Append()  # an unknown producer may start at any sequence (KIP-360)
        if header.producer_epoch == entry.epoch:
            retained = entry.find(header.base_sequence, header.last_sequence)
            if retained is not None:
                return Duplicate(retained)
        if header.producer_epoch < entry.epoch:
            raise ProducerStateError(
                ErrorCode.invalid_producer_epoch,
                f"producer {header.producer_id} epoch {header.producer_epoch} is older than "
                f"{entry.epoch}",
            )
        if header.producer_epoch != entry.epoch:
            if header.base_sequence != 0 and entry.epoch != NO_PRODUCER_EPOCH:
                raise ProducerStateError(
                    ErrorCode.out_of_order_sequence_number,
                    f"producer {header.producer_id} new epoch {header.producer_epoch} starts at "
                    f"sequence {header.base_sequence}, not 0",
                )
        elif entry.batches and not in_sequence(entry.last_sequence, header.base_sequence):
            raise ProducerStateError(
                ErrorCode.out_of_order_sequence_number,
                f"producer {header.producer_id} sent sequence {header.base_sequence} after "
                f"{entry.last_sequence}",
            )
        return Append()

    def apply(self, header: BatchHeader) -> None:
        """Record a batch that was just written (offsets assigned)."""
        if not header.has_producer_id:
            return
        entry = self.entries.get(header.producer_id)
        if entry is None:
            entry = self.entries[header.producer_id] = ProducerEntry(header.producer_id)
        if header.producer_epoch != entry.epoch:
            entry.epoch = header.producer_epoch
            entry.batches.clear()
        if header.base_sequence >= 0:
            entry.batches.append(
                BatchMetadata(
                    header.base_sequence,
                    header.last_sequence,
                    header.base_offset,
                    header.last_offset,
                    header.max_timestamp,
                )
            )
        entry.last_timestamp = max(entry.last_timestamp, header.max_timestamp)

    def replay(self, headers: Iterable[BatchHeader]) -> int:
        """Rebuild state from batches read back from the log; returns how many were applied."""
        count = 0
        for header in headers:
            if header.has_producer_id and not header.is_control:
                self.apply(header)
                count += 1
        return count

    def remove_expired(self, now_ms: int) -> int:
        """Forget producers idle for `producer.id.expiration.ms`; returns how many."""
        expired = [
            pid
            for pid, entry in self.entries.items()
            if now_ms - entry.last_timestamp >= self.expiration_ms
        ]
        for pid in expired:
            del self.entries[pid]
        return len(expired)

    # ----------------------------------------------------------------- snapshots
    def snapshot(self) -> bytes:
        """CRC-32C (4 bytes, big-endian) of the JSON body, then the body."""
        body = json.dumps(
            {
                "version": SNAPSHOT_VERSION,
                "producers": [
                    [
                        entry.producer_id,
                        entry.epoch,
                        entry.last_timestamp,
                        [
                            [
                                b.first_sequence,
                                b.last_sequence,
                                b.first_offset,
                                b.last_offset,
                                b.timestamp,
                            ]
                            for b in entry.batches
                        ],
                    ]
                    for entry in self.entries.values()
                ],
            },
            separators=(",", ":"),
        ).encode()
        return crc32c.crc32c(body).to_bytes(4, "big") + body

    def load_snapshot(self, data: bytes, now_ms: int) -> bool:
        """Replace state with a snapshot; False (state untouched) if it is damaged."""
        if len(data) < 4 or crc32c.crc32c(data[4:]) != int.from_bytes(data[:4], "big"):
            return False
        try:
            decoded = json.loads(data[4:])
            if decoded["version"] != SNAPSHOT_VERSION:
                return False
            entries = {}
            for producer_id, epoch, last_timestamp, batches in decoded["producers"]:
                if now_ms - last_timestamp >= self.expiration_ms:
                    continue
                entry = ProducerEntry(producer_id, epoch, last_timestamp=last_timestamp)
                entry.batches.extend(BatchMetadata(*b) for b in batches)
                entries[producer_id] = entry
        except (ValueError, KeyError, TypeError):
            return False
        self.entries = entries
        return True
