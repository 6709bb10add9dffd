"""PartitionLog and Segment: appends, offsets, rolls, reads, timestamps, high watermark."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from log.log_batches import (
    NOW_MS,
    OpenLog,
    append,
    decode,
    make_batch,
    offsets,
    segment_files,
    sync,
    values,
)
from samsa.log.partition import LogConfig, PartitionLog
from samsa.log.segment import segment_name
from samsa.log.storage import File, FileCache, OsFile, OsStorage
from samsa.protocol.batch import iter_batches, parse_header

HUGE = 1 << 30


def read_all(log: PartitionLog, start: int = 0, max_bytes: int = HUGE) -> bytes:
    """Everything from `start` to the high watermark, reading like a consumer does."""
    out = b""
    offset = start
    while offset < log.high_watermark:
        data = log.read(offset, max_bytes, log.high_watermark, min_one=True)
        assert data, f"no progress at offset {offset}"
        out += data
        last = None
        for _, header in iter_batches(data):
            last = header
        assert last is not None
        offset = last.next_offset
    return out


# ------------------------------------------------------------------ append and read
def test_append_assigns_consecutive_offsets(open_log: OpenLog) -> None:
    log = open_log()
    assert (log.log_start_offset, log.log_end_offset, log.high_watermark) == (0, 0, 0)
    first = append(log, [b"a", b"b", b"c"])
    second = append(log, [b"d"])
    third = append(log, [b"e", b"f"])
    assert (first.base_offset, first.last_offset) == (0, 2)
    assert (second.base_offset, second.last_offset) == (3, 3)
    assert (third.base_offset, third.last_offset) == (4, 5)
    assert log.log_end_offset == 6
    sync(log)
    data = log.read(0, HUGE, log.high_watermark, min_one=False)
    assert offsets(data) == [0, 1, 2, 3, 4, 5]
    assert values(data) == [b"a", b"b", b"c", b"d", b"e", b"f"]
    # The stored batches still pass CRC (kio's reader checks it) after offset assignment.
    assert [header.base_offset for _, header in iter_batches(data)] == [0, 3, 4]


def test_keys_values_headers_round_trip(open_log: OpenLog) -> None:
    log = open_log()
    append(
        log,
        [b"v1", None, b""],
        keys=[b"k1", b"k2", None],
        headers=[[(b"h", b"1"), (b"h2", None)], [], [(b"x", b"")]],
    )
    sync(log)
    records = decode(log.read(0, HUGE, log.high_watermark, min_one=False))
    assert [(r.offset, r.key, r.value, r.headers) for r in records] == [
        (0, b"k1", b"v1", ((b"h", b"1"), (b"h2", None))),
        (1, b"k2", None, ()),
        (2, None, b"", ((b"x", b""),)),
    ]


def test_read_from_inside_a_batch_returns_the_whole_batch(open_log: OpenLog) -> None:
    log = open_log()
    append(log, [b"a", b"b", b"c"])
    append(log, [b"d", b"e"])
    sync(log)
    assert offsets(log.read(1, HUGE, log.high_watermark, min_one=False)) == [0, 1, 2, 3, 4]
    assert offsets(log.read(4, HUGE, log.high_watermark, min_one=False)) == [3, 4]
    assert log.read(5, HUGE, log.high_watermark, min_one=True) == b""


def test_read_returns_whole_batches_only(open_log: OpenLog) -> None:
    log = open_log()
    sizes = [append(log, [bytes([i]) * 100]).size for i in range(3)]
    sync(log)
    # Room for one batch and a half: exactly the first batch comes back.
    data = log.read(0, sizes[0] + sizes[1] // 2, log.high_watermark, min_one=False)
    assert len(data) == sizes[0]
    assert values(data) == [b"\x00" * 100]
    # Room for exactly two batches: two.
    data = log.read(0, sizes[0] + sizes[1], log.high_watermark, min_one=False)
    assert values(data) == [b"\x00" * 100, b"\x01" * 100]


def test_max_bytes_and_min_one(open_log: OpenLog) -> None:
    log = open_log()
    big = append(log, [b"x" * 1000])
    append(log, [b"y"])
    sync(log)
    # KIP-74: an oversized first batch comes back whole if min_one, not at all otherwise.
    assert log.read(0, 10, log.high_watermark, min_one=False) == b""
    data = log.read(0, 10, log.high_watermark, min_one=True)
    assert len(data) == big.size
    assert values(data) == [b"x" * 1000]
    # min_one never adds a second batch beyond max_bytes.
    assert values(log.read(0, big.size + 5, log.high_watermark, min_one=True)) == [b"x" * 1000]
    assert values(log.read(1, 10, log.high_watermark, min_one=True)) == [b"y"]


def test_read_stops_at_limit_offset(open_log: OpenLog) -> None:
    log = open_log()
    append(log, [b"a", b"b"])
    append(log, [b"c"])
    append(log, [b"d"])
    sync(log)
    assert offsets(log.read(0, HUGE, 3, min_one=True)) == [0, 1, 2]
    # A batch that reaches the limit is withheld entirely, even with min_one.
    assert log.read(0, HUGE, 1, min_one=True) == b""
    assert log.read(3, HUGE, 3, min_one=True) == b""


# ------------------------------------------------------------------ high watermark
def test_high_watermark_moves_only_after_completed_sync(open_log: OpenLog) -> None:
    log = open_log()
    append(log, [b"a"])
    append(log, [b"b"])
    assert log.log_end_offset == 2
    assert log.high_watermark == 0
    assert log.read(0, HUGE, log.high_watermark, min_one=True) == b""
    point = log.sync_point()
    append(log, [b"c"])  # arrives while the fsync round runs
    assert log.high_watermark == 0
    point.run()
    assert log.high_watermark == 0, "run() alone must not move the high watermark"
    assert log.complete_sync(point) is True
    assert log.high_watermark == 2, "only what the sync point covered"
    assert offsets(read_all(log)) == [0, 1]
    assert log.complete_sync(point) is False  # a stale point never moves it
    sync(log)
    assert log.high_watermark == 3
    assert offsets(read_all(log)) == [0, 1, 2]


def test_high_watermark_never_moves_backwards(open_log: OpenLog) -> None:
    log = open_log()
    append(log, [b"a"])
    early = log.sync_point()
    append(log, [b"b"])
    late = log.sync_point()
    late.run()
    early.run()
    assert log.complete_sync(late) is True
    assert log.complete_sync(early) is False
    assert log.high_watermark == 2


def test_not_durable_high_watermark_follows_log_end(open_log: OpenLog) -> None:
    log = open_log(durable=False)
    append(log, [b"a", b"b"])
    assert log.high_watermark == 2


class _RecordingFile(OsFile):
    def __init__(self, path: str, cache: FileCache, synced: list[str]) -> None:
        super().__init__(path, cache)
        self._synced = synced

    def sync(self) -> None:
        self._synced.append(os.path.basename(self.path))
        super().sync()


class _RecordingStorage(OsStorage):
    def __init__(self) -> None:
        super().__init__()
        self.synced: list[str] = []

    def open(self, path: str) -> File:
        return _RecordingFile(path, self.files, self.synced)


def test_sync_point_fsyncs_every_segment_written_since_the_last(log_dir: str) -> None:
    storage = _RecordingStorage()
    size = len(make_batch([b"x" * 100]))
    log = PartitionLog.open(
        storage, log_dir, "t", 0, LogConfig(segment_bytes=2 * size), NOW_MS, False
    )
    for _ in range(5):  # segments [0,1] [2,3] [4]
        append(log, [b"x" * 100])
    assert segment_files(log_dir) == [segment_name(o) + ".log" for o in (0, 2, 4)]
    storage.synced.clear()
    point = log.sync_point()
    point.run()
    assert sorted(n for n in storage.synced if n.endswith(".log")) == [
        segment_name(o) + ".log" for o in (0, 2, 4)
    ]
    assert log.complete_sync(point)
    assert log.high_watermark == 5
    # Nothing new written: the next round has nothing to sync, one append: only the active.
    storage.synced.clear()
    log.sync_point().run()
    assert storage.synced == []
    append(log, [b"y"])
    log.sync_point().run()
    assert [n for n in storage.synced if n.endswith(".log")] == [segment_name(4) + ".log"]


# ------------------------------------------------------------------ segment rolls
def test_roll_by_size(open_log: OpenLog, log_dir: str) -> None:
    size = len(make_batch([b"x" * 200]))
    log = open_log(segment_bytes=3 * size)
    for _ in range(10):
        append(log, [b"x" * 200])
    assert [s.base_offset for s in log.segments] == [0, 3, 6, 9]
    assert segment_files(log_dir) == [segment_name(o) + ".log" for o in (0, 3, 6, 9)]
    assert all(s.size <= 3 * size for s in log.segments)
    assert [s.next_offset for s in log.segments] == [3, 6, 9, 10]
    # A batch larger than a segment still goes in (alone in a fresh segment).
    big = append(log, [b"z" * (4 * size)])
    assert big.base_offset == 10
    assert log.active.base_offset == 10 and log.active.size == big.size


def test_roll_by_time(open_log: OpenLog) -> None:
    log = open_log(segment_ms=1000, now_ms=NOW_MS)
    append(log, [b"a"], now_ms=NOW_MS)
    append(log, [b"b"], now_ms=NOW_MS + 999)
    assert len(log.segments) == 1
    append(log, [b"c"], now_ms=NOW_MS + 1000)
    assert [s.base_offset for s in log.segments] == [0, 2]
    append(log, [b"d"], now_ms=NOW_MS + 1999)
    assert len(log.segments) == 2
    append(log, [b"e"], now_ms=NOW_MS + 2000)
    assert [s.base_offset for s in log.segments] == [0, 2, 4]


def test_empty_active_segment_is_never_rolled(open_log: OpenLog) -> None:
    log = open_log(segment_ms=1, segment_bytes=10)
    append(log, [b"a" * 100], now_ms=NOW_MS + 10_000)
    assert [s.base_offset for s in log.segments] == [0]


def test_reads_cross_segment_boundaries(open_log: OpenLog) -> None:
    size = len(make_batch([b"0000"]))
    log = open_log(segment_bytes=2 * size)
    for i in range(9):
        append(log, [f"{i:04d}".encode()])
    sync(log)
    assert len(log.segments) == 5
    # One batch at a time, through every boundary.
    assert values(read_all(log, max_bytes=size)) == [f"{i:04d}".encode() for i in range(9)]
    # A read starting at a segment's last batch stops at that segment's end.
    assert offsets(log.read(1, HUGE, log.high_watermark, min_one=False)) == [1]
    assert offsets(log.read(2, HUGE, log.high_watermark, min_one=False)) == [2, 3]
    assert offsets(read_all(log, start=5)) == [5, 6, 7, 8]


def test_batches_walks_whole_batches_across_segments(open_log: OpenLog) -> None:
    """The reader the coordinators replay through: every batch holding an offset in
    [from, upto), whole, in order, across segment boundaries."""
    size = len(make_batch([b"0000", b"0001"]))
    log = open_log(segment_bytes=2 * size)
    for i in range(0, 10, 2):
        append(log, [f"{i:04d}".encode(), f"{i + 1:04d}".encode()])
    assert len(log.segments) == 3

    def walked(start: int, upto: int) -> list[int]:
        return [header.base_offset for header, _ in log.batches(start, upto)]

    assert walked(0, 10) == [0, 2, 4, 6, 8]
    assert walked(3, 6) == [2, 4]  # from inside a batch; upto is exclusive
    assert walked(4, 4) == []
    assert walked(9, 100) == [8]
    assert [values(data) for _, data in log.batches(6, 8)] == [[b"0006", b"0007"]]


def test_read_into_a_gap_continues_in_the_next_segment(open_log: OpenLog) -> None:
    """Offsets missing between segments (a cut-off torn tail of an older segment) are skipped."""
    size = len(make_batch([b"0000"]))
    log = open_log(segment_bytes=2 * size)
    for i in range(4):
        append(log, [f"{i:04d}".encode()])
    sync(log)
    first = log.segments[0]
    first.log.truncate(size)
    first.next_offset = 1
    assert offsets(log.read(1, HUGE, log.high_watermark, min_one=False)) == [2, 3]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batch_sizes=st.lists(st.integers(1, 5), min_size=1, max_size=30),
    value_bytes=st.integers(0, 300),
    segment_batches=st.integers(1, 6),
    read_bytes=st.integers(1, 2000),
)
def test_every_record_read_back_once_in_order(
    tmp_path_factory: pytest.TempPathFactory,
    batch_sizes: list[int],
    value_bytes: int,
    segment_batches: int,
    read_bytes: int,
) -> None:
    directory = str(tmp_path_factory.mktemp("prop") / "t-0")
    config = LogConfig(
        segment_bytes=segment_batches * len(make_batch([b"v" * value_bytes] * 3)),
        index_interval_bytes=300,
    )
    log = PartitionLog.open(OsStorage(), directory, "t", 0, config, NOW_MS, False)
    expected: list[bytes] = []
    for n, count in enumerate(batch_sizes):
        batch = [f"{n}/{i}:".encode() + b"v" * value_bytes for i in range(count)]
        expected.extend(batch)
        append(log, batch)
    sync(log)
    data = read_all(log, max_bytes=read_bytes)
    assert offsets(data) == list(range(len(expected)))
    assert values(data) == expected
    log.close()
    reopened = PartitionLog.open(OsStorage(), directory, "t", 0, config, NOW_MS, True)
    assert values(read_all(reopened, max_bytes=read_bytes)) == expected
    reopened.close()


# ------------------------------------------------------------------ timestamps
def test_offset_for_timestamp(open_log: OpenLog) -> None:
    size = len(make_batch([b"x"]))
    log = open_log(segment_bytes=3 * size, index_interval_bytes=1)
    # Batch max timestamps, out of order as CreateTime allows: 100 300 200 | 400 500 500 | 600
    for ts in (100, 300, 200, 400, 500, 500, 600):
        append(log, [b"x"], timestamp_ms=NOW_MS + ts)
    sync(log)
    assert len(log.segments) == 3

    def lookup(ts: int, limit: int | None = None) -> tuple[int, int] | None:
        limit = log.high_watermark if limit is None else limit
        found = log.offset_for_timestamp(NOW_MS + ts, limit)
        return None if found is None else (found[0], found[1] - NOW_MS)

    assert lookup(0) == (0, 100)
    assert lookup(100) == (0, 100)
    assert lookup(101) == (1, 300)
    assert lookup(250) == (1, 300)  # first batch reaching it, not the closest timestamp
    assert lookup(301) == (3, 400)
    assert lookup(450) == (4, 500)
    assert lookup(600) == (6, 600)
    assert lookup(601) is None
    assert lookup(450, limit=4) is None
    assert lookup(450, limit=5) == (4, 500)
    # The same answers from indexes loaded back from disk, and from rebuilt ones.
    log.close()
    for recover in (False, True):
        log = open_log(recover=recover, segment_bytes=3 * size, index_interval_bytes=1)
        assert lookup(250) == (1, 300)
        assert lookup(450) == (4, 500)
        assert lookup(601) is None
        log.close()


def test_max_timestamp_offset(open_log: OpenLog) -> None:
    log = open_log()
    for ts in (100, 700, 300):
        append(log, [b"a", b"b"], timestamps=[NOW_MS + ts - 1, NOW_MS + ts])
    sync(log)
    assert log.max_timestamp_offset(log.high_watermark) == (3, NOW_MS + 700)
    assert log.max_timestamp_offset(2) == (1, NOW_MS + 100)


# ------------------------------------------------------------------ reopening
def test_reopen_after_clean_close(open_log: OpenLog, log_dir: str) -> None:
    size = len(make_batch([b"0000"]))
    log = open_log(segment_bytes=2 * size, index_interval_bytes=1)
    for i in range(7):
        append(log, [f"{i:04d}".encode()], timestamp_ms=NOW_MS + i)
    sync(log)
    before = read_all(log)
    log.close()
    log = open_log(segment_bytes=2 * size, index_interval_bytes=1)
    assert (log.log_start_offset, log.log_end_offset, log.high_watermark) == (0, 7, 7)
    assert [s.base_offset for s in log.segments] == [0, 2, 4, 6]
    assert all(report.truncated_bytes == 0 for report in log.recovery)
    assert read_all(log) == before
    assert log.offset_for_timestamp(NOW_MS + 5, 7) == (5, NOW_MS + 5)
    assert append(log, [b"next"]).base_offset == 7


def test_first_batch_header_fields_survive(open_log: OpenLog) -> None:
    log = open_log()
    append(log, [b"a", b"b"], producer_id=42, producer_epoch=3, base_sequence=0)
    sync(log)
    header = parse_header(log.read(0, HUGE, 2, min_one=True))
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (42, 3, 0)
    assert (header.base_offset, header.last_offset_delta, header.records_count) == (0, 1, 2)
