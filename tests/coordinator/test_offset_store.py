"""The offset store, driven directly: durable batches of the offsets log in (commits,
transactional commits, markers, tombstones), committed and pending offsets out. No broker and no
log: the batches are built as the coordinator and the transaction markers write them."""

from __future__ import annotations

from samsa.coordinator.group.offsets import (
    CommittedOffset,
    OffsetStore,
    group_key,
    offset_key,
    offset_value,
)
from samsa.protocol.batch import TRANSACTIONAL_FLAG, BatchHeader, assign_offset, parse_header
from samsa.protocol.batch_writer import record_batch
from samsa.protocol.control import marker_batch

NOW_MS = 1_700_000_000_000
PRODUCER = 7


class OffsetsLog:
    """Batches as the offsets log holds them, with offsets assigned in order."""

    def __init__(self) -> None:
        self.end = 0

    def _placed(self, data: bytes) -> tuple[BatchHeader, bytes]:
        header, head, rest = assign_offset(data, parse_header(data), self.end, 0)
        self.end = header.next_offset
        return header, head + bytes(rest)

    def commit(
        self, *offsets: tuple[str, int, int | None], producer_id: int = -1
    ) -> tuple[BatchHeader, bytes]:
        """(topic, partition, offset) of group "g"; offset None is a tombstone. With a
        producer id, a transactional batch (TxnOffsetCommit)."""
        keys = [offset_key("g", topic, partition) for topic, partition, _ in offsets]
        values = [
            None if offset is None else offset_value(offset, 0, "", NOW_MS)
            for _, _, offset in offsets
        ]
        transactional = producer_id >= 0
        return self._placed(
            record_batch(
                values,
                keys=keys,
                timestamp_ms=NOW_MS,
                producer_id=producer_id,
                producer_epoch=0 if transactional else -1,
                attributes=TRANSACTIONAL_FLAG if transactional else 0,
            )
        )

    def marker(self, commit: bool, producer_id: int = PRODUCER) -> tuple[BatchHeader, bytes]:
        return self._placed(marker_batch(producer_id, 0, commit, 0, self.end, NOW_MS))


def committed(store: OffsetStore) -> dict[tuple[str, int], int]:
    return {(t, p): value.offset for (_, t, p), value in store.committed.items()}


def test_a_commit_sets_the_offset_and_a_tombstone_deletes_it() -> None:
    log, store = OffsetsLog(), OffsetStore()
    store.apply(*log.commit(("t", 0, 5), ("t", 1, 9)))
    assert committed(store) == {("t", 0): 5, ("t", 1): 9}
    assert store.committed["g", "t", 0] == CommittedOffset(5, 0, "", NOW_MS, 0)
    store.apply(*log.commit(("t", 0, 6)))
    store.apply(*log.commit(("t", 1, None)))
    assert committed(store) == {("t", 0): 6}
    assert store.applied_offset == log.end == 4
    assert store.group_offsets("g") == {("t", 0): store.committed["g", "t", 0]}
    assert store.has_offsets("g") and not store.has_offsets("other")


def test_a_transactional_commit_shows_exactly_when_its_commit_marker_does() -> None:
    """Invariant 7: pending until the COMMIT marker, then visible; invisible before it."""
    log, store = OffsetsLog(), OffsetStore()
    store.apply(*log.commit(("t", 0, 5)))
    store.apply(*log.commit(("t", 0, 42), producer_id=PRODUCER))
    assert committed(store) == {("t", 0): 5}
    assert store.is_pending(("g", "t", 0))
    store.apply(*log.marker(commit=True))
    assert committed(store) == {("t", 0): 42}
    assert not store.is_pending(("g", "t", 0)) and store.pending == {}


def test_an_aborted_transactional_commit_is_dropped() -> None:
    log, store = OffsetsLog(), OffsetStore()
    store.apply(*log.commit(("t", 0, 5)))
    store.apply(*log.commit(("t", 0, 42), producer_id=PRODUCER))
    assert store.has_offsets("g")
    store.apply(*log.marker(commit=False))
    assert committed(store) == {("t", 0): 5}
    assert store.pending == {}


def test_a_later_plain_commit_wins_over_an_earlier_transactional_one() -> None:
    """The record with the higher log offset wins, whenever the marker comes."""
    log, store = OffsetsLog(), OffsetStore()
    store.apply(*log.commit(("t", 0, 42), producer_id=PRODUCER))
    store.apply(*log.commit(("t", 0, 50)))
    store.apply(*log.marker(commit=True))
    assert committed(store) == {("t", 0): 50}


def test_a_marker_settles_only_its_own_producer() -> None:
    log, store = OffsetsLog(), OffsetStore()
    store.apply(*log.commit(("t", 0, 1), producer_id=PRODUCER))
    store.apply(*log.commit(("t", 1, 2), producer_id=PRODUCER + 1))
    store.apply(*log.marker(commit=True, producer_id=PRODUCER + 1))
    assert committed(store) == {("t", 1): 2}
    assert store.is_pending(("g", "t", 0)) and not store.is_pending(("g", "t", 1))


def test_group_records_are_handed_to_the_coordinator() -> None:
    store = OffsetStore()
    data = record_batch([b"{}", None], keys=[group_key("g"), group_key("h")], timestamp_ms=0)
    store.apply(parse_header(data), data)
    assert store.group_records == [(("group", "g"), b"{}"), (("group", "h"), None)]
    assert store.committed == {}
