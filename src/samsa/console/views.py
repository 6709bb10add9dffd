"""Each page's data, gathered from the cluster: one function per view, returning a frozen object
the template renders. A section the cluster cannot serve (an API it lacks) carries the
`Unsupported` message instead of its rows; the rest of the page still shows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from samsa.admin.client import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    READ_COMMITTED,
    READ_UNCOMMITTED,
)
from samsa.admin.txn_cli import TxnRow, row_of
from samsa.console import model
from samsa.console.cluster import (
    FETCH_BYTES_MAX,
    Cluster,
    FetchedPartition,
    PartitionMeta,
    TopicPartition,
    Unsupported,
)
from samsa.protocol.batch import iter_batches

WINDOW_RECORDS = 500  # where a partition view starts by default: this many offsets before HW
FETCH_ROUNDS_MAX = 16  # fetches per window, for brokers that answer a batch at a time
OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_SCAN_RECORDS = 20_000  # how far back the groups view reads __consumer_offsets
# The coordinator's transaction states (Kafka's TransactionState), in the order a transaction
# passes through them; the view highlights each transaction's.
STATE_MACHINE = (
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "CompleteCommit",
    "PrepareAbort",
    "CompleteAbort",
    "PrepareEpochFence",
    "Dead",
)


# --------------------------------------------------------------------- overview
@dataclass(frozen=True, slots=True)
class PartitionRow:
    meta: PartitionMeta
    log_start_offset: int
    last_stable_offset: int
    high_watermark: int

    @property
    def held(self) -> int:
        """Offsets a read_committed reader cannot read yet (an open transaction holds them)."""
        return max(self.high_watermark - self.last_stable_offset, 0)


@dataclass(frozen=True, slots=True)
class Overview:
    cluster_id: str | None
    brokers: dict[int, tuple[str, int]]
    controller: int
    topics: dict[str, list[PartitionRow]]


def overview(cluster: Cluster) -> Overview:
    metadata = cluster.metadata()
    wanted = list(metadata.partitions)
    start = cluster.list_offsets(wanted, READ_UNCOMMITTED, EARLIEST_TIMESTAMP)
    high = cluster.list_offsets(wanted, READ_UNCOMMITTED, LATEST_TIMESTAMP)
    stable = cluster.list_offsets(wanted, READ_COMMITTED, LATEST_TIMESTAMP)
    topics = {
        topic: [
            PartitionRow(
                meta,
                start.get((topic, meta.partition), -1),
                stable.get((topic, meta.partition), -1),
                high.get((topic, meta.partition), -1),
            )
            for meta in partitions
        ]
        for topic, partitions in metadata.topics().items()
    }
    return Overview(metadata.cluster_id, metadata.brokers, metadata.controller, topics)


# --------------------------------------------------------------------- partition
MARKERS = {
    "log-start": ("log start", "log start offset"),
    "lso": ("LSO", "last stable offset: read_committed readers stop here"),
    "hw": ("HW", "high watermark: read_uncommitted readers stop here"),
    "log-end": ("end", "log end offset"),
}


@dataclass(frozen=True, slots=True)
class TimelineItem:
    offset: int
    marker: str | None = None
    batch: model.BatchView | None = None

    @property
    def short(self) -> str:
        return MARKERS[self.marker][0] if self.marker else ""

    @property
    def title(self) -> str:
        return MARKERS[self.marker][1] if self.marker else ""


@dataclass(frozen=True, slots=True)
class PartitionPage:
    topic: str
    partition: int
    leader: int
    from_offset: int
    log_start_offset: int
    last_stable_offset: int
    high_watermark: int
    log_end_offset: int
    batches: list[model.BatchView]
    aborted: tuple[tuple[int, int], ...]
    fenced: dict[int, tuple[int, int]]  # marker offset -> (producer id, epoch)
    read_uncommitted: list[model.RecordRow]
    read_committed: list[model.RecordRow]
    selected: model.BatchView | None
    selected_records: list[model.RecordRow]
    producers: list[ProducerRow]
    producers_error: str | None
    error: str | None

    @property
    def timeline(self) -> list[TimelineItem]:
        """The batches in log order, with the log start, LSO, high watermark and log end
        markers each placed before the first batch at or after its offset."""
        marks = sorted(
            (offset, order, name)
            for order, (name, offset) in enumerate(
                (
                    ("log-start", self.log_start_offset),
                    ("lso", self.last_stable_offset),
                    ("hw", self.high_watermark),
                    ("log-end", self.log_end_offset),
                )
            )
            if offset >= self.from_offset
            and not (name == "log-end" and offset == self.high_watermark)
        )
        items: list[TimelineItem] = []
        for batch in self.batches:
            while marks and marks[0][0] <= batch.base_offset:
                offset, _, name = marks.pop(0)
                items.append(TimelineItem(marker=name, offset=offset))
            items.append(TimelineItem(batch=batch, offset=batch.base_offset))
        items.extend(TimelineItem(marker=name, offset=offset) for offset, _, name in marks)
        return items

    @property
    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for batch in self.batches:
            found[batch.kind.value] = found.get(batch.kind.value, 0) + 1
        return found


def partition(
    cluster: Cluster, topic: str, index: int, from_offset: int | None, batch: int | None
) -> PartitionPage:
    meta = cluster.metadata().partitions.get((topic, index))
    if meta is None:  # a topic made since the metadata was last asked for?
        meta = cluster.metadata(max_age_s=0).partitions.get((topic, index))
    if meta is None:
        raise LookupError(f"{topic}-{index} is not in the cluster's metadata")
    if from_offset is None:
        # By default the window ends at the high watermark, which only a first fetch tells.
        probe = cluster.fetch(topic, index, 0)
        from_offset = max(probe.log_start_offset, probe.high_watermark - WINDOW_RECORDS, 0)
    fetched = cluster.fetch(topic, index, from_offset)
    if fetched.error == ErrorCode.offset_out_of_range:
        from_offset = max(fetched.log_start_offset, 0)
        fetched = cluster.fetch(topic, index, from_offset)
    data, aborted = _read_window(cluster, topic, index, from_offset, fetched)
    lso = fetched.last_stable_offset
    batches = model.classify(data, aborted, lso)
    uncommitted, committed = model.readers(batches, fetched.high_watermark, lso)
    selected = None
    if batch is not None:
        selected = next((b for b in batches if b.base_offset <= batch <= b.last_offset), None)
    producers, producers_error = _producers(cluster, [(topic, index)])
    log_end = max([fetched.high_watermark] + [b.header.next_offset for b in batches])
    return PartitionPage(
        topic=topic,
        partition=index,
        leader=meta.leader,
        from_offset=from_offset,
        log_start_offset=fetched.log_start_offset,
        last_stable_offset=lso,
        high_watermark=fetched.high_watermark,
        log_end_offset=log_end,
        batches=batches,
        aborted=aborted,
        fenced=model.fenced_markers(batches),
        read_uncommitted=uncommitted,
        read_committed=committed,
        selected=selected,
        selected_records=model.record_rows(selected) if selected else [],
        producers=producers,
        producers_error=producers_error,
        error=None if fetched.error == ErrorCode.none else fetched.error.name,
    )


def _read_window(
    cluster: Cluster, topic: str, index: int, from_offset: int, first: FetchedPartition
) -> tuple[bytes, tuple[tuple[int, int], ...]]:
    """The window's batches (up to FETCH_BYTES_MAX, in a few fetches where a broker answers
    with less than it could: librdkafka's mock sends one batch per Fetch), and the aborted
    transactions that read_committed Fetches of the same range report."""
    data = bytearray(first.records)
    end = from_offset
    for _ in range(FETCH_ROUNDS_MAX):
        found = list(iter_batches(bytes(data)))
        if not found:
            break
        end = found[-1][1].next_offset
        if end >= first.high_watermark or len(data) >= FETCH_BYTES_MAX:
            break
        more = cluster.fetch(topic, index, end)
        if more.error != ErrorCode.none or not more.records:
            break
        data += more.records
    aborted: dict[tuple[int, int], None] = {}
    offset = from_offset
    for _ in range(FETCH_ROUNDS_MAX):
        committed = cluster.fetch(topic, index, offset, READ_COMMITTED)
        aborted.update(dict.fromkeys(committed.aborted))
        found = list(iter_batches(committed.records))
        if committed.error != ErrorCode.none or not found:
            break
        offset = found[-1][1].next_offset
        if offset >= min(end, committed.last_stable_offset):
            break
    return bytes(data), tuple(aborted)


# --------------------------------------------------------------------- producers
@dataclass(frozen=True, slots=True)
class ProducerRow:
    topic: str
    partition: int
    producer_id: int
    producer_epoch: int
    last_sequence: int
    last_timestamp_ms: int
    coordinator_epoch: int
    txn_start_offset: int  # -1: no open transaction


def _producers(
    cluster: Cluster, partitions: list[TopicPartition]
) -> tuple[list[ProducerRow], str | None]:
    try:
        found = cluster.describe_producers(partitions)
    except Unsupported as exc:
        return [], str(exc)
    rows = [
        ProducerRow(
            topic,
            index,
            int(p.producer_id),
            int(p.producer_epoch),
            int(p.last_sequence),
            int(p.last_timestamp),
            int(p.coordinator_epoch),
            int(p.current_txn_start_offset),
        )
        for (topic, index), states in sorted(found.items())
        for p in states
    ]
    return rows, None


@dataclass(frozen=True, slots=True)
class ProducersPage:
    rows: list[ProducerRow]
    error: str | None


def producers(cluster: Cluster) -> ProducersPage:
    rows, error = _producers(cluster, list(cluster.metadata().partitions))
    return ProducersPage(rows, error)


# --------------------------------------------------------------------- transactions
@dataclass(frozen=True, slots=True)
class OpenInPartition:
    """A producer with an open transaction in a partition (DescribeProducers), and whether the
    coordinator knows of it: if not, the transaction is hanging (KIP-664) and only an abort
    (WriteTxnMarkers) will release the partition's LSO."""

    producer: ProducerRow
    last_stable_offset: int
    high_watermark: int
    transactional_id: str | None
    age_ms: int

    @property
    def hanging(self) -> bool:
        return self.transactional_id is None


