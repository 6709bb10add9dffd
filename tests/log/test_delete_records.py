"""DeleteRecords on the partition log (Kafka's maybeIncrementLogStartOffset): the log start moves
to any offset up to the high watermark, inside a segment too; the segments wholly below it go;
the new start is checkpointed first and survives a reopen, a crash and an interrupted deletion."""

from __future__ import annotations

import os

import pytest
from kio.schema.errors import ErrorCode

from log.log_batches import NOW_MS, OpenLog, append, make_batch, offsets, segment_files, sync
from samsa.log.partition import LOG_START_FILE, CorruptLog, OffsetOutOfRange, PartitionLog
from samsa.log.segment import segment_name
from samsa.protocol.batch import TRANSACTIONAL_FLAG, parse_header

SIZE = len(make_batch([b"x"]))


def filled(open_log: OpenLog, count: int, per_segment: int = 2) -> PartitionLog:
    """A synced log of `count` one-record batches, `per_segment` batches a segment."""
    log = open_log(segment_bytes=per_segment * SIZE)
    for i in range(count):
        append(log, [b"x"], timestamps=[NOW_MS + i])
    sync(log)
    return log


def checkpointed(log_dir: str) -> str:
    with open(os.path.join(log_dir, LOG_START_FILE)) as f:
        return f.read().strip()


def test_the_log_start_moves_inside_a_segment_and_whole_segments_below_it_go(
    open_log: OpenLog, log_dir: str
) -> None:
    log = filled(open_log, 7)  # segments [0,1] [2,3] [4,5] [6]
    assert log.delete_records(5)
    assert log.log_start_offset == 5
    assert [s.base_offset for s in log.segments] == [4, 6]
    assert segment_files(log_dir) == [segment_name(4) + ".log", segment_name(6) + ".log"]
    assert checkpointed(log_dir) == "5"
    # The first segment still holds offset 4, below the start; a read from 5 finds 5.
    assert offsets(log.read(5, 1 << 20, log.high_watermark, min_one=True)) == [5]
    # Moving it back, or to where it is, changes nothing.
    assert not log.delete_records(3)
    assert not log.delete_records(5)
    assert log.log_start_offset == 5


def test_the_log_start_may_reach_the_high_watermark_not_beyond(open_log: OpenLog) -> None:
    log = filled(open_log, 3)
    append(log, [b"unsynced"])  # above the high watermark until the next fsync
    assert (log.high_watermark, log.log_end_offset) == (3, 4)
    with pytest.raises(OffsetOutOfRange) as refused:
        log.delete_records(4)
    assert refused.value.error == ErrorCode.offset_out_of_range
    with pytest.raises(OffsetOutOfRange):
        log.delete_records(-2)
    assert log.log_start_offset == 0
    assert log.delete_records(3)
    assert (log.log_start_offset, log.log_end_offset) == (3, 4)
    assert [s.base_offset for s in log.segments] == [3]  # the one holding offset 3 stays


def test_the_log_start_survives_a_reopen_and_a_crash(open_log: OpenLog) -> None:
    log = filled(open_log, 7)
    log.delete_records(5)
    log.close()
    reopened = open_log(segment_bytes=2 * SIZE)
    assert (reopened.log_start_offset, reopened.log_end_offset) == (5, 7)
    reopened.close_files()  # a crash: nothing more synced, no clean shutdown
    recovered = open_log(recover=True, segment_bytes=2 * SIZE)
    assert (recovered.log_start_offset, recovered.log_end_offset) == (5, 7)
    assert [s.base_offset for s in recovered.segments] == [4, 6]


def test_a_deletion_interrupted_after_the_checkpoint_is_finished_at_the_next_start(
    open_log: OpenLog, log_dir: str
) -> None:
    """The checkpoint inside a segment: that segment is kept, the ones wholly below it go."""
    log = filled(open_log, 7)
    log.close()
    with open(os.path.join(log_dir, LOG_START_FILE), "w") as f:
        f.write("3\n")
    reopened = open_log(segment_bytes=2 * SIZE)
    assert reopened.log_start_offset == 3
    assert [s.base_offset for s in reopened.segments] == [2, 4, 6]
    assert segment_files(log_dir, ".index") == [segment_name(b) + ".index" for b in (2, 4, 6)]


def test_a_lost_segment_holding_the_log_start_is_corruption(
    open_log: OpenLog, log_dir: str
) -> None:
    log = filled(open_log, 7)
    log.delete_records(3)
    log.close()
    for suffix in (".log", ".index", ".timeindex", ".txnindex"):
        os.remove(os.path.join(log_dir, segment_name(2) + suffix))
    with pytest.raises(CorruptLog, match="segment missing: the log starts at offset 3"):
        open_log(segment_bytes=2 * SIZE)


def test_a_crash_that_takes_back_records_below_the_log_start_starts_the_log_over(
    open_log: OpenLog, log_dir: str
) -> None:
    """Without fsync (durable=False) the high watermark follows the log end: a crash may lose
    records DeleteRecords deleted already. As Kafka's LogLoader, the log starts over, empty, at
    its start; after a clean shutdown the same files are corruption."""
    log = open_log(durable=False)
    for _ in range(5):
        append(log, [b"x"])
    log.delete_records(5)
    log.close_files()
    with open(os.path.join(log_dir, segment_name(0) + ".log"), "r+b") as f:
        f.truncate(2 * SIZE)  # what the page cache had not written yet is gone
    recovered = open_log(recover=True, durable=False)
    assert (recovered.log_start_offset, recovered.log_end_offset) == (5, 5)
    assert segment_files(log_dir) == [segment_name(5) + ".log"]
    append(recovered, [b"after"])
    assert recovered.log_end_offset == 6
    recovered.close()
    os.remove(os.path.join(log_dir, segment_name(5) + ".log"))
    with open(os.path.join(log_dir, segment_name(5) + ".log"), "wb"):
        pass
    with open(os.path.join(log_dir, LOG_START_FILE), "w") as f:
        f.write("9\n")
    with pytest.raises(CorruptLog, match="below its start 9"):
        open_log(durable=False)


def test_the_last_stable_offset_never_lies_below_the_log_start(open_log: OpenLog) -> None:
    """Kafka lets DeleteRecords cut into an open transaction (the high watermark bounds it, not
    the LSO) and moves the first unstable offset up to the log start."""
    log = open_log()
    append(log, [b"plain"])
    pid = 7
    for n in range(3):
        data = make_batch(
            [b"t"],
            producer_id=pid,
            producer_epoch=0,
            base_sequence=n,
            attributes=TRANSACTIONAL_FLAG,
        )
        log.append(data, parse_header(data), NOW_MS, lambda _: ErrorCode.none)
    sync(log)
    assert (log.last_stable_offset, log.high_watermark) == (1, 4)
    log.delete_records(3)
    assert log.last_stable_offset == 3
    assert log.producers.describe(pid) is not None  # producer state is kept
    log.append_marker(pid, 0, commit=True, coordinator_epoch=0, now_ms=NOW_MS)
    sync(log)
    assert log.last_stable_offset == log.high_watermark == 5


def test_a_timestamp_lookup_finds_no_record_below_the_log_start(open_log: OpenLog) -> None:
    log = open_log()
    append(log, [b"a", b"b", b"c"], timestamps=[NOW_MS, NOW_MS + 1, NOW_MS + 2])
    sync(log)
    log.delete_records(2)
    assert log.offset_for_timestamp(NOW_MS, log.high_watermark) == (2, NOW_MS + 2)
