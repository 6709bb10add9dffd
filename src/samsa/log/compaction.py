"""Log compaction, the pure part: which range of a log to clean, and what of each batch stays.

Theory of operation (Kafka's `LogCleaner`, `Cleaner.cleanSegments`, `CleanedTransactionMetadata`):

- A log is split at its *first dirty offset* (the cleaner's checkpoint): below it, segments
  cleaned before; from it, dirty ones. The cleanable range ends at the first *uncleanable*
  offset: the active segment's base, the last stable offset (nothing of an undecided
  transaction is cleaned), and the first segment with data newer than `min.compaction.lag.ms`;
  samsa rounds it down to a segment boundary, so only whole segments are cleaned.
- A log is cleaned when its dirty ratio (dirty bytes over all bytes below the end) is at least
  `min.cleanable.dirty.ratio`, or when its oldest dirty data is older than
  `max.compaction.lag.ms`.
- An *offset map* (key -> offset of its latest record) is built over the dirty range only,
  skipping control batches and aborted transactions' batches. Then every batch from the log
  start to the end of the range is rewritten without the records the map supersedes:
  a record stays if it has a key and no later record of that key is in the map.
- A tombstone (a record with a null value) and a transaction marker stay while a consumer may
  still need them: only batches already cleaned once (below the first dirty offset) lose them,
  and only after `delete.retention.ms` (measured from the batch's own timestamp: samsa's
  difference from KIP-534's delete horizon, see docs/compaction.md).
- Transactions: a data batch of an aborted transaction goes (records and all). An ABORT marker
  stays as long as a pass still finds data of its transaction (that data goes in that pass;
  the marker is dropped by a later one), a COMMIT marker as long as data of its transaction
  is left; after that, once `delete.retention.ms` has passed, they go too.
- The last data batch of every producer the partition knows stays, emptied of its records if
  need be (Kafka's "retain empty batch"): replaying the log after cleaning then rebuilds each
  producer's epoch and last sequence, so no producer meets UNKNOWN_PRODUCER_ID or
  OUT_OF_ORDER_SEQUENCE_NUMBER because the cleaner removed its last batch (KAFKA-7190).
- A kept batch keeps its base offset, last offset delta, sequences, producer, timestamps and
  codec; only its records (and so its length, count and CRC) change. Offsets never move.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import crc32c

from samsa.log.txn_index import AbortedTxn
from samsa.protocol.batch import (
    COMPRESSION_MASK,
    CRC_START,
    HEADER,
    HEADER_BYTES,
    LOG_OVERHEAD,
    BatchHeader,
)
from samsa.protocol.compression import deflate, inflate
from samsa.protocol.records_walk import RecordsInvalid, read_varint

_INT32_BYTES_MAX = 5
_INT64_BYTES_MAX = 10
_ABORT_KEY = struct.Struct(">hh")


@dataclass(frozen=True, slots=True)
class CompactionConfig:
    """A partition's cleaner settings, from its topic's configs (Kafka's names, in ms)."""

    compact: bool = False  # cleanup.policy holds "compact"
    delete_retention_ms: int = 24 * 3600 * 1000
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = 2**63 - 1
    min_cleanable_dirty_ratio: float = 0.5
    segment_bytes: int = 1 << 30


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    base_offset: int
    next_offset: int
    size: int
    max_timestamp: int
    first_batch_timestamp: int | None


@dataclass(frozen=True, slots=True)
class CleanRange:
    """What one pass cleans: segments [0, `end_index`), the map built over
    [`first_dirty`, `end_offset`), in groups of segment indexes (each becomes one segment)."""

    first_dirty: int
    end_offset: int
    end_index: int
    dirty_index: int
    dirty_ratio: float
    forced: bool  # by max.compaction.lag.ms, not the ratio
    groups: tuple[tuple[int, ...], ...]


def plan(
    segments: Sequence[SegmentInfo],
    first_dirty: int,
    last_stable_offset: int,
    now_ms: int,
    config: CompactionConfig,
) -> CleanRange | None:
    """The range to clean now, or None (nothing cleanable, or not dirty enough)."""
    if not config.compact or len(segments) < 2:
        return None
    dirty_index = next(
        (i for i, s in enumerate(segments) if s.next_offset > first_dirty), len(segments) - 1
    )
    first_dirty = max(first_dirty, segments[0].base_offset)
    end_index = dirty_index
    # Only whole, non-active segments below the LSO and older than the minimum lag.
    while end_index < len(segments) - 1:
        segment, after = segments[end_index], segments[end_index + 1]
        if after.base_offset > last_stable_offset:
            break
        if now_ms - segment.max_timestamp < config.min_compaction_lag_ms:
            break
        end_index += 1
    if end_index <= dirty_index:
        return None
    clean_bytes = sum(s.size for s in segments[:dirty_index])
    dirty_bytes = sum(s.size for s in segments[dirty_index:end_index])
    total = clean_bytes + dirty_bytes
    ratio = dirty_bytes / total if total else 0.0
    first = segments[dirty_index]
    earliest = first.first_batch_timestamp
    if earliest is None or earliest < 0:
        earliest = first.max_timestamp
    forced = earliest >= 0 and now_ms - earliest > config.max_compaction_lag_ms
    if ratio < config.min_cleanable_dirty_ratio and not forced:
        return None
    return CleanRange(
        first_dirty,
        segments[end_index].base_offset,
        end_index,
        dirty_index,
        ratio,
        forced,
        group_by_size([s.size for s in segments[:end_index]], config.segment_bytes),
    )


def group_by_size(sizes: Sequence[int], segment_bytes: int) -> tuple[tuple[int, ...], ...]:
    """Consecutive segment indexes whose sizes together fit one segment (Kafka's
    `groupSegmentsBySize`): a cleaned group is never larger than its input."""
    groups: list[tuple[int, ...]] = []
    current: list[int] = []
    total = 0
    for index, size in enumerate(sizes):
        if current and total + size > segment_bytes:
            groups.append(tuple(current))
            current, total = [], 0
        current.append(index)
        total += size
    if current:
        groups.append(tuple(current))
    return tuple(groups)


# ----------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record of a batch as stored: its bytes (length prefix included) kept as they are,
    so its offset and timestamp deltas stay right under the batch's unchanged header."""

    offset: int
    key: bytes | None
    tombstone: bool
    data: bytes


def raw_records(batch: bytes, header: BatchHeader, inflated_bytes_max: int) -> list[RawRecord]:
    """The records of a stored batch (decompressed); `RecordsInvalid` if they do not parse."""
    with memoryview(batch) as view:
        data = inflate(header.compression, view[HEADER_BYTES : header.size], inflated_bytes_max)
    found: list[RawRecord] = []
    position = 0
    try:
        for index in range(header.records_count):
            start = position
            length, position = read_varint(data, position, _INT32_BYTES_MAX)
            end = position + length
            if length < 0 or end > len(data):
                raise RecordsInvalid(f"record {index} has length {length}")
            position += 1  # attributes
            _, position = read_varint(data, position, _INT64_BYTES_MAX)  # timestamp delta
            offset_delta, position = read_varint(data, position, _INT32_BYTES_MAX)
            key_length, position = read_varint(data, position, _INT32_BYTES_MAX)
            key = None if key_length < 0 else data[position : position + key_length]
            position += max(key_length, 0)
            value_length, position = read_varint(data, position, _INT32_BYTES_MAX)
            found.append(
                RawRecord(header.base_offset + offset_delta, key, value_length < 0, data[start:end])
            )
            position = end
    except IndexError:
        raise RecordsInvalid("the records end before the batch header's count") from None
    return found


def rebuild_batch(header: BatchHeader, kept: Sequence[RawRecord]) -> bytes:
    """The batch with only `kept` records; every other header field as it was (an empty batch
    is written uncompressed)."""
    payload = b"".join(record.data for record in kept)
    attributes = header.attributes
    if kept:
        payload = deflate(header.compression, payload)
    else:
        attributes &= ~COMPRESSION_MASK
    batch_length = HEADER_BYTES - LOG_OVERHEAD + len(payload)
    head = bytearray(
        HEADER.pack(
            header.base_offset,
            batch_length,
            header.partition_leader_epoch,
            header.magic,
            0,
            attributes,
            header.last_offset_delta,
            header.base_timestamp,
            header.max_timestamp,
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
            len(kept),
        )
    )
    crc = crc32c.crc32c(payload, crc32c.crc32c(bytes(head[CRC_START:])))
    struct.pack_into(">I", head, 17, crc)
    return bytes(head) + payload


def control_is_abort(batch: bytes) -> bool:
    """Whether a stored control batch is an ABORT marker (its first record's key)."""
    records = raw_records(batch, _parse(batch), 1 << 16)
    key = records[0].key if records else None
    return key is not None and len(key) >= 4 and _ABORT_KEY.unpack_from(key)[1] == 0


def _parse(batch: bytes) -> BatchHeader:
    return BatchHeader(*HEADER.unpack_from(batch, 0))


# ----------------------------------------------------------------- the offset map
@dataclass(slots=True)
class OffsetMap:
    """key -> offset of its latest record in the dirty range (Kafka's `SkimpyOffsetMap`, here
    a dict: samsa bounds it by the range it maps, not by `log.cleaner.dedupe.buffer.size`)."""

    latest: dict[bytes, int] = field(default_factory=dict)
    aborted: AbortedRanges = field(default_factory=lambda: AbortedRanges(()))

    def add(self, header: BatchHeader, records: Iterable[RawRecord]) -> None:
        if header.is_control or self.aborted.is_aborted(header):
            return
        for record in records:
            if record.key is not None:
                self.latest[record.key] = record.offset


class AbortedRanges:
    """The aborted transactions of a log (its `.txnindex` entries), by producer: a batch's
    lookup is a bisection in its producer's ranges, so a log with many aborted transactions
    costs a pass O(batches log aborts), not O(batches x aborts)."""

    def __init__(self, entries: Iterable[AbortedTxn]) -> None:
        ranges: dict[int, list[tuple[int, int]]] = {}
        for entry in entries:
            ranges.setdefault(entry.producer_id, []).append((entry.first_offset, entry.last_offset))
        self._firsts: dict[int, list[int]] = {}
        self._ranges: dict[int, list[tuple[int, int]]] = {}
        for pid, found in ranges.items():
            found.sort()
            self._ranges[pid] = found
            self._firsts[pid] = [first for first, _ in found]

    def is_aborted(self, header: BatchHeader) -> bool:
        if not header.is_transactional or header.is_control:
            return False
        firsts = self._firsts.get(header.producer_id)
        if not firsts:
            return False
        # A producer's transactions do not overlap: only the last one starting at or before
        # the batch can hold it.
        index = bisect.bisect_right(firsts, header.base_offset) - 1
        if index < 0:
            return False
        return header.base_offset <= self._ranges[header.producer_id][index][1]


# ----------------------------------------------------------------- what stays
@dataclass(slots=True)
class CleaningPass:
    """The decisions of one pass, fed every batch from the log start in offset order.

    `now_ms`, the offset map and the producers' last data batches are fixed for the pass; the
    transaction bookkeeping (Kafka's `CleanedTransactionMetadata`) carries from batch to batch.
    """

    offset_map: OffsetMap
    first_dirty: int
    now_ms: int
    delete_retention_ms: int
    producers_last_offsets: frozenset[int]
    # producer id -> whether data of its aborted transaction was met in this pass
    ongoing_aborted: dict[int, bool] = field(default_factory=dict)
    ongoing_committed: set[int] = field(default_factory=set)
    records_removed: int = 0
    batches_removed: int = 0

    def _expired(self, header: BatchHeader) -> bool:
        return (
            header.next_offset <= self.first_dirty
            and self.now_ms - header.max_timestamp > self.delete_retention_ms
        )

    def filter_batch(
        self, header: BatchHeader, batch: bytes, inflated_bytes_max: int
    ) -> tuple[bytes | None, bool]:
        """The batch as it is to be written (None: dropped), and, for an ABORT marker kept
        because its transaction's data was met, True: its aborted-index entry goes along."""
        if header.is_control:
            return self._control(header, batch)
        aborted = self.offset_map.aborted.is_aborted(header)
        if header.is_transactional:
            if aborted:
                self.ongoing_aborted[header.producer_id] = True
            else:
                self.ongoing_committed.add(header.producer_id)
        last_of_producer = (
            header.has_producer_id and header.last_offset in self.producers_last_offsets
        )
        records = raw_records(batch, header, inflated_bytes_max)
        kept = [] if aborted else [r for r in records if self._keep(header, r)]
        self.records_removed += len(records) - len(kept)
        if len(kept) == len(records) and not aborted:
            return batch, False
        if not kept and not last_of_producer:
            self.batches_removed += 1
            return None, False
        return rebuild_batch(header, kept), False

    def _keep(self, header: BatchHeader, record: RawRecord) -> bool:
        if record.key is None:  # Kafka's cleaner drops a keyless record (it counts it invalid)
            return False
        latest = self.offset_map.latest.get(record.key)
        if latest is not None and latest > record.offset:
            return False
        return not (record.tombstone and self._expired(header))

    def _control(self, header: BatchHeader, batch: bytes) -> tuple[bytes | None, bool]:
        pid = header.producer_id
        if control_is_abort(batch):
            met = self.ongoing_aborted.pop(pid, False)
            if met:
                return batch, True
            discardable = True
        else:
            discardable = pid not in self.ongoing_committed
            self.ongoing_committed.discard(pid)
        if discardable and self._expired(header):
            self.batches_removed += 1
            return None, False
        return batch, False