@dataclass(frozen=True, slots=True)
class TransactionsPage:
    rows: list[TxnRow]
    open_in_partitions: list[OpenInPartition]
    states: dict[str, int]
    error: str | None
    producers_error: str | None
    now_ms: int
    state_machine: tuple[str, ...] = STATE_MACHINE
    notes: list[str] = field(default_factory=list)


def transactions(cluster: Cluster, now_ms: int) -> TransactionsPage:
    rows: list[TxnRow] = []
    error = None
    try:
        listed = cluster.list_transactions()
        described = cluster.describe_transactions(sorted(str(t.transactional_id) for t in listed))
        rows = [row_of(state, now_ms) for state in described if state.error_code == ErrorCode.none]
    except Unsupported as exc:
        error = str(exc)
    rows.sort(key=lambda r: (not r.is_open, -(r.start_ms or 0), r.transactional_id))
    known = {
        (row.producer_id, where): row.transactional_id
        for row in rows
        if row.is_open
        for where in row.partitions
    }
    open_rows, producers_error = _producers(cluster, list(cluster.metadata().partitions))
    open_rows = [r for r in open_rows if r.txn_start_offset >= 0]
    wanted = [(r.topic, r.partition) for r in open_rows]
    high = cluster.list_offsets(wanted, READ_UNCOMMITTED, LATEST_TIMESTAMP) if wanted else {}
    stable = cluster.list_offsets(wanted, READ_COMMITTED, LATEST_TIMESTAMP) if wanted else {}
    in_partitions = [
        OpenInPartition(
            producer=r,
            last_stable_offset=stable.get((r.topic, r.partition), -1),
            high_watermark=high.get((r.topic, r.partition), -1),
            # Without DescribeTransactions nothing says who owns it: do not call it hanging.
            transactional_id=known.get((r.producer_id, f"{r.topic}-{r.partition}"))
            if error is None
            else "?",
            age_ms=now_ms - r.last_timestamp_ms,
        )
        for r in open_rows
    ]
    states: dict[str, int] = {}
    for row in rows:
        states[row.state] = states.get(row.state, 0) + 1
    return TransactionsPage(rows, in_partitions, states, error, producers_error, now_ms)


