"""Recovery of a partition log from its files: torn or corrupt tails, missing or damaged indexes."""

from __future__ import annotations

import os
import random

import pytest

from log.log_batches import (
    NOW_MS,
    OpenLog,
    append,
    make_batch,
    offsets,
    segment_files,
    sync,
    values,
)
from samsa.log.partition import CorruptLog, PartitionLog
from samsa.log.segment import segment_name
from samsa.protocol.batch import CRC_START, HEADER_BYTES, iter_batches
from samsa.testing.damage import flip_byte

HUGE = 1 << 30


def read_all(log: PartitionLog) -> bytes:
    out = b""
    offset = log.log_start_offset
    while offset < log.high_watermark:
        data = log.read(offset, HUGE, log.high_watermark, min_one=True)
        assert data, f"no progress at offset {offset}"
        out += data
        offset = [header for _, header in iter_batches(data)][-1].next_offset
    return out


def fill(log: PartitionLog, count: int, per_batch: int = 2) -> list[bytes]:
    written: list[bytes] = []
    for n in range(count):
        batch = [f"{n:03d}.{i}".encode() for i in range(per_batch)]
        append(log, batch, timestamp_ms=NOW_MS + 10 * n)
        written.extend(batch)
    sync(log)
    return written


def last_log_file(directory: str) -> str:
    return os.path.join(directory, segment_files(directory)[-1])


def batch_positions(path: str) -> list[tuple[int, int]]:
    """(position, size) of each whole batch in a .log file."""
    with open(path, "rb") as f:
        data = f.read()
    return [(position, header.size) for position, header in iter_batches(data)]


