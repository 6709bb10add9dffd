"""What the console shows, computed from protocol answers: pure functions, no I/O.

A partition's batches, as a raw read_uncommitted Fetch returns them, are classified the way a
read_committed reader decides what to deliver (Kafka's consumer, `CompletedFetch`): it skips
control batches, stops at the last stable offset (LSO), and drops the batches of every aborted
transaction in the Fetch's aborted-transactions list, from the transaction's first offset until
that producer's ABORT marker. What it keeps of a transactional batch below the LSO was committed;
a transactional batch at or past the LSO is still open (no marker yet). A batch with a producer
id and no transaction is idempotent; one without is plain.
"""

from __future__ import annotations

import enum
import heapq
import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from samsa.protocol.batch import BatchHeader, crc_ok, iter_batches
from samsa.protocol.control import COMMIT
from samsa.protocol.records import RecordView, records

VALUE_CHARS_MAX = 80
_CONTROL_KEY = struct.Struct(">hh")
READER_ROWS_MAX = 200


class Kind(enum.StrEnum):
    PLAIN = "plain"
    IDEMPOTENT = "idempotent"
    COMMITTED = "committed"
    ABORTED = "aborted"
    OPEN = "open"
    COMMIT_MARKER = "commit-marker"
    ABORT_MARKER = "abort-marker"

    @property
    def label(self) -> str:
        return _TITLES[self]


_TITLES = {
    Kind.PLAIN: "plain (no producer id)",
    Kind.IDEMPOTENT: "idempotent",
    Kind.COMMITTED: "transactional, committed",
    Kind.ABORTED: "transactional, aborted",
    Kind.OPEN: "transactional, still open",
    Kind.COMMIT_MARKER: "COMMIT marker",
    Kind.ABORT_MARKER: "ABORT marker",
}


@dataclass(frozen=True, slots=True)
class BatchView:
    header: BatchHeader
    kind: Kind
    data: bytes = field(repr=False)

    @property
    def base_offset(self) -> int:
        return self.header.base_offset

    @property
    def last_offset(self) -> int:
        return self.header.last_offset

    @property
    def records_count(self) -> int:
        return self.header.records_count

    @property
    def crc_ok(self) -> bool:
        return crc_ok(self.data, 0, self.header)

    @property
    def is_marker(self) -> bool:
        return self.kind in (Kind.COMMIT_MARKER, Kind.ABORT_MARKER)

    @property
    def offsets(self) -> str:
        h = self.header
        return (
            str(h.base_offset) if h.last_offset_delta == 0 else f"{h.base_offset}-{h.last_offset}"
        )

    @property
    def hover(self) -> str:
        """What a mouse over the batch says: what it is, who wrote it, which sequences."""
        h = self.header
        lines = [f"offsets {self.offsets}: {self.kind.label}", f"{h.records_count} record(s)"]
        if h.has_producer_id:
            lines.append(f"producer id {h.producer_id}, epoch {h.producer_epoch}")
            if h.base_sequence >= 0:
                lines.append(f"sequence {h.base_sequence}-{h.last_sequence}")
        lines.append(f"{h.size} bytes, timestamp {h.max_timestamp}")
        if not self.crc_ok:
            lines.append("CRC MISMATCH: a reader that checks CRCs refuses this batch")
        return "\n".join(lines)


def classify(
    data: bytes, aborted: Iterable[tuple[int, int]], last_stable_offset: int
) -> list[BatchView]:
    """Each whole batch in a raw read_uncommitted Fetch's records, with what it is.

    `aborted` is the aborted-transactions list of a read_committed Fetch from the same offset
    (brokers send it only at read_committed): it decides the batches below the LSO, as in
    the consumer. Above the LSO, a batch whose producer's marker follows in `data` is decided
    by that marker (the LSO waits for an earlier open transaction); one without is open."""
    parsed = [
        (header, bytes(data[position : position + header.size]))
        for position, header in iter_batches(data)
    ]
    outcome: dict[int, Kind] = {}  # batch index -> its producer's next marker
    next_marker: dict[int, Kind] = {}  # producer id -> the marker after this point
    for index in range(len(parsed) - 1, -1, -1):
        header, batch = parsed[index]
        if header.is_control:
            commit = is_commit(batch)
            next_marker[header.producer_id] = Kind.COMMITTED if commit else Kind.ABORTED
        elif header.is_transactional and header.producer_id in next_marker:
            outcome[index] = next_marker[header.producer_id]
    pending = [(first_offset, producer_id) for producer_id, first_offset in aborted]
    heapq.heapify(pending)
    aborting: set[int] = set()
    views = []
    for index, (header, batch) in enumerate(parsed):
        while pending and pending[0][0] <= header.last_offset:
            aborting.add(heapq.heappop(pending)[1])
        if header.is_control:
            commit = is_commit(batch)
            if not commit:
                aborting.discard(header.producer_id)
            kind = Kind.COMMIT_MARKER if commit else Kind.ABORT_MARKER
        elif header.is_transactional:
            if header.producer_id in aborting:
                kind = Kind.ABORTED
            elif index in outcome:
                kind = outcome[index]
            elif header.base_offset >= last_stable_offset >= 0:
                kind = Kind.OPEN
            else:
                kind = Kind.COMMITTED
        else:
            kind = Kind.IDEMPOTENT if header.has_producer_id else Kind.PLAIN
        views.append(BatchView(header, kind, batch))
    return views


