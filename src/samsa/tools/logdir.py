"""`samsa log verify`: the checks the broker's loader makes and more, over a whole data dir,
reporting every finding rather than stopping at the first (Kafka's `kafka-dump-log
--deep-iteration`, as a checker).

Per partition, as `PartitionLog.open` would load it:
- every batch of every segment: header (magic, length, offsets following on) and CRC-32C; the
  walk resumes at the next intact batch after damage (`walk.walk`), so one damaged batch does not
  hide another, and a torn tail (nothing intact after it: the broker cuts it off) is told from
  corruption (an intact batch after it: the broker keeps the partition offline);
- the offset index: whole entries, sorted, the first at byte 0, each at the start of an intact
  batch with that base offset; the time index: whole entries, timestamps increasing, offsets
  inside the segment; the aborted-transaction index: whole entries for markers in the segment;
- the segments: offsets contiguous from one to the next, the first at the checkpointed log start
  (or 0), no index file without its log, no producer snapshot past the log end.
For the data dir: `topics.json` and the partition directories agree.

It only reads (`ReadOnlyStorage`), and reads a segment's indexes before its log (the broker
writes a batch before its index entry), so it may run beside a broker. A finding at the end of
the active segment, or in a segment retention deletes meanwhile, can then be a race: check again.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from samsa.broker.topics import DELETE_SUFFIX, METADATA_FILE, PARTITIONS_MAX, check_name_quietly
from samsa.log import swap
from samsa.log.partition import LOG_START_FILE, SNAPSHOT_SUFFIX
from samsa.log.segment import segment_name
from samsa.log.storage import OsStorage
from samsa.tools.walk import (
    Damage,
    is_number,
    list_partition,
    log_name,
    open_segment,
    read_file,
    walk,
)
from samsa.usage import UsageError

# The entry layouts of samsa.log.index and samsa.log.txn_index (the tests check that verify
# passes what the broker writes).
OFFSET_ENTRY = struct.Struct(">ii")  # relative offset, position
TIME_ENTRY = struct.Struct(">qi")  # max timestamp so far, relative offset
TXN_ENTRY = struct.Struct(">hqqqq")  # version, producer id, first, last, last stable offset


@dataclass(frozen=True, slots=True)
class Finding:
    path: str  # relative to the data dir
    position: int | None  # byte position in that file, when there is one
    problem: str

    def __str__(self) -> str:
        where = self.path if self.position is None else f"{self.path} byte {self.position}"
        return f"{where}: {self.problem}"


@dataclass(frozen=True, slots=True, order=True)
class PartitionRef:
    topic: str
    partition: int

    @property
    def name(self) -> str:
        return f"{self.topic}-{self.partition}"


@dataclass(slots=True)
class Report:
    findings: list[Finding] = field(default_factory=list)
    damaged: list[PartitionRef] = field(default_factory=list)  # partitions with findings
    partitions: int = 0
    segments: int = 0
    batches: int = 0
    bytes_checked: int = 0

    def add(self, other: Report) -> None:
        self.findings.extend(other.findings)
        self.damaged.extend(other.damaged)
        self.partitions += other.partitions
        self.segments += other.segments
        self.batches += other.batches
        self.bytes_checked += other.bytes_checked

    @property
    def summary(self) -> str:
        found = len(self.findings)
        verdict = "no problems" if not found else f"{found} problem{'s' if found > 1 else ''}"
        return (
            f"checked {self.partitions} partition(s), {self.segments} segment(s), "
            f"{self.batches} batch(es), {self.bytes_checked} byte(s): {verdict}"
        )


def verify(data_dir: str, topic: str | None = None, partition: int | None = None) -> Report:
    """Check the data dir, or one topic, or one partition; `UsageError` if it is not there."""
    refs, findings = select_partitions(data_dir, topic, partition)
    report = Report(findings=findings)
    for ref in refs:
        report.add(check_partition(data_dir, ref))
    return report


# ----------------------------------------------------------------- the data dir
def parse_partition_dir(name: str) -> PartitionRef | None:
    """`<topic>-<partition>`, as the broker names (and recognises) partition directories."""
    topic, dash, number = name.rpartition("-")
    if not dash or not is_number(number) or (number != "0" and number.startswith("0")):
        return None
    if check_name_quietly(topic) is not None:
        return None
    return PartitionRef(topic, int(number))


def select_partitions(
    data_dir: str, topic: str | None, partition: int | None
) -> tuple[list[PartitionRef], list[Finding]]:
    """The partitions to check, and what is wrong between `topics.json` and the directories."""
    if not os.path.isdir(data_dir):
        raise UsageError(f"no data dir {data_dir}")
    findings: list[Finding] = []
    listed = _listed_partitions(data_dir, findings)
    on_disk = _partition_dirs(data_dir)
    refs = set(on_disk) | {PartitionRef(t, p) for t, count in listed.items() for p in range(count)}
    if topic is not None:
        refs = {ref for ref in refs if ref.topic == topic}
        if not refs:
            raise UsageError(f"no topic {topic} in {data_dir}")
    if partition is not None:
        refs = {ref for ref in refs if ref.partition == partition}
        if not refs:
            raise UsageError(f"no partition {partition} of topic {topic} in {data_dir}")
    wanted: list[PartitionRef] = []
    for ref in sorted(refs):
        if ref not in on_disk:
            findings.append(
                Finding(ref.name, None, f"listed in {METADATA_FILE}, but its directory is missing")
            )
        elif ref.partition < listed.get(ref.topic, 0):
            wanted.append(ref)
        elif on_disk[ref]:
            findings.append(
                Finding(
                    ref.name,
                    None,
                    f"not listed in {METADATA_FILE}: the broker adds it back with default "
                    "configs, or refuses to start if the topic's partitions are unclear",
                )
            )
            wanted.append(ref)
        # else: no data, what an interrupted creation leaves; the broker removes it
    return wanted, findings


def _listed_partitions(data_dir: str, findings: list[Finding]) -> dict[str, int]:
    """topic -> partition count, from `topics.json`; its problems go to `findings`."""
    raw = read_file(os.path.join(data_dir, METADATA_FILE))
    if not raw:
        if _partition_dirs(data_dir):
            findings.append(Finding(METADATA_FILE, None, "missing or empty"))
        return {}
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        findings.append(Finding(METADATA_FILE, None, f"not valid JSON ({exc})"))
        return {}
    if not isinstance(entries, dict):
        findings.append(Finding(METADATA_FILE, None, "not a JSON object"))
        return {}
    listed: dict[str, int] = {}
    for name, entry in entries.items():
        count = entry.get("partitions") if isinstance(entry, dict) else None
        if not isinstance(count, int) or not 0 <= count <= PARTITIONS_MAX:
            findings.append(
                Finding(METADATA_FILE, None, f"topic {name!r}: partition count {count!r}")
            )
            continue
        listed[name] = count
    return listed


def _partition_dirs(data_dir: str) -> dict[PartitionRef, bool]:
    """The partition directories holding segments (as the broker tells them: some `.log`
    file), each with whether any of its segments holds data."""
    found: dict[PartitionRef, bool] = {}
    for name in os.listdir(data_dir):
        path = os.path.join(data_dir, name)
        ref = parse_partition_dir(name)
        if ref is None or name.endswith(DELETE_SUFFIX) or not os.path.isdir(path):
            continue
        logs = [n for n in os.listdir(path) if n.endswith(".log")]
        if logs:
            found[ref] = any(os.path.getsize(os.path.join(path, n)) > 0 for n in logs)
    return found


# ----------------------------------------------------------------- one partition
@dataclass(frozen=True, slots=True)
class _Walked:
    """What walking one segment found."""

    size: int
    batches: int
    next_offset: int  # after its last intact batch; its base offset if it has none
    damage: list[Damage]
    ends_intact: bool  # no damage after its last intact batch


def check_partition(data_dir: str, ref: PartitionRef) -> Report:
    report = Report(partitions=1)
    directory = os.path.join(data_dir, ref.name)
    found = report.findings
    files = list_partition(directory)
    if files.log_start_problem is not None:
        found.append(Finding(f"{ref.name}/{LOG_START_FILE}", None, files.log_start_problem))
    for base, suffix in files.orphans:
        found.append(
            Finding(
                f"{ref.name}/{segment_name(base)}{suffix}",
                None,
                f"its log {log_name(base)} is missing: that segment was lost",
            )
        )
    if not files.bases:
        found.append(Finding(ref.name, None, "no segment file: the log is gone"))
    elif files.bases[0] > files.expected_start:
        source = (
            "its log-start-offset checkpoint" if files.log_start is not None else "no checkpoint"
        )
        found.append(
            Finding(
                f"{ref.name}/{log_name(files.expected_start)}",
                None,
                f"missing: the log starts at offset {files.expected_start} ({source}), its "
                f"first segment at {files.bases[0]}",
            )
        )
    # Below the log cleaner's checkpoint, a gap between segments is records it removed.
    try:
        _, compacted = swap.read_checkpoint(OsStorage(), directory)
    except swap.CleanerFilesDamaged as exc:
        found.append(Finding(f"{ref.name}/{swap.CHECKPOINT_FILE}", None, str(exc)))
        compacted = 0
    damage: list[tuple[str, Damage, int, int]] = []  # path, damage, segment size, intact before
    previous: tuple[str, _Walked] | None = None
    for base in files.bases:
        path = f"{ref.name}/{log_name(base)}"
        walked = _check_segment(directory, base, path, found)
        report.segments += 1
        report.batches += walked.batches
        report.bytes_checked += walked.size
        damage.extend((path, d, walked.size, report.batches) for d in walked.damage)
        compacted_gap = previous is not None and previous[1].next_offset < base <= compacted
        if previous is not None and previous[1].ends_intact and not compacted_gap:
            found.extend(_boundary(path, base, previous[0], previous[1].next_offset))
        previous = log_name(base), walked
    for path, d, size, intact_before in damage:
        found.append(_damage_finding(path, d, size, intact_after=report.batches > intact_before))
    if previous is not None and previous[1].ends_intact:
        end = previous[1].next_offset
        for offset in files.snapshots:
            if offset > end:
                found.append(
                    Finding(
                        f"{ref.name}/{segment_name(offset)}{SNAPSHOT_SUFFIX}",
                        None,
                        f"a producer snapshot at offset {offset}, past the log end {end}: the "
                        "log lost its end (after a clean stop the broker refuses the partition)",
                    )
                )
    if found:
        report.damaged.append(ref)
    return report


def _boundary(path: str, base: int, previous: str, previous_end: int) -> list[Finding]:
    if previous_end < base:
        return [
            Finding(
                path,
                None,
                f"offsets {previous_end}-{base - 1} are missing between {previous} and this "
                "segment",
            )
        ]
    if previous_end > base:
        return [
            Finding(
                path, None, f"starts at offset {base}, below the end of {previous} ({previous_end})"
            )
        ]
    return []


def _damage_finding(path: str, damage: Damage, size: int, intact_after: bool) -> Finding:
    if damage.end < size:
        after = f"the next intact batch is at byte {damage.end}"
    elif intact_after:
        after = "nothing intact after it in this segment, but later segments hold intact batches"
    else:
        after = "nothing intact after it: a torn tail, which the broker cuts off when it loads"
    return Finding(
        path, damage.start, f"{damage.problem} (expected offset {damage.expected_offset}); {after}"
    )


def _check_segment(directory: str, base: int, path: str, found: list[Finding]) -> _Walked:
    stem = os.path.join(directory, segment_name(base))
    # The indexes first: every entry in them then points at bytes already in the log.
    offset_index = read_file(stem + ".index")
    time_index = read_file(stem + ".timeindex")
    txn_index = read_file(stem + ".txnindex")
    indexed = {position: -1 for _, position in _entries(OFFSET_ENTRY, offset_index)}
    segment = open_segment(directory, base)
    batches, next_offset, ends_intact = 0, base, True
    damage: list[Damage] = []
    try:
        size = segment.size
        for item in walk(segment, base):
            if isinstance(item, Damage):
                damage.append(item)
                ends_intact = False
                continue
            batches += 1
            next_offset = item.header.next_offset
            ends_intact = True
            if item.position in indexed:
                indexed[item.position] = item.header.base_offset
    finally:
        segment.close()
    stem_path = path[: -len(".log")]
    problems = (
        (".index", _offset_index_problem(offset_index, base, size, indexed, damage)),
        (".timeindex", _time_index_problem(time_index, base, next_offset, size)),
        (".txnindex", _txn_index_problem(txn_index, base, next_offset)),
    )
    for suffix, problem in problems:
        if problem is not None:
            found.append(Finding(stem_path + suffix, problem[0], problem[1]))
    return _Walked(size, batches, next_offset, damage, ends_intact)


# ----------------------------------------------------------------- the indexes
# Each check returns the first problem of an index file, (byte position, what): one is enough to
# say the file is wrong, and a damaged index usually has many.
Problem = tuple[int | None, str] | None


def _entries(entry: struct.Struct, data: bytes) -> Iterable[tuple[int, ...]]:
    return entry.iter_unpack(data[: len(data) - len(data) % entry.size])


def _partial(entry: struct.Struct, data: bytes) -> Problem:
    extra = len(data) % entry.size
    if extra:
        return len(data) - extra, f"a partial entry ({extra} of {entry.size} bytes)"
    return None


def _offset_index_problem(
    data: bytes, base: int, log_size: int, indexed: Mapping[int, int], damage: list[Damage]
) -> Problem:
    if not data and log_size:
        return None, "empty, though the log holds data (the broker rebuilds it when it loads)"
    last: tuple[int, int] | None = None
    for i, (relative, position) in enumerate(_entries(OFFSET_ENTRY, data)):
        at, offset = i * OFFSET_ENTRY.size, base + relative
        if last is not None and (offset <= last[0] or position <= last[1]):
            return at, f"offset {offset} at byte {position} after offset {last[0]} at {last[1]}"
        if last is None and position != 0:
            return at, f"the first entry points at byte {position}, not the segment's start"
        if position >= log_size:
            return at, f"points at byte {position}, past the end of the log ({log_size} bytes)"
        found = indexed.get(position, -1)
        if found < 0 and not any(d.start <= position < d.end for d in damage):
            return at, f"offset {offset}: byte {position} is not the start of an intact batch"
        if found >= 0 and found != offset:
            return at, f"offset {offset}, but the batch at byte {position} starts at {found}"
        last = offset, position
    return _partial(OFFSET_ENTRY, data)


def _time_index_problem(data: bytes, base: int, next_offset: int, log_size: int) -> Problem:
    if not data and log_size:
        return None, "empty, though the log holds data (the broker rebuilds it when it loads)"
    last_timestamp: int | None = None
    last_offset = base
    for i, (timestamp, relative) in enumerate(_entries(TIME_ENTRY, data)):
        at, offset = i * TIME_ENTRY.size, base + relative
        if last_timestamp is not None and timestamp <= last_timestamp:
            return at, f"timestamp {timestamp} is not above the one before it ({last_timestamp})"
        if not base <= offset < next_offset:
            return at, f"offset {offset} is outside the segment's offsets {base}-{next_offset - 1}"
        if offset < last_offset:
            return at, f"offset {offset} is below the one before it ({last_offset})"
        last_timestamp, last_offset = timestamp, offset
    return _partial(TIME_ENTRY, data)


def _txn_index_problem(data: bytes, base: int, next_offset: int) -> Problem:
    for i, (version, _, first, last, _) in enumerate(_entries(TXN_ENTRY, data)):
        at = i * TXN_ENTRY.size
        if version != 0:
            return at, f"version {version}, expected 0"
        if first > last:
            return at, f"first offset {first} after the marker's offset {last}"
        if not base <= last < next_offset:
            return (
                at,
                f"marker offset {last} is outside the segment's offsets {base}-{next_offset - 1}",
            )
    return _partial(TXN_ENTRY, data)