def append_bytes(path: str, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


# ------------------------------------------------------------------ torn and corrupt tails
TORN_TAILS = {
    "partial-header": make_batch([b"next"])[: HEADER_BYTES - 20],
    "partial-batch": make_batch([b"next" * 50])[: HEADER_BYTES + 30],
    "whole-header-no-records": make_batch([b"next" * 50])[:HEADER_BYTES],
    "random-garbage": random.Random(7).randbytes(333),
    "zeros": bytes(200),
    "one-byte": b"\x01",
}


@pytest.mark.parametrize("recover", [True, False], ids=["unclean", "clean-marker"])
@pytest.mark.parametrize("tail", list(TORN_TAILS), ids=list(TORN_TAILS))
def test_torn_tail_is_cut_off(open_log: OpenLog, log_dir: str, tail: str, recover: bool) -> None:
    log = open_log(index_interval_bytes=64)
    written = fill(log, 5)
    log.close()
    path = last_log_file(log_dir)
    good_size = os.path.getsize(path)
    append_bytes(path, TORN_TAILS[tail])

    # Even without the unclean-shutdown flag, a tail that is not whole batches is noticed.
    log = open_log(recover=recover, index_interval_bytes=64)
    assert os.path.getsize(path) == good_size
    assert log.recovery[-1].truncated_bytes == len(TORN_TAILS[tail])
    assert (log.log_end_offset, log.high_watermark) == (10, 10)
    assert values(read_all(log)) == written
    # New writes continue at the right offsets, and survive another reopen.
    assert append(log, [b"after"]).base_offset == 10
    sync(log)
    log.close()
    log = open_log(recover=True, index_interval_bytes=64)
    assert values(read_all(log)) == [*written, b"after"]
    assert offsets(read_all(log)) == list(range(11))


@pytest.mark.parametrize(
    "where", ["attributes", "records", "last-byte", "max-timestamp", "magic", "crc-field"]
)
def test_corrupt_last_batch_is_cut_off(open_log: OpenLog, log_dir: str, where: str) -> None:
    log = open_log()
    written = fill(log, 5)
    log.close()
    path = last_log_file(log_dir)
    position, size = batch_positions(path)[-1]
    relative = {
        "attributes": CRC_START,
        "max-timestamp": CRC_START + 2 + 4 + 8,
        "records": HEADER_BYTES + 3,
        "last-byte": size - 1,
        "magic": 16,
        "crc-field": 17,
    }[where]
    flip_byte(path, position + relative)

    log = open_log(recover=True)
    assert os.path.getsize(path) == position
    assert log.recovery[-1].truncated_bytes == size
    assert (log.log_end_offset, log.high_watermark) == (8, 8)
    assert values(read_all(log)) == written[:8]
    assert append(log, [b"after"]).base_offset == 8
    sync(log)
    assert values(read_all(log)) == [*written[:8], b"after"]


def test_corrupt_batch_in_the_middle_is_refused_and_nothing_is_cut(
    open_log: OpenLog, log_dir: str
) -> None:
    """A damaged batch with valid ones after it is not a torn write: recovery must not cut the
    acknowledged batches after it away (it used to), and must leave the files as they are."""
    log = open_log()
    fill(log, 5)
    log.close()
    path = last_log_file(log_dir)
    positions = batch_positions(path)
    flip_byte(path, positions[2][0] + HEADER_BYTES + 2)
    before = _snapshot_dir(log_dir)

    with pytest.raises(CorruptLog) as refused:
        open_log(recover=True)
    assert refused.value.path == path
    assert refused.value.position == positions[2][0]
    assert "CRC-32C mismatch after offset 3" in str(refused.value)
    assert f"a valid batch at byte {positions[3][0]}" in str(refused.value)
    assert _snapshot_dir(log_dir) == before, "a corrupt log's files are left exactly as found"


def test_damaged_length_field_in_the_middle_is_found_by_searching_for_later_batches(
    open_log: OpenLog, log_dir: str
) -> None:
    """With the batch length itself damaged the next batch cannot be found by skipping: the
    scan looks for any valid batch after the damage."""
    log = open_log()
    fill(log, 5)
    log.close()
    path = last_log_file(log_dir)
    positions = batch_positions(path)
    with open(path, "r+b") as f:
        f.seek(positions[1][0] + 8)
        f.write((2**31 - 1).to_bytes(4, "big"))  # batchLength: far past the end of the file

    with pytest.raises(CorruptLog) as refused:
        open_log(recover=True)
    assert refused.value.position == positions[1][0]
    assert f"a valid batch at byte {positions[2][0]}" in str(refused.value)


def test_only_garbage_leaves_an_empty_segment(open_log: OpenLog, log_dir: str) -> None:
    log = open_log()
    log.close()
    append_bytes(last_log_file(log_dir), random.Random(3).randbytes(500))
    log = open_log(recover=True)
    assert (log.log_start_offset, log.log_end_offset) == (0, 0)
    assert append(log, [b"first"]).base_offset == 0


def test_torn_tail_after_a_roll(open_log: OpenLog, log_dir: str) -> None:
    """A crash right after a roll: the new segment is empty, the previous one torn."""
    size = len(make_batch([b"000.0", b"000.1"]))
    log = open_log(segment_bytes=3 * size)
    written = fill(log, 4)
    log.close()
    names = segment_files(log_dir)
    assert names == [segment_name(0) + ".log", segment_name(6) + ".log"]
    # The newest segment lost its only batch; the one before it ends in half a batch.
    newest = os.path.join(log_dir, names[1])
    with open(newest, "r+b") as f:
        f.truncate(0)
    previous = os.path.join(log_dir, names[0])
    append_bytes(previous, make_batch([b"torn"])[:40])

    log = open_log(recover=True, segment_bytes=3 * size)
    assert os.path.getsize(previous) == 3 * size
    assert (log.log_end_offset, log.high_watermark) == (6, 6)
    assert values(read_all(log)) == written[:6]
    assert append(log, [b"after"]).base_offset == 6
    sync(log)
    assert values(read_all(log)) == [*written[:6], b"after"]


def test_a_damaged_older_segment_with_newer_data_is_corruption(
    open_log: OpenLog, log_dir: str
) -> None:
    """Half a batch missing from an older segment while newer segments hold data: no crash
    mid-write leaves that (writes are sequential), so it is refused, not cut into a gap."""
    size = len(make_batch([b"000.0", b"000.1"]))
    log = open_log(segment_bytes=2 * size)
    fill(log, 6)
    log.close()
    names = segment_files(log_dir)
    assert len(names) == 3
    older = os.path.join(log_dir, names[0])
    with open(older, "r+b") as f:  # the older segment loses half of its second batch
        f.truncate(size + size // 2)
    before = _snapshot_dir(log_dir)

    with pytest.raises(CorruptLog) as refused:
        open_log(recover=True, segment_bytes=2 * size)
    assert refused.value.path == older
    assert refused.value.position == size
    assert "later segment" in str(refused.value)
    assert _snapshot_dir(log_dir) == before


def _snapshot_dir(directory: str) -> dict[str, bytes]:
    out = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            out[name] = f.read()
    return out


# ------------------------------------------------------------------ indexes
def _index_files(directory: str) -> dict[str, bytes]:
    out = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith((".index", ".timeindex")):
            with open(os.path.join(directory, name), "rb") as f:
                out[name] = f.read()
    return out


def _damage(path: str, how: str) -> None:
    if how == "deleted":
        os.remove(path)
    elif how == "empty":
        open(path, "wb").close()
    elif how == "junk":
        with open(path, "r+b") as f:
            length = len(f.read())
            f.seek(0)
            f.write(random.Random(length).randbytes(max(length, 24)))
    elif how == "odd-length":
        append_bytes(path, b"\x00\x01\x02")
    elif how == "zeros":
        with open(path, "r+b") as f:
            length = len(f.read())
            f.seek(0)
            f.write(bytes(max(length, 24)))
    elif how == "ones":
        with open(path, "wb") as f:
            f.write(b"\xff" * 96)
    else:
        raise AssertionError(how)


INDEX_CONFIG = {"segment_bytes": 3000, "index_interval_bytes": 200}


@pytest.mark.parametrize("recover", [False, True], ids=["clean", "unclean"])
@pytest.mark.parametrize("how", ["deleted", "empty", "junk", "odd-length", "zeros", "ones"])
@pytest.mark.parametrize("which", [".index", ".timeindex", "both"])
@pytest.mark.parametrize("segment", ["oldest", "active"])
def test_damaged_index_is_rebuilt(
    open_log: OpenLog, log_dir: str, which: str, how: str, recover: bool, segment: str
) -> None:
    log = open_log(**INDEX_CONFIG)
    expected: list[bytes] = []
    for n in range(60):
        value = f"{n:03d}".encode() * 20
        append(log, [value], timestamp_ms=NOW_MS + 10 * n)
        expected.append(value)
    sync(log)
    assert len(log.segments) >= 3
    log.close()
    original = _index_files(log_dir)
    assert all(original.values()), "every segment has index entries"

    bases = [int(name[:-4]) for name in segment_files(log_dir)]
    base = bases[0] if segment == "oldest" else bases[-1]
    suffixes = [".index", ".timeindex"] if which == "both" else [which]
    for suffix in suffixes:
        _damage(os.path.join(log_dir, segment_name(base) + suffix), how)

    log = open_log(recover=recover, **INDEX_CONFIG)
    assert log.log_end_offset == 60
    assert values(read_all(log)) == expected
    for n in (0, 17, 31, 59):  # every offset is found through the index
        assert values(log.read(n, 1, 60, min_one=True)) == [expected[n]]
        assert log.offset_for_timestamp(NOW_MS + 10 * n - 5, 60) == (n, NOW_MS + 10 * n)
    assert log.offset_for_timestamp(NOW_MS + 10 * 59 + 1, 60) is None
    log.close()
    # Rebuilt byte for byte: the same entries as when the batches were appended.
    assert _index_files(log_dir) == original


def test_index_rebuilt_after_tail_truncation_points_inside_the_file(
    open_log: OpenLog, log_dir: str
) -> None:
    """An index entry for a batch a crash took back must not survive recovery."""
    log = open_log(index_interval_bytes=1)
    written = fill(log, 6)
    log.close()
    path = last_log_file(log_dir)
    position, _ = batch_positions(path)[-1]
    with open(path, "r+b") as f:
        f.truncate(position + 10)
    log = open_log(recover=True, index_interval_bytes=1)
    assert log.active.offset_index.offsets == [0, 2, 4, 6, 8]
    assert max(log.active.offset_index.positions) < position
    assert log.active.time_index.offsets[-1] == 8
    assert values(read_all(log)) == written[:10]
    assert append(log, [b"x"]).base_offset == 10
    sync(log)
    assert values(log.read(10, HUGE, 11, min_one=True)) == [b"x"]
