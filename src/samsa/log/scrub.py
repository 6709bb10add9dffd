"""The scrubber: finds corruption at rest before a reader does.

A single broker has no replica to compare with or repair from, and sealed segments are never
read back by the broker itself, so a byte flipped on disk in an old segment would be served to
consumers as good data (librdkafka does not check CRCs by default). Like a filesystem scrub,
the scrubber reads every segment of every online partition, batch by batch, checking each
batch's header and CRC-32C, at a bounded rate, and starts again every `interval_ms`.

A mismatch takes the partition offline (KAFKA_STORAGE_ERROR to clients) with one ERROR line
naming the file and byte position; `samsa log repair` is the way back. The scrubber is a plain
object driven by `step(budget_bytes)`, so the server paces it on its event loop (where the
appends happen too: a step never sees half an append) and tests drive it directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from samsa.log.partition import PartitionLog
from samsa.log.segment import Segment, batch_problem
from samsa.protocol.batch import HEADER_BYTES, crc_ok, iter_batches, parse_header

log = logging.getLogger("samsa.scrub")

# The most one read takes; a batch larger than this is read whole on its own.
READ_BYTES_MAX = 1 << 20


@dataclass(slots=True)
class ScrubStatus:
    passes_completed: int = 0
    pass_started_ms: int = -1  # -1: no pass running
    pass_bytes_total: int = 0
    pass_bytes_verified: int = 0
    bytes_verified: int = 0  # over the broker's life
    last_pass_ms: int = -1  # how long the last completed pass took
    findings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Cursor:
    log: PartitionLog
    segment: Segment
    position: int
    end: int
    expected_offset: int


class Scrubber:
    def __init__(
        self,
        logs: Callable[[], Iterable[PartitionLog]],
        clock_ms: Callable[[], int],
        interval_ms: int,
    ) -> None:
        self._logs = logs
        self._clock_ms = clock_ms
        self.interval_ms = interval_ms
        self.status = ScrubStatus()
        self._queue: list[tuple[PartitionLog, Segment]] = []
        self._cursor: _Cursor | None = None
        self._next_pass_ms = clock_ms()  # the first pass starts at once

    def step(self, budget_bytes: int) -> int:
        """Verify up to about `budget_bytes` (whole batches); returns the bytes verified."""
        done = 0
        while done < budget_bytes:
            cursor = self._cursor or self._next_segment()
            if cursor is None:
                break
            done += self._verify(cursor, budget_bytes - done)
        self.status.bytes_verified += done
        self.status.pass_bytes_verified += done
        return done

    # ----------------------------------------------------------------- passes and segments
    def _next_segment(self) -> _Cursor | None:
        if not self._queue and not self._start_pass():
            return None
        while self._queue:
            partition_log, segment = self._queue.pop(0)
            if _gone(partition_log, segment):
                continue
            self._cursor = _Cursor(partition_log, segment, 0, segment.size, segment.base_offset)
            return self._cursor
        self._finish_pass()
        return None

    def _start_pass(self) -> bool:
        now = self._clock_ms()
        if self.status.pass_started_ms >= 0:
            self._finish_pass()
            return False
        if now < self._next_pass_ms:
            return False
        self._queue = [(p, s) for p in self._logs() for s in list(p.segments)]
        self.status.pass_started_ms = now
        self.status.pass_bytes_total = sum(s.size for _, s in self._queue)
        self.status.pass_bytes_verified = 0
        self._next_pass_ms = now + self.interval_ms
        return bool(self._queue)

    def _finish_pass(self) -> None:
        status = self.status
        if status.pass_started_ms < 0:
            return
        status.last_pass_ms = self._clock_ms() - status.pass_started_ms
        status.passes_completed += 1
        log.info(
            "scrub pass %d done: %d byte(s) verified in %.1f s, %d finding(s) so far",
            status.passes_completed,
            status.pass_bytes_verified,
            status.last_pass_ms / 1000,
            len(status.findings),
        )
        status.pass_started_ms = -1

    # ----------------------------------------------------------------- verifying
    def _verify(self, cursor: _Cursor, budget_bytes: int) -> int:
        """Check whole batches from the cursor; returns the bytes covered."""
        segment = cursor.segment
        if _gone(cursor.log, segment):
            self._cursor = None
            return 0
        end = min(cursor.end, segment.size)  # a failed append may have been cut back
        if cursor.position >= end:
            self._cursor = None
            return 0
        want = min(end - cursor.position, max(budget_bytes, HEADER_BYTES), READ_BYTES_MAX)
        data = segment.read(cursor.position, cursor.position + want)
        batches = list(iter_batches(data))
        if not batches:  # a batch larger than one read, or damage in its header
            if len(data) < HEADER_BYTES:
                return self._found(cursor, "a partial batch at the end of the segment")
            header = parse_header(data)
            problem = batch_problem(header, cursor.expected_offset)
            if problem is not None or cursor.position + header.size > end:
                return self._found(cursor, problem or "a batch running past the segment's end")
            data = segment.read(cursor.position, cursor.position + header.size)
            batches = [(0, header)]
        for relative, header in batches:
            problem = batch_problem(header, cursor.expected_offset)
            if problem is None and not crc_ok(data, relative, header):
                problem = "CRC-32C mismatch"
            if problem is not None:
                cursor.position += relative
                return relative + self._found(cursor, problem)
            cursor.expected_offset = header.next_offset
        covered = batches[-1][0] + batches[-1][1].size
        cursor.position += covered
        return covered

    def _found(self, cursor: _Cursor, problem: str) -> int:
        finding = (
            f"{cursor.segment.path}.log at byte {cursor.position}: {problem} "
            f"(after offset {cursor.expected_offset - 1})"
        )
        self.status.findings.append(finding)
        cursor.log.go_offline(f"scrub found corruption: {finding}")
        self._queue = [(p, s) for p, s in self._queue if p is not cursor.log]
        self._cursor = None
        return 0


def _gone(partition_log: PartitionLog, segment: Segment) -> bool:
    """Deleted (retention, a deleted topic) or offline since it was queued."""
    return (
        partition_log.offline is not None
        or partition_log.deleted
        or segment not in partition_log.segments
    )
