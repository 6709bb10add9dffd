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
- Unlike Kafka, a transactional batch is a duplicate only of a batch of the producer's current
  transaction on this partition; matching one of an ended transaction, it is sequence reuse,
  refused with UNKNOWN_PRODUCER_ID (see `_from_closed_transaction`).

Transactions (KIP-98): a producer's first transactional batch opens a transaction on this
partition at its base offset; the COMMIT or ABORT marker closes it (`apply_marker`). The first
unstable offset, which bounds the last stable offset (LSO), is the earliest first offset of an
open transaction *or* of a closed one whose marker is not yet below the high watermark (Kafka's
"unreplicated" transactions): a reader must not move past a transaction before its outcome is
durable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import crc32c
from kio.schema.errors import ErrorCode

from samsa.protocol.batch import INT32_MAX, NO_SEQUENCE, BatchHeader

BATCHES_RETAINED = 5
NO_PRODUCER_EPOCH = -1
SNAPSHOT_VERSION = 2


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
    # The last BATCHES_RETAINED batches, oldest first. A tuple, not a deque(maxlen=...): CPython
    # gives every deque a 64-slot block (760 bytes), a third of what a whole entry costs else.
    batches: tuple[BatchMetadata, ...] = ()
    last_timestamp: int = -1
    current_txn_first_offset: int = -1
    coordinator_epoch: int = -1

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence if self.batches else NO_SEQUENCE

    @property
    def in_transaction(self) -> bool:
        return self.current_txn_first_offset >= 0

    def find(self, first_sequence: int, last_sequence: int) -> BatchMetadata | None:
        for batch in self.batches:
            if batch.first_sequence == first_sequence and batch.last_sequence == last_sequence:
                return batch
        return None

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self.batches = ()

    def add_batch(self, batch: BatchMetadata) -> None:
        self.batches = (*self.batches, batch)[-BATCHES_RETAINED:]


@dataclass(frozen=True, slots=True)
class ProducerDescription:
    """What the rest of the broker may know of a producer here (DescribeProducers, KIP-664, and
    the hanging-transaction check of WriteTxnMarkers): a copy, so no caller can change the
    state that decides duplicates."""

    producer_id: int
    producer_epoch: int
    last_sequence: int
    last_timestamp: int
    coordinator_epoch: int
    current_txn_start_offset: int  # -1: no transaction open here

    @property
    def in_transaction(self) -> bool:
        return self.current_txn_start_offset >= 0


@dataclass(frozen=True, slots=True)
class Duplicate:
    """An exact retry: answer with these offsets and write nothing."""

    batch: BatchMetadata


@dataclass(frozen=True, slots=True)
class Append:
    """Write the batch, then `apply` it. `opens_txn`: its producer's first transactional batch
    here, which the broker verifies with the transaction coordinator first (KIP-890 part 1)."""

    opens_txn: bool = False


@dataclass(frozen=True, slots=True)
class CompletedTxn:
    producer_id: int
    first_offset: int
    last_offset: int  # the marker's offset
    aborted: bool


def _retry_of(header: BatchHeader, entry: ProducerEntry) -> Duplicate | None:
    """The batch this one repeats, if the producer sent it before in this epoch."""
    if header.producer_epoch != entry.epoch:
        return None
    retained = entry.find(header.base_sequence, header.last_sequence)
    if retained is None:
        return None
    if _from_closed_transaction(header, entry, retained):
        raise ProducerStateError(
            ErrorCode.unknown_producer_id,
            f"producer {header.producer_id} reused sequences "
            f"{header.base_sequence}-{header.last_sequence} of an ended transaction",
        )
    return Duplicate(retained)


def _check_epoch(header: BatchHeader, entry: ProducerEntry) -> None:
    if header.producer_epoch < entry.epoch:
        raise ProducerStateError(
            ErrorCode.invalid_producer_epoch,
            f"producer {header.producer_id} epoch {header.producer_epoch} is older than "
            f"{entry.epoch}",
        )


def _check_sequence(header: BatchHeader, entry: ProducerEntry) -> None:
    """A new epoch starts at sequence 0; within an epoch, sequences follow on."""
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


