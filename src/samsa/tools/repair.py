"""`samsa log repair`: give a damaged partition back to the broker, keeping every intact batch
and saying exactly which offsets were lost.

Theory of operation. The broker keeps a damaged partition offline with its files untouched
(`CorruptLog`); a single broker has no replica to copy from, so what the damage took is gone,
and the best repair keeps everything else. With the data dir locked (no broker may run):

1. `samsa log verify`'s checks of the partition; nothing found, nothing to do.
2. Every segment is walked (`walk.walk`), resuming at the next intact batch after damage. The
   intact batches are copied, in offset order, into new segments in a staging directory, one
   per original segment that still holds any. The loader treats a gap *between* segments as a
   lost segment, but allows a hole *inside* one (a batch's base offset need only not be below
   the expected one), so each new segment after the first starts at the previous one's next
   offset, and a hole lands inside the segment after it. The first starts at the first kept
   offset, checkpointed as the log start if above 0. Indexes are written as the broker writes
   them. Producer snapshots are not copied: the broker rebuilds producer state, and the
   aborted-transaction index, by replaying the log.
3. The staging directory must open with `PartitionLog.open(recover=True, create=False)`.
4. The partition directory is renamed to `<topic>-<partition>.repair-<UTC time>` (the originals,
   all of them, kept for the operator to inspect and delete), the staging directory to the
   partition directory. Neither extra name ends in `-<digits>`, so the broker never takes one for
   a partition directory (nor in `-delete`, for a deletion to finish).

Lost offsets are the gaps between kept batches that damage or a missing segment explains (a
hole an earlier repair left is not reported again), and the tail after the last kept batch if
damage follows it: the old end of the log is then unknown, and new writes reuse those offsets.
A consumer whose position was past the new end is reset (OFFSET_OUT_OF_RANGE).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

from samsa.broker.topics import METADATA_FILE
from samsa.log.partition import LOG_START_FILE, CorruptLog, LogConfig, PartitionLog
from samsa.log.segment import Segment
from samsa.log.storage import DataDirLocked, OsStorage
from samsa.protocol.batch import BatchHeader
from samsa.tools.logdir import Finding, PartitionRef, check_partition
from samsa.tools.walk import Damage, PartitionFiles, list_partition, log_name, open_segment, walk
from samsa.usage import UsageError

REPAIR_INFIX = ".repair-"
STAGING_SUFFIX = ".new"
DEFAULT_INDEX_INTERVAL_BYTES = LogConfig().index_interval_bytes


class RepairFailed(Exception):
    """The repaired copy did not open; the partition's files were left as they were."""


@dataclass(frozen=True, slots=True)
class Lost:
    first: int
    last: int | None  # None: the tail, whose end is unknown
    cause: str

    def __str__(self) -> str:
        if self.last is None:
            return f"lost offsets from {self.first} on ({self.cause}; the old log end is unknown)"
        if self.first == self.last:
            return f"lost offset {self.first} ({self.cause})"
        return f"lost offsets {self.first}-{self.last} ({self.cause})"


@dataclass(slots=True)
class Outcome:
    partition: PartitionRef
    findings: list[Finding]
    dry_run: bool
    lost: list[Lost] = field(default_factory=list)
    kept_batches: int = 0
    segments: list[tuple[int, int]] = field(default_factory=list)  # (base, next offset) each
    log_start: int = 0
    aside: str | None = None  # where the originals are (or would go)
    open_transactions: dict[int, int] = field(default_factory=dict)  # producer -> first offset

    @property
    def needed(self) -> bool:
        return bool(self.findings)

    @property
    def log_end(self) -> int:
        return self.segments[-1][1] if self.segments else self.log_start


def repair(
    data_dir: str, topic: str, partition: int, now: datetime, dry_run: bool = False
) -> Outcome:
    """Repair one partition of a stopped broker's data dir (see the module's docstring).

    `UsageError` if the partition is not there or a broker holds the data dir; `RepairFailed`
    (nothing changed) if the repaired copy does not open."""
    ref = PartitionRef(topic, partition)
    directory = os.path.join(data_dir, ref.name)
    if not os.path.isdir(directory):
        raise UsageError(f"no partition directory {directory}")
    storage = OsStorage()
    try:
        lock = storage.lock(data_dir)
    except DataDirLocked as exc:
        raise UsageError(f"{exc}: stop the broker first") from None
    try:
        outcome = Outcome(ref, check_partition(data_dir, ref).findings, dry_run)
        if not outcome.needed:
            return outcome
        stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = f"{directory}{REPAIR_INFIX}{stamp}"
        if os.path.exists(aside):
            raise UsageError(f"{aside} exists already: try again in a second")
        outcome.aside = aside
        interval = _index_interval_bytes(data_dir, topic)
        staging = None if dry_run else aside + STAGING_SUFFIX
        try:
            _copy(list_partition(directory), staging, interval, outcome)
            if staging is not None:
                _check_and_swap(storage, staging, directory, aside, outcome, interval, now)
        except BaseException:
            # Until the partition directory is renamed, the originals are where they were and
            # the staging copy is the only thing made: remove it.
            if staging is not None and os.path.isdir(directory):
                storage.rmtree(staging)
            raise
        return outcome
    finally:
        lock.release()