# --------------------------------------------------------------------- groups
@dataclass(frozen=True, slots=True)
class GroupSummary:
    group_id: str
    protocol_type: str
    state: str


@dataclass(frozen=True, slots=True)
class GroupsPage:
    groups: list[GroupSummary]
    error: str | None


def groups(cluster: Cluster) -> GroupsPage:
    try:
        listed = cluster.list_groups()
    except Unsupported as exc:
        return GroupsPage([], str(exc))
    return GroupsPage(
        [GroupSummary(str(g.group_id), g.protocol_type, g.group_state) for g in listed], None
    )


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    assignment: list[str]


@dataclass(frozen=True, slots=True)
class OffsetRow:
    topic: str
    partition: int
    committed: int
    high_watermark: int
    last_stable_offset: int
    how: str  # how the commit was written: "transaction", "OffsetCommit", "pending", "?"
    owner: str | None

    @property
    def lag(self) -> int:
        """Kafka's lag (kafka-consumer-groups): high watermark minus committed offset."""
        return max(self.high_watermark - self.committed, 0) if self.high_watermark >= 0 else -1

    @property
    def stable_lag(self) -> int:
        """What a read_committed consumer still can read: LSO minus committed offset."""
        if self.last_stable_offset < 0:
            return -1
        return max(self.last_stable_offset - self.committed, 0)