def is_commit(batch: bytes) -> bool:
    """Whether a control batch is a COMMIT marker (its record's key: version i16, type i16).
    Read without checking the CRC, which `BatchView.crc_ok` reports instead."""
    found = records(batch)
    key = found[0].key if found else None
    if key is None or len(key) < _CONTROL_KEY.size:
        return False
    _, control_type = _CONTROL_KEY.unpack_from(key)
    return int(control_type) == COMMIT


def fenced_markers(batches: Sequence[BatchView]) -> dict[int, tuple[int, int]]:
    """Marker offset -> (producer id, epoch), for each ABORT marker whose epoch is higher than
    the epoch of the producer's data batches before it: the coordinator fenced the producer (a
    new instance with the same transactional id, or a timeout) and aborted with a bumped epoch."""
    data_epoch: dict[int, int] = {}
    fenced: dict[int, tuple[int, int]] = {}
    for batch in batches:
        h = batch.header
        if batch.kind is Kind.ABORT_MARKER:
            if h.producer_epoch > data_epoch.get(h.producer_id, h.producer_epoch):
                fenced[h.base_offset] = (h.producer_id, h.producer_epoch)
        elif h.has_producer_id and not batch.is_marker:
            data_epoch[h.producer_id] = h.producer_epoch
    return fenced


@dataclass(frozen=True, slots=True)
class RecordRow:
    offset: int
    key: str
    value: str
    kind: Kind


def record_rows(batch: BatchView) -> list[RecordRow]:
    if batch.is_marker:
        return [RecordRow(batch.base_offset, "(control)", batch.kind.label, batch.kind)]
    return [RecordRow(r.offset, shown(r.key), shown(r.value), batch.kind) for r in _records(batch)]


def _records(batch: BatchView) -> list[RecordView]:
    return records(batch.data)


def readers(
    batches: Sequence[BatchView], high_watermark: int, last_stable_offset: int
) -> tuple[list[RecordRow], list[RecordRow]]:
    """(what a read_uncommitted reader gets, what a read_committed reader gets) from these
    batches, at most READER_ROWS_MAX rows each."""
    uncommitted: list[RecordRow] = []
    committed: list[RecordRow] = []
    for batch in batches:
        if batch.is_marker:
            continue
        rows = record_rows(batch)
        uncommitted.extend(r for r in rows if r.offset < high_watermark)
        if batch.kind is not Kind.ABORTED:
            committed.extend(r for r in rows if r.offset < last_stable_offset)
    return uncommitted[:READER_ROWS_MAX], committed[:READER_ROWS_MAX]


def shown(data: bytes | None) -> str:
    """Bytes as a person reads them: text if they are text, else hex; cut to a line."""
    if data is None:
        return "null"
    try:
        text = data.decode()
        if not text.isprintable():
            raise ValueError
    except ValueError:
        text = "0x" + data.hex()
    return text if len(text) <= VALUE_CHARS_MAX else text[: VALUE_CHARS_MAX - 1] + "…"


# --------------------------------------------------------------------- __consumer_offsets
_KAFKA_KEY = struct.Struct(">h")


def offset_commit_key(key: bytes | None) -> tuple[str, str, int] | None:
    """(group, topic, partition) of an offset commit record in `__consumer_offsets`, in Kafka's
    binary key (version 0 or 1: group, topic, partition) or samsa's JSON key; else None."""
    if not key:
        return None
    if key.startswith(b"["):
        try:
            parsed = json.loads(key)
        except ValueError:
            return None
        if isinstance(parsed, list) and len(parsed) == 4 and parsed[0] == "offset":
            return str(parsed[1]), str(parsed[2]), int(parsed[3])
        return None
    try:
        (version,) = _KAFKA_KEY.unpack_from(key)
        if version not in (0, 1):
            return None
        group, position = _string(key, 2)
        topic, position = _string(key, position)
        (partition,) = struct.unpack_from(">i", key, position)
    except (struct.error, UnicodeDecodeError):
        return None
    return group, topic, int(partition)


def _string(data: bytes, position: int) -> tuple[str, int]:
    (length,) = struct.unpack_from(">h", data, position)
    end = position + 2 + length
    if length < 0 or end > len(data):
        raise struct.error("string overruns the key")
    return data[position + 2 : end].decode(), end


def transactional_commits(batches: Sequence[BatchView], group: str) -> dict[tuple[str, int], Kind]:
    """(topic, partition) -> how the group's latest offset commit among these batches of
    `__consumer_offsets` was written: IDEMPOTENT/PLAIN (OffsetCommit), or COMMITTED, ABORTED,
    OPEN (TxnOffsetCommit inside a transaction)."""
    found: dict[tuple[str, int], Kind] = {}
    for batch in batches:
        if batch.is_marker:
            continue
        for record in _records(batch):
            key = offset_commit_key(record.key)
            if key is not None and key[0] == group and batch.kind is not Kind.ABORTED:
                found[(key[1], key[2])] = batch.kind
    return found


def java_string_hash(text: str) -> int:
    """Java's String.hashCode (over UTF-16 code units), as a signed 32-bit int."""
    value = 0
    encoded = text.encode("utf-16-be")
    for i in range(0, len(encoded), 2):
        value = (31 * value + int.from_bytes(encoded[i : i + 2], "big")) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def offsets_partition(group: str, partitions: int) -> int:
    """The `__consumer_offsets` partition holding a group's commits (Kafka's
    GroupCoordinator.partitionFor: Utils.abs(groupId.hashCode) % partition count)."""
    hashed = java_string_hash(group)
    return (0 if hashed == -(1 << 31) else abs(hashed)) % max(partitions, 1)