def _check_transactional(header: BatchHeader, entry: ProducerEntry) -> None:
    if entry.in_transaction and not header.is_transactional:
        raise ProducerStateError(
            ErrorCode.invalid_txn_state,
            f"producer {header.producer_id} wrote a non-transactional batch inside its "
            "open transaction",
        )


def _from_closed_transaction(
    header: BatchHeader, entry: ProducerEntry, retained: BatchMetadata
) -> bool:
    """Whether a transactional batch matches the sequences of a batch that belongs to an
    earlier, already ended transaction of its producer. Then it is not a retry (a client
    retries a batch only within its transaction) but the producer reusing sequence numbers,
    which librdkafka does (same epoch) after an abort purged batches that had in fact been
    written before a broker restart. Taken for a duplicate, as Kafka does, the new batch would
    be answered with the old batch's offsets and never written: lost, in a transaction that
    then commits.

    It is refused with UNKNOWN_PRODUCER_ID, the code that tells a client (KIP-360) to bump its
    epoch and start its sequences again: librdkafka makes it an abortable error, aborts, bumps
    and retries. OUT_OF_ORDER_SEQUENCE_NUMBER, the literal answer, is fatal to librdkafka here
    ("sequence desynchronization"): no loss either, but the producer must be recreated."""
    if not header.is_transactional:
        return False
    return not entry.in_transaction or retained.first_offset < entry.current_txn_first_offset


def _describe(entry: ProducerEntry) -> ProducerDescription:
    return ProducerDescription(
        entry.producer_id,
        entry.epoch,
        entry.last_sequence,
        entry.last_timestamp,
        entry.coordinator_epoch,
        entry.current_txn_first_offset,
    )


def in_sequence(last_sequence: int, next_sequence: int) -> bool:
    return next_sequence == last_sequence + 1 or (next_sequence == 0 and last_sequence == INT32_MAX)


