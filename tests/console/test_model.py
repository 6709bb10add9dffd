"""The console's pure parts: batch classification as a read_committed reader decides, the
request budget, and the decoders for `__consumer_offsets` keys and assignments."""

from __future__ import annotations

import struct

from samsa.console.cluster import RequestBudget
from samsa.console.model import (
    BatchView,
    Kind,
    classify,
    fenced_markers,
    offset_commit_key,
    offsets_partition,
    readers,
)
from samsa.console.views import decode_assignment
from samsa.protocol.batch import TRANSACTIONAL_FLAG, assign_offset, parse_header
from samsa.protocol.batch_writer import record_batch
from samsa.protocol.control import marker_batch

NOW_MS = 1_700_000_000_000


def _at(batch: bytes, offset: int) -> bytes:
    _, head, rest = assign_offset(batch, parse_header(batch), offset, 0)
    return head + bytes(rest)


def data(producer_id: int, offset: int, epoch: int = 0) -> bytes:
    batch = record_batch(
        [f"v{offset}".encode()],
        timestamp_ms=NOW_MS,
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=0,
        attributes=TRANSACTIONAL_FLAG,
    )
    return _at(batch, offset)


def marker(producer_id: int, offset: int, commit: bool, epoch: int = 0) -> bytes:
    return marker_batch(producer_id, epoch, commit, 0, offset, NOW_MS)


# 0: producer 7 (aborted at 2), 1: producer 8 (open), 3: producer 9 (committed at 4)
LOG = data(7, 0) + data(8, 1) + marker(7, 2, False) + data(9, 3) + marker(9, 4, True)


def kinds(batches: list[BatchView]) -> dict[int, Kind]:
    return {b.base_offset: b.kind for b in batches}


def test_classify_as_a_read_committed_reader_decides() -> None:
    batches = classify(LOG, [(7, 0)], last_stable_offset=1)
    assert kinds(batches) == {
        0: Kind.ABORTED,
        1: Kind.OPEN,  # at the LSO, no marker yet
        2: Kind.ABORT_MARKER,
        3: Kind.COMMITTED,  # past the LSO, but its COMMIT marker follows
        4: Kind.COMMIT_MARKER,
    }
    uncommitted, committed = readers(batches, high_watermark=5, last_stable_offset=1)
    assert [r.offset for r in uncommitted] == [0, 1, 3]
    assert [r.offset for r in committed] == []  # 0 aborted; nothing from the LSO on


def test_the_aborted_list_decides_where_the_marker_is_out_of_sight() -> None:
    # Only offsets 0-1 fetched; producer 7's ABORT marker lies beyond: the list says aborted.
    window = data(7, 0) + data(8, 1)
    assert kinds(classify(window, [(7, 0)], last_stable_offset=5)) == {
        0: Kind.ABORTED,
        1: Kind.COMMITTED,
    }
    assert kinds(classify(window, [], last_stable_offset=5))[0] is Kind.COMMITTED


def test_a_fenced_producer_is_one_aborted_with_a_bumped_epoch() -> None:
    log = data(7, 0, epoch=3) + marker(7, 1, False, epoch=4) + data(7, 2, epoch=5)
    log += marker(7, 3, False, epoch=5)
    assert fenced_markers(classify(log, [(7, 0), (7, 2)], 4)) == {1: (7, 4)}


def test_budget_holds_the_rate() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    budget = RequestBudget(4.0, burst=2, clock=lambda: now[0], sleep=sleep)
    for _ in range(42):
        budget.take()
    # 2 at once from the burst, then 4 a second: 40 more take 10 s.
    assert abs(now[0] - 10.0) < 1e-9


def test_offsets_partition_is_kafkas() -> None:
    # Kafka: Utils.abs(groupId.hashCode()) % partitions. Java: "hello".hashCode() ==
    # 99162322; "polygenelubricants".hashCode() == Integer.MIN_VALUE, whose Utils.abs is 0.
    assert offsets_partition("hello", 50) == 99162322 % 50
    assert offsets_partition("polygenelubricants", 50) == 0
    assert offsets_partition("anything", 1) == 0


def test_offset_commit_keys_in_both_formats() -> None:
    group, topic = b"billing", b"orders"
    kafka = struct.pack(">hh", 1, len(group)) + group
    kafka += struct.pack(">h", len(topic)) + topic + struct.pack(">i", 3)
    assert offset_commit_key(kafka) == ("billing", "orders", 3)
    assert offset_commit_key(b'["offset", "billing", "orders", 3]') == ("billing", "orders", 3)
    assert offset_commit_key(b'["group", "billing"]') is None
    assert offset_commit_key(struct.pack(">h", 2) + b"xx") is None  # group metadata key


def test_decode_assignment() -> None:
    topic = b"orders"
    assignment = struct.pack(">hih", 0, 1, len(topic)) + topic + struct.pack(">iii", 2, 0, 5)
    assert decode_assignment(assignment + b"\0\0\0\0") == [("orders", 0), ("orders", 5)]
    assert decode_assignment(b"\x00") == []
