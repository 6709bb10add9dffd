"""Retention: whole segments go by age or total size; never the active one, never unsynced data."""

from __future__ import annotations

import os

from log.log_batches import NOW_MS, OpenLog, append, make_batch, offsets, segment_files, sync
from samsa.log.segment import segment_name

HOUR_MS = 3600 * 1000
SIZE = len(make_batch([b"x" * 100]))


def fill(log: object, timestamps: list[int]) -> None:
    for ts in timestamps:
        append(log, [b"x" * 100], timestamp_ms=ts)  # type: ignore[arg-type]


def test_retention_by_time_deletes_expired_segments(open_log: OpenLog, log_dir: str) -> None:
    log = open_log(segment_bytes=2 * SIZE, retention_ms=HOUR_MS)
    old, recent = NOW_MS - 3 * HOUR_MS, NOW_MS - HOUR_MS // 2
    # segments [0,1] [2,3] [4,5] [6]: max timestamps old, old, recent, recent
    fill(log, [old, old, old, old + 1, old, recent, recent])
    sync(log)
    assert [s.base_offset for s in log.segments] == [0, 2, 4, 6]
    assert log.apply_retention(NOW_MS) == 2
    assert [s.base_offset for s in log.segments] == [4, 6]
    assert log.log_start_offset == 4
    assert segment_files(log_dir) == [segment_name(4) + ".log", segment_name(6) + ".log"]
    assert segment_files(log_dir, ".index") == [
        segment_name(4) + ".index",
        segment_name(6) + ".index",
    ]
    assert segment_files(log_dir, ".timeindex") == [
        segment_name(4) + ".timeindex",
        segment_name(6) + ".timeindex",
    ]
    assert offsets(log.read(4, 1 << 20, log.high_watermark, min_one=True)) == [4, 5]
    # Nothing more is due; later, everything but the active segment goes.
    assert log.apply_retention(NOW_MS) == 0
    assert log.apply_retention(NOW_MS + 2 * HOUR_MS) == 1
    assert [s.base_offset for s in log.segments] == [6]
    # The start offset survives a reopen: the files are gone.
    log.close()
    log = open_log(segment_bytes=2 * SIZE, retention_ms=HOUR_MS)
    assert (log.log_start_offset, log.log_end_offset) == (6, 7)


def test_retention_by_time_uses_the_newest_timestamp_of_a_segment(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=2 * SIZE, retention_ms=HOUR_MS)
    fill(log, [NOW_MS - 5 * HOUR_MS, NOW_MS, NOW_MS - 5 * HOUR_MS])
    sync(log)
    assert log.apply_retention(NOW_MS + HOUR_MS - 1) == 0
    assert log.apply_retention(NOW_MS + HOUR_MS + 1) == 1


def test_retention_stops_at_the_first_segment_to_keep(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=SIZE, retention_ms=HOUR_MS)
    fill(log, [NOW_MS, NOW_MS - 5 * HOUR_MS, NOW_MS])  # a recent segment before an old one
    sync(log)
    assert log.apply_retention(NOW_MS + 1) == 0
    assert log.log_start_offset == 0


def test_retention_never_deletes_the_active_segment(open_log: OpenLog) -> None:
    log = open_log(retention_ms=1, retention_bytes=0)
    fill(log, [NOW_MS - 10 * HOUR_MS] * 3)
    sync(log)
    assert log.apply_retention(NOW_MS) == 0
    assert len(log.segments) == 1
    assert offsets(log.read(0, 1 << 20, log.high_watermark, min_one=True)) == [0, 1, 2]


def test_retention_never_deletes_data_above_the_high_watermark(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=SIZE, retention_ms=HOUR_MS)
    old = NOW_MS - 10 * HOUR_MS
    fill(log, [old, old])
    sync(log)  # high watermark 2: segments [0] [1], plus the active one to come
    fill(log, [old, old, old])  # segments [2] [3] [4], not yet synced
    assert log.high_watermark == 2
    # [0] may go (the next segment starts at 1 <= hw); [1] holds offset 1 < hw, so it may go
    # too; [2] starts at the high watermark and holds unsynced data: it stays.
    assert log.apply_retention(NOW_MS) == 2
    assert log.log_start_offset == 2
    assert log.high_watermark == 2
    sync(log)
    assert log.high_watermark == 5
    assert log.apply_retention(NOW_MS) == 2
    assert [s.base_offset for s in log.segments] == [4]


def test_deleted_segments_leave_the_sync_point(open_log: OpenLog) -> None:
    """Without per-write fsync (log.flush.interval.messages > 1) the high watermark follows the
    log end, so retention may delete segments no flush has synced yet: the next flush must not
    try to fsync their closed files."""
    log = open_log(segment_bytes=SIZE, retention_bytes=0, durable=False)
    fill(log, [NOW_MS] * 4)
    assert log.high_watermark == 4
    assert log.apply_retention(NOW_MS) == 3
    point = log.sync_point()
    assert point.segments == [log.active]
    point.run()


def test_retention_by_bytes(open_log: OpenLog, log_dir: str) -> None:
    log = open_log(segment_bytes=2 * SIZE, retention_bytes=3 * SIZE, retention_ms=-1)
    fill(log, [NOW_MS - 100 * HOUR_MS] * 9)  # segments of 2 batches: [0,1] [2,3] [4,5] [6,7] [8]
    sync(log)
    assert log.size_bytes == 9 * SIZE
    # Delete oldest segments while what remains still holds at least retention.bytes.
    assert log.apply_retention(NOW_MS) == 3
    assert [s.base_offset for s in log.segments] == [6, 8]
    assert log.size_bytes == 3 * SIZE
    assert len(segment_files(log_dir)) == 2
    assert log.apply_retention(NOW_MS) == 0


def test_retention_disabled(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=SIZE, retention_ms=-1, retention_bytes=-1)
    fill(log, [0, 1, 2, 3])
    sync(log)
    assert log.apply_retention(NOW_MS + 1000 * HOUR_MS) == 0
    assert len(log.segments) == 4


def test_retention_by_time_after_a_lost_time_index(open_log: OpenLog, log_dir: str) -> None:
    """The segment's newest timestamp sits in an early batch; its time index file is lost.
    Retention and timestamp lookups must still see that timestamp."""
    log = open_log(segment_bytes=10 * SIZE, retention_ms=HOUR_MS, index_interval_bytes=SIZE)
    fill(log, [NOW_MS, NOW_MS + HOUR_MS, NOW_MS, NOW_MS, NOW_MS])
    fill(log, [NOW_MS] * 6)  # rolls: the first segment is [0..9]
    sync(log)
    log.close()
    os.remove(os.path.join(log_dir, segment_name(0) + ".timeindex"))
    log = open_log(segment_bytes=10 * SIZE, retention_ms=HOUR_MS, index_interval_bytes=SIZE)
    assert log.segments[0].max_timestamp == NOW_MS + HOUR_MS
    assert log.offset_for_timestamp(NOW_MS + 1, log.high_watermark) == (1, NOW_MS + HOUR_MS)
    assert log.apply_retention(NOW_MS + HOUR_MS + HOUR_MS // 2) == 0
    assert log.apply_retention(NOW_MS + 2 * HOUR_MS + 1) == 1