@dataclass(frozen=True, slots=True)
class GroupPage:
    group_id: str
    state: str | None
    protocol_type: str | None
    protocol: str | None
    members: list[Member]
    members_error: str | None
    offsets: list[OffsetRow]


_HOW = {
    model.Kind.COMMITTED: "transaction",
    model.Kind.OPEN: "pending (open transaction)",
    model.Kind.IDEMPOTENT: "OffsetCommit",
    model.Kind.PLAIN: "OffsetCommit",
}


def group(cluster: Cluster, group_id: str) -> GroupPage:
    members: list[Member] = []
    members_error = None
    state = protocol_type = protocol = None
    owners: dict[TopicPartition, str] = {}
    try:
        described = cluster.describe_group(group_id)
        state, protocol_type = described.group_state, described.protocol_type
        protocol = described.protocol_data
        for m in described.members:
            assigned = decode_assignment(m.member_assignment)
            owners.update((tp, m.member_id) for tp in assigned)
            members.append(
                Member(
                    m.member_id,
                    m.group_instance_id,
                    m.client_id,
                    m.client_host,
                    [f"{t}-{p}" for t, p in assigned],
                )
            )
    except Unsupported as exc:
        members_error = str(exc)
    committed = cluster.committed_offsets(group_id)
    wanted = sorted(committed)
    high = cluster.list_offsets(wanted, READ_UNCOMMITTED, LATEST_TIMESTAMP)
    stable = cluster.list_offsets(wanted, READ_COMMITTED, LATEST_TIMESTAMP)
    how = _commit_kinds(cluster, group_id)
    offsets = [
        OffsetRow(
            topic,
            index,
            committed[(topic, index)],
            high.get((topic, index), -1),
            stable.get((topic, index), -1),
            _HOW.get(how[(topic, index)], "?") if (topic, index) in how else "?",
            owners.get((topic, index)),
        )
        for topic, index in wanted
    ]
    return GroupPage(group_id, state, protocol_type, protocol, members, members_error, offsets)


def _commit_kinds(cluster: Cluster, group_id: str) -> dict[TopicPartition, model.Kind]:
    """How each of the group's latest commits was written, from the tail of its
    `__consumer_offsets` partition (transactional batches are TxnOffsetCommit's)."""
    metadata = cluster.metadata()
    count = sum(1 for topic, _ in metadata.partitions if topic == OFFSETS_TOPIC)
    if count == 0:
        return {}
    index = model.offsets_partition(group_id, count)
    head = cluster.fetch(OFFSETS_TOPIC, index, 0)
    if head.error not in (ErrorCode.none, ErrorCode.offset_out_of_range):
        return {}
    offset = max(head.log_start_offset, head.high_watermark - OFFSETS_SCAN_RECORDS)
    found: dict[TopicPartition, model.Kind] = {}
    # Bounded: at most this many fetches of FETCH_BYTES_MAX each.
    for _ in range(8):
        fetched = cluster.fetch(OFFSETS_TOPIC, index, offset)
        aborted = cluster.fetch(OFFSETS_TOPIC, index, offset, READ_COMMITTED).aborted
        batches = model.classify(fetched.records, aborted, fetched.last_stable_offset)
        if fetched.error != ErrorCode.none or not batches:
            break
        found.update(model.transactional_commits(batches, group_id))
        offset = batches[-1].header.next_offset
        if offset >= fetched.high_watermark:
            break
    return found


def decode_assignment(data: bytes) -> list[TopicPartition]:
    """The topic partitions in a classic consumer's assignment (ConsumerProtocolAssignment,
    any version: they all start version i16, then [topic string, [partition i32]])."""
    try:
        position = 2
        (topics,) = struct.unpack_from(">i", data, position)
        position += 4
        found = []
        for _ in range(max(topics, 0)):
            (length,) = struct.unpack_from(">h", data, position)
            topic = data[position + 2 : position + 2 + length].decode()
            position += 2 + length
            (count,) = struct.unpack_from(">i", data, position)
            position += 4
            for _ in range(max(count, 0)):
                (p,) = struct.unpack_from(">i", data, position)
                position += 4
                found.append((topic, int(p)))
        return found
    except (struct.error, UnicodeDecodeError):
        return []
