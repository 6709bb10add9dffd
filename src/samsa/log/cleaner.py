"""The log cleaner: compacts the partitions whose `cleanup.policy` holds `compact`.

Theory of operation. `LogCleaner.step(budget_bytes)` does a bounded slice of work and returns
the bytes it read and wrote; the server calls it on its event loop in short time slices, paced
to `log.cleaner.io.max.bytes.per.second` (Kafka's cleaner runs on its own threads; samsa's
event loop is its only writer, so a slice never sees half an append and needs no lock). The
simulation and the tests drive it the same way.

A pass over one log (`_clean`, a generator that yields after each batch it reads or writes):
1. `compaction.plan` picks the range, from the log's first dirty offset to a segment
   boundary below its last stable offset, if it is dirty enough (the dirtiest log first).
2. The offset map is built over the dirty range.
3. The segments from the log start to the end of the range are rewritten in groups (each at
   most `segment.bytes`) into `.cleaned` files beside them, and each group is swapped in as
   `samsa.log.swap` describes, crash-safe; in memory the group's segments are replaced by
   the new one between two slices, so a reader sees the old segments or the new one.
4. The checkpoint moves the first dirty offset to the end of the range.

If the log changes under a pass in a way it cannot follow (retention or DeleteRecords removed
a segment of the group, the log went offline or was deleted), the pass is dropped and its
`.cleaned` files removed; a later pass starts again. `crash_hook` is called with the name of
each step of a swap: tests raise there to stop a pass as a `kill -9` would.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from samsa.log import swap
from samsa.log.compaction import (
    AbortedRanges,
    CleaningPass,
    CleanRange,
    OffsetMap,
    SegmentInfo,
    plan,
    raw_records,
)
from samsa.log.partition import PartitionLog
from samsa.log.segment import Segment, segment_name
from samsa.log.txn_index import AbortedTxn
from samsa.protocol.batch import parse_header
from samsa.protocol.compression import DecompressionFailed
from samsa.protocol.records_walk import RecordsInvalid

log = logging.getLogger("samsa.cleaner")

SWAP_STEPS = ("built", "committed", "old-deleted", "renamed", "swapped", "checkpointed")


@dataclass(frozen=True, slots=True)
class IoJob:
    """Blocking work a pass needs done before it goes on (the fsyncs of a cleaned segment):
    it touches only the pass's own new files, so it may run on another thread."""

    calls: tuple[Callable[[], None], ...]

    def __init__(self, *calls: Callable[[], None]) -> None:
        object.__setattr__(self, "calls", calls)

    def run(self) -> None:
        for call in self.calls:
            call()


class PassDropped(Exception):
    """The log changed under a pass in a way it cannot follow; the pass starts over later."""


@dataclass(slots=True)
class CleanerStats:
    passes: int = 0
    passes_dropped: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    records_removed: int = 0
    batches_removed: int = 0


def segment_infos(partition_log: PartitionLog) -> list[SegmentInfo]:
    return [
        SegmentInfo(s.base_offset, s.next_offset, s.size, s.max_timestamp, s.first_batch_timestamp)
        for s in partition_log.segments
    ]


def first_dirty_offset(partition_log: PartitionLog) -> int:
    return max(partition_log.cleaner_first_dirty, partition_log.log_start_offset)


def plan_for(partition_log: PartitionLog, now_ms: int) -> CleanRange | None:
    if partition_log.offline is not None or partition_log.deleted:
        return None
    # A segment an fsync round has yet to cover is not cleaned (nor anything after it).
    unsynced = [s.base_offset for s in partition_log.segments if not partition_log.is_synced(s)]
    return plan(
        segment_infos(partition_log),
        first_dirty_offset(partition_log),
        min([partition_log.last_stable_offset, *unsynced]),
        now_ms,
        partition_log.config.compaction,
    )


