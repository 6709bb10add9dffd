"""A partition's files read as they are: which segments and indexes it holds, and every segment
walked batch by batch, past any damage.

The broker's loader (`PartitionLog.open`) stops at the first damage: it only has to decide
whether a partition can serve. The tools go on past it, resuming at the next whole, CRC-valid
batch (`Segment.find_valid_batch`), so that `samsa log verify` reports all of the damage and
`samsa log repair` keeps every intact batch. Everything here only reads (`ReadOnlyStorage`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from samsa.log.partition import (
    LOG_START_FILE,
    SEGMENT_SUFFIXES,
    SNAPSHOT_SUFFIX,
    first_kept_segment,
)
from samsa.log.segment import Segment, batch_problem, segment_name
from samsa.protocol.batch import BatchHeader, crc_ok
from samsa.tools.readonly import ReadOnlyStorage

# The tools never append, so the index interval of the segments they open does not matter.
_NO_INDEXING = 1 << 62


@dataclass(frozen=True, slots=True)
class Intact:
    """A whole batch whose header is plausible, whose offsets follow on, and whose CRC matches."""

    position: int
    header: BatchHeader
    data: bytes


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes `start` to `end` of a segment hold no intact batch; `end` is where the next intact
    one starts (or the end of the file). `expected_offset` is the offset the log was at."""

    start: int
    end: int
    problem: str
    expected_offset: int


def walk(segment: Segment, expected_offset: int) -> Iterator[Intact | Damage]:
    """Every intact batch of the segment in order, and every damaged region between them.

    A batch is intact when `batch_problem` finds nothing wrong with it (its base offset not
    below `expected_offset`, then the last one's next offset) and its CRC-32C matches: the
    checks `Segment.scan` makes, carried on past the first failure."""
    size = segment.size
    position = 0
    while position < size:
        problem: str | None = None
        for at, header in segment.batches(position, size):
            problem = batch_problem(header, expected_offset)
            data = b"" if problem else segment.read(at, at + header.size)
            if problem is None and not crc_ok(data, 0, header):
                problem = "CRC-32C mismatch"
            if problem is not None:
                position = at
                break
            yield Intact(at, header, data)
            expected_offset = header.next_offset
            position = at + header.size
        if position >= size:
            return
        problem = problem or "a partial or unreadable batch"
        resume = segment.find_valid_batch(position + 1, expected_offset)
        end = size if resume is None else resume
        yield Damage(position, end, problem, expected_offset)
        position = end


def open_segment(directory: str, base_offset: int) -> Segment:
    return Segment(ReadOnlyStorage(), directory, base_offset, _NO_INDEXING)


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


@dataclass(frozen=True, slots=True)
class PartitionFiles:
    """What a partition directory holds, named as `PartitionLog` names its files."""

    directory: str
    log_start: int | None  # the checkpointed log start (`log-start-offset`), if any
    log_start_problem: str | None  # why the checkpoint could not be read
    bases: list[int]  # base offsets of the `.log` files from the one holding the log start
    below_start: list[int]  # `.log` files wholly below the log start: the broker deletes them
    orphans: list[tuple[int, str]]  # (base offset, suffix) of index files without their log
    snapshots: list[int]  # offsets of the producer snapshots

    @property
    def expected_start(self) -> int:
        """Where the loader expects the first segment: the checkpoint, or else offset 0."""
        return 0 if self.log_start is None else self.log_start


def list_partition(directory: str) -> PartitionFiles:
    names = set(os.listdir(directory))
    log_start: int | None = None
    problem: str | None = None
    if LOG_START_FILE in names:
        text = read_file(os.path.join(directory, LOG_START_FILE)).decode(errors="replace").strip()
        if is_number(text):
            log_start = int(text)
        else:
            problem = f"unreadable log start checkpoint: {text[:40]!r}"
    logs = _numbered(names, ".log")
    kept = first_kept_segment(logs, 0 if log_start is None else log_start)
    below = [b for b in logs if b < kept]
    bases = [b for b in logs if b not in below]
    orphans = [
        (base, suffix)
        for suffix in SEGMENT_SUFFIXES[1:]
        for base in _numbered(names, suffix)
        if base not in logs and base >= kept
    ]
    return PartitionFiles(
        directory,
        log_start,
        problem,
        bases,
        below,
        sorted(orphans),
        _numbered(names, SNAPSHOT_SUFFIX),
    )


def _numbered(names: set[str], suffix: str) -> list[int]:
    return sorted(
        int(name[: -len(suffix)])
        for name in names
        if name.endswith(suffix) and is_number(name[: -len(suffix)])
    )


def is_number(text: str) -> bool:
    """ASCII digits only: `str.isdigit` also accepts digits `int` cannot parse."""
    return text.isascii() and text.isdigit()


def log_name(base_offset: int) -> str:
    return segment_name(base_offset) + ".log"