class ProducerStateManager:
    def __init__(self, expiration_ms: int) -> None:
        self.expiration_ms = expiration_ms
        self.entries: dict[int, ProducerEntry] = {}
        # Closed transactions whose marker is not yet durable: (first offset, marker offset).
        self.unstable_completed: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self.entries)

    def _entry(self, producer_id: int) -> ProducerEntry:
        entry = self.entries.get(producer_id)
        if entry is None:
            entry = self.entries[producer_id] = ProducerEntry(producer_id)
        return entry

    # ----------------------------------------------------------------- data batches
    def check(self, header: BatchHeader, coordinator: bool = False) -> Duplicate | Append:
        """Whether a data batch is a retry of one already written (`Duplicate`) or is to be
        appended, in the order Kafka's `ProducerAppendInfo` checks: a retry, the epoch, the
        sequence, the transaction. `coordinator`: a batch the broker's group coordinator writes
        for a producer (its transactional offset commits), checked for the epoch only, as
        Kafka does. `ProducerStateError` for a batch to refuse."""
        if not header.has_producer_id:
            return Append()
        entry = self.entries.get(header.producer_id)
        if entry is None:
            # An unknown producer may start at any sequence (KIP-360).
            return Append(opens_txn=header.is_transactional)
        if not coordinator:
            retry = _retry_of(header, entry)
            if retry is not None:
                return retry
        _check_epoch(header, entry)
        if not coordinator:
            _check_sequence(header, entry)
            _check_transactional(header, entry)
        return Append(opens_txn=header.is_transactional and not entry.in_transaction)

    def apply(self, header: BatchHeader) -> None:
        """Record a data batch that was just written (offsets assigned)."""
        if not header.has_producer_id:
            return
        entry = self._entry(header.producer_id)
        entry.set_epoch(header.producer_epoch)
        if header.base_sequence >= 0:
            entry.add_batch(
                BatchMetadata(
                    header.base_sequence,
                    header.last_sequence,
                    header.base_offset,
                    header.last_offset,
                    header.max_timestamp,
                )
            )
        entry.last_timestamp = max(entry.last_timestamp, header.max_timestamp)
        if header.is_transactional and not entry.in_transaction:
            entry.current_txn_first_offset = header.base_offset

    # ----------------------------------------------------------------- transaction markers
    def check_marker(self, producer_id: int, producer_epoch: int) -> None:
        """A marker from an older epoch than the partition knows is refused (fenced)."""
        entry = self.entries.get(producer_id)
        if entry is not None and producer_epoch < entry.epoch:
            raise ProducerStateError(
                ErrorCode.invalid_producer_epoch,
                f"marker for producer {producer_id} epoch {producer_epoch} is older than "
                f"{entry.epoch}",
            )

    def apply_marker(
        self, header: BatchHeader, aborted: bool, coordinator_epoch: int
    ) -> CompletedTxn | None:
        """Close the producer's transaction here with the marker just written.

        Returns the completed transaction, or None if the producer had no data here: an empty
        transaction never reaches the aborted index or the LSO.
        """
        entry = self._entry(header.producer_id)
        entry.set_epoch(header.producer_epoch)
        entry.coordinator_epoch = coordinator_epoch
        entry.last_timestamp = max(entry.last_timestamp, header.max_timestamp)
        first = entry.current_txn_first_offset
        entry.current_txn_first_offset = -1
        if first < 0:
            return None
        self.unstable_completed.append((first, header.base_offset))
        return CompletedTxn(header.producer_id, first, header.base_offset, aborted)

    def first_unstable_offset(self) -> int | None:
        firsts = [e.current_txn_first_offset for e in self.entries.values() if e.in_transaction]
        firsts.extend(first for first, _ in self.unstable_completed)
        return min(firsts) if firsts else None

    def on_high_watermark(self, high_watermark: int) -> None:
        """Markers below the high watermark are durable: their transactions are stable now."""
        if self.unstable_completed:
            self.unstable_completed = [
                (first, marker)
                for first, marker in self.unstable_completed
                if marker >= high_watermark
            ]

    def describe(self, producer_id: int) -> ProducerDescription | None:
        entry = self.entries.get(producer_id)
        return None if entry is None else _describe(entry)

    def describe_all(self) -> list[ProducerDescription]:
        return [_describe(entry) for entry in self.entries.values()]

    def open_transactions(self) -> dict[int, int]:
        """producer id -> first offset of its open transaction on this partition."""
        return {
            pid: e.current_txn_first_offset for pid, e in self.entries.items() if e.in_transaction
        }

    # ----------------------------------------------------------------- housekeeping
    def remove_expired(self, now_ms: int) -> int:
        """Forget producers idle for `producer.id.expiration.ms` with no open transaction."""
        expired = [
            pid
            for pid, entry in self.entries.items()
            if now_ms - entry.last_timestamp >= self.expiration_ms and not entry.in_transaction
        ]
        for pid in expired:
            del self.entries[pid]
        return len(expired)

    # ----------------------------------------------------------------- snapshots
    def snapshot(self) -> bytes:
        """CRC-32C (4 bytes, big-endian) of the JSON body, then the body."""
        producers = [
            {
                "id": entry.producer_id,
                "epoch": entry.epoch,
                "last_timestamp": entry.last_timestamp,
                "txn_first_offset": entry.current_txn_first_offset,
                "coordinator_epoch": entry.coordinator_epoch,
                "batches": [
                    [b.first_sequence, b.last_sequence, b.first_offset, b.last_offset, b.timestamp]
                    for b in entry.batches
                ],
            }
            for entry in self.entries.values()
        ]
        body = json.dumps(
            {
                "version": SNAPSHOT_VERSION,
                "producers": producers,
                "unstable_completed": self.unstable_completed,
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
            for item in decoded["producers"]:
                entry = ProducerEntry(
                    item["id"],
                    item["epoch"],
                    last_timestamp=item["last_timestamp"],
                    current_txn_first_offset=item["txn_first_offset"],
                    coordinator_epoch=item["coordinator_epoch"],
                )
                if now_ms - entry.last_timestamp >= self.expiration_ms and not entry.in_transaction:
                    continue
                batches = tuple(BatchMetadata(*b) for b in item["batches"])
                entry.batches = batches[-BATCHES_RETAINED:]
                entries[entry.producer_id] = entry
            unstable = [
                (int(first), int(marker)) for first, marker in decoded["unstable_completed"]
            ]
        except (ValueError, KeyError, TypeError):
            return False
        self.entries = entries
        self.unstable_completed = unstable
        return True