class LogCleaner:
    def __init__(
        self,
        logs: Callable[[], Iterable[PartitionLog]],
        clock_ms: Callable[[], int],
        backoff_ms: int = 1000,
        crash_hook: Callable[[str], None] | None = None,
    ) -> None:
        self._logs = logs
        self._clock_ms = clock_ms
        self.backoff_ms = backoff_ms
        self.crash_hook = crash_hook
        self.stats = CleanerStats()
        self._pass: Iterator[int | IoJob] | None = None
        # With `offload_io`, `step` stops at a blocking job (an fsync) and leaves it here for
        # the caller to run off the event loop; the pass goes on at the next `step`.
        self.offload_io = False
        self.pending_io: IoJob | None = None
        self._next_check_ms = clock_ms()

    @property
    def busy(self) -> bool:
        return self._pass is not None

    def step(self, budget_bytes: int) -> int:
        """Clean up to about `budget_bytes` (read plus written, whole batches)."""
        if self.pending_io is not None:
            raise RuntimeError("the cleaner's pending I/O job has not been run")
        done = 0
        while done < budget_bytes:
            if self._pass is None and not self._start_pass():
                break
            assert self._pass is not None
            try:
                item = next(self._pass)
                if isinstance(item, IoJob):
                    if self.offload_io:
                        self.pending_io = item
                        return done
                    item.run()
                else:
                    done += item
            except StopIteration:
                self._pass = None
                self.stats.passes += 1
            except PassDropped as exc:
                self._pass = None
                self.stats.passes_dropped += 1
                self._next_check_ms = self._clock_ms() + self.backoff_ms
                log.info("cleaning pass dropped: %s", exc)
            except (RecordsInvalid, DecompressionFailed, OSError) as exc:
                # A batch stored before records were validated, or a read that failed: this
                # pass cannot go on; the log is looked at again after the backoff.
                self._pass = None
                self.stats.passes_dropped += 1
                self._next_check_ms = self._clock_ms() + self.backoff_ms
                log.warning("cleaning pass given up: %s", exc)
        return done

    def run_until_idle(self) -> int:
        """Every pass that is due, to the end (tests, the simulation, benchmarks)."""
        self._next_check_ms = self._clock_ms()
        total = 0
        while True:
            done = self.step(1 << 30)
            total += done
            if not self.busy and (done == 0 or self._next_check_ms > self._clock_ms()):
                return total

    def _start_pass(self) -> bool:
        now = self._clock_ms()
        if now < self._next_check_ms:
            return False
        best: tuple[float, PartitionLog, CleanRange] | None = None
        for partition_log in self._logs():
            if not partition_log.config.compaction.compact:
                continue
            cleanable = plan_for(partition_log, now)
            if cleanable is None:
                continue
            priority = 2.0 if cleanable.forced else cleanable.dirty_ratio
            if best is None or priority > best[0]:
                best = (priority, partition_log, cleanable)
        if best is None:
            self._next_check_ms = now + self.backoff_ms
            return False
        self._pass = _clean(best[1], best[2], now, self)
        return True

    def crash_point(self, step: str) -> None:
        if self.crash_hook is not None:
            self.crash_hook(step)


def _clean(
    partition_log: PartitionLog, cleanable: CleanRange, now_ms: int, cleaner: LogCleaner
) -> Iterator[int | IoJob]:
    """One pass over one log; yields the bytes of each batch read or written."""
    storage, directory = partition_log.storage, partition_log.directory
    inflated_max = partition_log.config.inflated_bytes_max
    segments = list(partition_log.segments[: cleanable.end_index])
    aborted = AbortedRanges(entry for s in partition_log.segments for entry in s.txn_index.entries)
    offset_map = OffsetMap(aborted=aborted)
    for segment in segments[cleanable.dirty_index :]:
        for position, header in segment.batches():
            batch = segment.read(position, position + header.size)
            if not header.is_control:
                offset_map.add(header, raw_records(batch, header, inflated_max))
            cleaner.stats.bytes_read += header.size
            yield header.size
    producers = partition_log.producers.entries.values()
    cleaning = CleaningPass(
        offset_map,
        cleanable.first_dirty,
        now_ms,
        partition_log.config.compaction.delete_retention_ms,
        frozenset(e.batches[-1].last_offset for e in producers if e.batches),
    )
    swap.write_checkpoint(storage, directory, cleanable.first_dirty, cleanable.end_offset)
    for group in cleanable.groups:
        old = [segments[i] for i in group]
        yield from _clean_group(partition_log, old, cleaning, cleaner)
    swap.write_checkpoint(storage, directory, cleanable.end_offset)
    partition_log.cleaner_first_dirty = cleanable.end_offset
    cleaner.crash_point("checkpointed")
    cleaner.stats.records_removed += cleaning.records_removed
    cleaner.stats.batches_removed += cleaning.batches_removed
    log.info(
        "cleaned %s up to offset %d: %d record(s) and %d batch(es) removed",
        partition_log.name,
        cleanable.end_offset,
        cleaning.records_removed,
        cleaning.batches_removed,
    )