def _copy(files: PartitionFiles, staging: str | None, interval: int, outcome: Outcome) -> None:
    """Walk the original segments in order; copy each intact batch (into `staging`, unless a
    dry run); record the damage dropped and the offsets lost."""
    writer = _Writer(staging, interval)
    expected = files.expected_start
    cause: str | None = None  # what explains a gap before the next kept batch
    if files.bases and files.bases[0] > expected:
        cause = f"missing before {log_name(files.bases[0])}"
    previous: str | None = None
    for base in files.bases:
        name = log_name(base)
        if cause is None and previous is not None and base > expected:
            cause = f"missing between {previous} and {name}"
        segment = open_segment(files.directory, base)
        try:
            opened = False
            # The first segment may begin below the log start (DeleteRecords): walk it whole.
            first = base if previous is None else max(base, expected)
            for item in walk(segment, first):
                if isinstance(item, Damage):
                    cause = cause or f"damage at {name} byte {item.start}"
                    continue
                header = item.header
                if header.base_offset > expected and cause is not None:
                    outcome.lost.append(Lost(expected, header.base_offset - 1, cause))
                cause = None
                if not opened:
                    writer.start_segment(header.base_offset)
                    opened = True
                writer.append(header, item.data)
                expected = header.next_offset
        finally:
            segment.close()
        previous = name
    for base, suffix in files.orphans:
        if cause is None and base >= expected:
            cause = f"{log_name(base)} missing, its {suffix} is there"
    if cause is not None:
        outcome.lost.append(Lost(expected, None, cause))
    # DeleteRecords may have put the log start inside the first segment: it stays there.
    outcome.log_start = writer.finish(
        expected if not writer.segments else None, files.expected_start
    )
    outcome.kept_batches = writer.batches
    outcome.segments = writer.segments


class _Writer:
    """New segments, each starting at the previous one's next offset (with no target
    directory, a dry run: it only counts)."""

    def __init__(self, directory: str | None, interval: int) -> None:
        self.directory = directory
        self.interval = interval
        self.segments: list[tuple[int, int]] = []  # (base offset, next offset)
        self.batches = 0
        self._open: Segment | None = None
        if directory is not None:
            os.makedirs(directory)

    def start_segment(self, first_offset: int) -> None:
        self._close()
        base = self.segments[-1][1] if self.segments else first_offset
        self.segments.append((base, base))
        if self.directory is not None:
            self._open = Segment(OsStorage(), self.directory, base, self.interval)

    def append(self, header: BatchHeader, data: bytes) -> None:
        if self._open is not None:
            self._open.append(header, data)
        self.segments[-1] = (self.segments[-1][0], header.next_offset)
        self.batches += 1

    def finish(self, empty_log_start: int | None, log_start: int) -> int:
        """Close the last segment; with nothing kept, write one empty segment at
        `empty_log_start` (the loader needs a segment). Checkpoint the log start (the first
        segment's base, or `log_start` if later) if above 0, and return it."""
        if empty_log_start is not None:
            self.start_segment(empty_log_start)
        self._close()
        start = max(self.segments[0][0], log_start)
        if self.directory is not None and start > 0:
            OsStorage().write_atomic(
                os.path.join(self.directory, LOG_START_FILE), f"{start}\n".encode()
            )
        return start

    def _close(self) -> None:
        if self._open is not None:
            self._open.sync()
            self._open.sync_indexes()
            self._open.close()
            self._open = None


def _check_and_swap(
    storage: OsStorage,
    staging: str,
    directory: str,
    aside: str,
    outcome: Outcome,
    interval: int,
    now: datetime,
) -> None:
    ref = outcome.partition
    config = LogConfig(index_interval_bytes=interval)
    now_ms = int(now.timestamp() * 1000)
    try:
        opened = PartitionLog.open(
            storage, staging, ref.topic, ref.partition, config, now_ms, recover=True, create=False
        )
    except CorruptLog as exc:
        raise RepairFailed(f"the repaired copy does not open ({exc}); nothing was changed") from exc
    outcome.open_transactions = opened.producers.open_transactions()
    opened.close_files()
    storage.sync_dir(staging)
    storage.rename(directory, aside)
    try:
        storage.rename(staging, directory)
    except OSError as exc:
        raise RepairFailed(
            f"the originals are in {aside}, the repaired copy in {staging}, but renaming it to "
            f"{directory} failed ({exc}): rename it by hand"
        ) from exc
    storage.sync_dir(os.path.dirname(directory))


def _index_interval_bytes(data_dir: str, topic: str) -> int:
    """The topic's `index.interval.bytes` if `topics.json` sets it; else the default."""
    try:
        with open(os.path.join(data_dir, METADATA_FILE), "rb") as f:
            value = json.load(f)[topic]["configs"]["index.interval.bytes"]
        return int(value)
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_INDEX_INTERVAL_BYTES


def describe(outcome: Outcome, data_dir: str) -> list[str]:
    """What `samsa log repair` prints."""
    name = outcome.partition.name
    if not outcome.needed:
        return [f"{name}: nothing to repair (verify found no problem)"]
    keep = "would keep" if outcome.dry_run else "kept"
    lines = [str(finding) for finding in outcome.findings]
    lines += [str(lost) for lost in outcome.lost] or ["no offsets lost"]
    lines.append(
        f"{keep} {outcome.kept_batches} batch(es) in {len(outcome.segments)} segment(s): "
        f"log start {outcome.log_start}, log end {outcome.log_end}"
    )
    aside = os.path.relpath(outcome.aside, data_dir) if outcome.aside else "?"
    if outcome.dry_run:
        lines.append(f"would move the original files to {aside} (dry run: nothing changed)")
        return lines
    lines.append(f"moved the original files to {aside} (delete it once satisfied)")
    for producer_id, first_offset in sorted(outcome.open_transactions.items()):
        lines.append(
            f"producer {producer_id} has a transaction open from offset {first_offset}: if its "
            f"marker was lost it hangs; see `samsa txn find-hanging` and `samsa txn abort`"
        )
    lines.append(f"repaired {name}: the broker rebuilds producer state from the log on start")
    return lines