def _clean_group(
    partition_log: PartitionLog, old: list[Segment], cleaning: CleaningPass, cleaner: LogCleaner
) -> Iterator[int | IoJob]:
    storage, directory = partition_log.storage, partition_log.directory
    base = old[0].base_offset
    interval = partition_log.config.index_interval_bytes
    inflated_max = partition_log.config.inflated_bytes_max
    _remove_cleaned(partition_log, base)
    cleaned = Segment(storage, directory, base, interval, suffix=swap.CLEANED_SUFFIX)
    built = False
    try:
        for segment in old:
            aborts = {e.last_offset: e for e in segment.txn_index.entries}
            for position, header in segment.batches():
                _check_still_there(partition_log, old)
                batch = segment.read(position, position + header.size)
                kept, indexed = cleaning.filter_batch(header, batch, inflated_max)
                cleaner.stats.bytes_read += header.size
                if kept is not None:
                    cleaned.append(parse_header(kept), kept)
                    cleaner.stats.bytes_written += len(kept)
                    entry: AbortedTxn | None = aborts.get(header.base_offset)
                    if indexed and entry is not None:
                        cleaned.txn_index.append(entry)
                yield header.size
        yield IoJob(cleaned.sync, cleaned.sync_indexes)
        cleaned.close()
        cleaner.crash_point("built")
        _check_still_there(partition_log, old)
        built = True
    finally:
        if not built:
            cleaned.close()
            _remove_cleaned(partition_log, base)
    replaces = [segment.base_offset for segment in old]
    swap.write_manifest(storage, directory, base, replaces)
    cleaner.crash_point("committed")
    # From here on the swap is committed: a failure leaves it for the next start to finish.
    for segment in old:
        segment.close()
    try:
        swap.finish_swap(storage, directory, base, replaces, cleaner.crash_point)
        replacement = Segment(storage, directory, base, interval)
        if replacement.load(recover=False) is not None:
            replacement.rebuild(replacement.size)
    except OSError as exc:
        # The files are the old segments or the new one, and the next start settles which:
        # in memory, neither can be trusted now.
        partition_log.go_offline(f"the cleaner's swap failed: {exc}")
        raise PassDropped(str(exc)) from exc
    replacement.created_ms = old[-1].created_ms
    first = partition_log.segments.index(old[0])
    partition_log.segments[first : first + len(old)] = [replacement]
    cleaner.crash_point("swapped")


def _check_still_there(partition_log: PartitionLog, old: list[Segment]) -> None:
    if partition_log.offline is not None or partition_log.deleted:
        raise PassDropped(f"{partition_log.name} is offline or deleted")
    segments = partition_log.segments
    if old[0] not in segments:
        raise PassDropped(f"{partition_log.name}: a segment being cleaned was deleted")
    first = segments.index(old[0])
    if segments[first : first + len(old)] != old or first + len(old) >= len(segments):
        raise PassDropped(f"{partition_log.name}: its segments changed under the cleaner")
    if not all(partition_log.is_synced(s) for s in old):
        raise PassDropped(f"{partition_log.name}: a segment being cleaned is not synced")


def _remove_cleaned(partition_log: PartitionLog, base: int) -> None:
    path = os.path.join(partition_log.directory, segment_name(base))
    for suffix in swap.FILE_SUFFIXES:
        partition_log.storage.remove(path + suffix + swap.CLEANED_SUFFIX)
