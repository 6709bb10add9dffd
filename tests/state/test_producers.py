"""Property tests of the idempotence rules (Kafka's ProducerAppendInfo), on the state alone."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from samsa.protocol.batch import INT32_MAX, TRANSACTIONAL_FLAG, BatchHeader, increment_sequence
from samsa.state.producers import (
    BATCHES_RETAINED,
    Append,
    Duplicate,
    ProducerStateError,
    ProducerStateManager,
)

DAY_MS = 24 * 3600 * 1000


def header(
    pid: int,
    epoch: int,
    base_sequence: int,
    count: int,
    base_offset: int = 0,
    timestamp: int = 1_000,
) -> BatchHeader:
    return BatchHeader(
        base_offset=base_offset,
        batch_length=100,
        partition_leader_epoch=0,
        magic=2,
        crc=0,
        attributes=0,
        last_offset_delta=count - 1,
        base_timestamp=timestamp,
        max_timestamp=timestamp,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=base_sequence,
        records_count=count,
    )


@dataclass
class FakeLog:
    """Drives the state as PartitionLog does: check, then write and apply."""

    state: ProducerStateManager
    end: int = 0

    def produce(self, h: BatchHeader) -> tuple[int, bool]:
        """(base offset answered, whether it was written)."""
        verdict = self.state.check(h)
        if isinstance(verdict, Duplicate):
            return verdict.batch.first_offset, False
        assert isinstance(verdict, Append)
        written = dataclasses.replace(h, base_offset=self.end)
        self.state.apply(written)
        self.end = written.next_offset
        return written.base_offset, True


@settings(max_examples=300, deadline=None)
@given(
    counts=st.lists(st.integers(1, 20), min_size=1, max_size=40),
    retries=st.lists(
        st.tuples(st.integers(0, 39), st.integers(0, BATCHES_RETAINED - 1)), max_size=40
    ),
    start=st.one_of(st.just(0), st.integers(0, INT32_MAX)),
)
def test_retries_within_the_window_are_never_written_twice(
    counts: list[int], retries: list[tuple[int, int]], start: int
) -> None:
    """Send batches in order; after some of them, retry one of the last five. Every batch is
    written exactly once, in order, and a retry is answered with the original offset."""
    log = FakeLog(ProducerStateManager(DAY_MS))
    sent: list[tuple[BatchHeader, int]] = []
    retry_after = {after: back for after, back in retries}
    sequence = start
    written = 0
    for i, count in enumerate(counts):
        h = header(7, 0, sequence, count)
        offset, was_written = log.produce(h)
        assert was_written
        written += 1
        sent.append((h, offset))
        sequence = increment_sequence(sequence, count)
        if i in retry_after and retry_after[i] < len(sent):
            original, original_offset = sent[-1 - retry_after[i]]
            offset, was_written = log.produce(original)
            assert not was_written
            assert offset == original_offset
    assert written == len(counts)
    assert log.end == sum(counts)


@given(count=st.integers(1, 10), gap=st.integers(1, 1000))
def test_a_gap_is_out_of_order_and_changes_nothing(count: int, gap: int) -> None:
    log = FakeLog(ProducerStateManager(DAY_MS))
    log.produce(header(1, 0, 0, count))
    with pytest.raises(ProducerStateError) as failure:
        log.state.check(header(1, 0, count + gap, 1))
    assert failure.value.error == ErrorCode.out_of_order_sequence_number
    assert log.produce(header(1, 0, count, 1)) == (count, True)


@given(old_epoch=st.integers(0, 9), sequence=st.integers(0, 100))
def test_an_older_epoch_is_invalid_producer_epoch(old_epoch: int, sequence: int) -> None:
    log = FakeLog(ProducerStateManager(DAY_MS))
    log.produce(header(1, 10, 0, 1))
    with pytest.raises(ProducerStateError) as failure:
        log.state.check(header(1, old_epoch, sequence, 1))
    assert failure.value.error == ErrorCode.invalid_producer_epoch


@given(sequence=st.integers(1, INT32_MAX))
def test_a_new_epoch_must_start_at_zero(sequence: int) -> None:
    log = FakeLog(ProducerStateManager(DAY_MS))
    log.produce(header(1, 0, 0, 3))
    with pytest.raises(ProducerStateError) as failure:
        log.state.check(header(1, 1, sequence, 1))
    assert failure.value.error == ErrorCode.out_of_order_sequence_number
    assert log.produce(header(1, 1, 0, 1))[1]
    # The old epoch's window is gone: its batches are no longer duplicates but fenced.
    with pytest.raises(ProducerStateError):
        log.state.check(header(1, 0, 0, 3))


@given(pid=st.integers(0, 2**62), sequence=st.integers(0, INT32_MAX), epoch=st.integers(0, 100))
def test_an_unknown_producer_may_start_anywhere(pid: int, sequence: int, epoch: int) -> None:
    log = FakeLog(ProducerStateManager(DAY_MS))
    assert log.produce(header(pid, epoch, sequence, 1))[1]


@given(before_wrap=st.integers(0, 5), count=st.integers(1, 10))
def test_sequences_wrap_at_int32_max(before_wrap: int, count: int) -> None:
    log = FakeLog(ProducerStateManager(DAY_MS))
    first = INT32_MAX - before_wrap
    log.produce(header(1, 0, first, count))
    following = increment_sequence(first, count)
    assert following == (first + count if first + count <= INT32_MAX else first + count - 2**31)
    assert log.produce(header(1, 0, following, 1))[1]
    assert log.produce(header(1, 0, first, count)) == (0, False)


def test_only_the_last_five_batches_are_recognised() -> None:
    log = FakeLog(ProducerStateManager(DAY_MS))
    for i in range(BATCHES_RETAINED + 1):
        log.produce(header(1, 0, i, 1))
    assert log.produce(header(1, 0, 1, 1)) == (1, False)  # fifth-newest: still retained
    with pytest.raises(ProducerStateError) as failure:
        log.state.check(header(1, 0, 0, 1))  # sixth-newest: fallen out of the window
    assert failure.value.error == ErrorCode.out_of_order_sequence_number


@settings(max_examples=100, deadline=None)
@given(
    counts=st.lists(st.integers(1, 5), min_size=1, max_size=12),
    pids=st.lists(st.integers(0, 50), min_size=1, max_size=12),
)
def test_a_snapshot_answers_retries_as_the_live_state_does(
    counts: list[int], pids: list[int]
) -> None:
    live = FakeLog(ProducerStateManager(DAY_MS))
    sequences: dict[int, int] = {}
    sent = []
    for count, pid in zip(counts, pids, strict=False):
        h = header(pid, 0, sequences.get(pid, 0), count)
        sequences[pid] = sequences.get(pid, 0) + count
        sent.append((h, live.produce(h)[0]))
    restored = ProducerStateManager(DAY_MS)
    assert restored.load_snapshot(live.state.snapshot(), now_ms=2_000)
    for h, offset in sent:
        assert outcome(restored, h) == outcome(live.state, h)
        if not isinstance(outcome(restored, h), (str, ErrorCode)):
            assert outcome(restored, h) == offset


def outcome(state: ProducerStateManager, h: BatchHeader) -> object:
    """The original offset for a duplicate, "append", or the error code."""
    try:
        verdict = state.check(h)
    except ProducerStateError as exc:
        return exc.error
    return verdict.batch.first_offset if isinstance(verdict, Duplicate) else "append"


def test_a_damaged_snapshot_is_refused() -> None:
    state = ProducerStateManager(DAY_MS)
    state.apply(header(1, 0, 0, 1))
    data = bytearray(state.snapshot())
    data[-2] ^= 0xFF
    fresh = ProducerStateManager(DAY_MS)
    assert not fresh.load_snapshot(bytes(data), now_ms=0)
    assert len(fresh) == 0


def test_idle_producers_expire() -> None:
    state = ProducerStateManager(expiration_ms=1_000)
    state.apply(header(1, 0, 0, 1, timestamp=0))
    state.apply(header(2, 0, 0, 1, timestamp=900))
    assert state.remove_expired(now_ms=1_500) == 1
    assert list(state.entries) == [2]


def test_non_idempotent_batches_are_not_tracked() -> None:
    state = ProducerStateManager(DAY_MS)
    h = header(-1, -1, -1, 3)
    assert isinstance(state.check(h), Append)
    state.apply(h)
    assert len(state) == 0


def txn_header(pid: int, epoch: int, base_sequence: int, count: int) -> BatchHeader:
    return dataclasses.replace(
        header(pid, epoch, base_sequence, count), attributes=TRANSACTIONAL_FLAG
    )


def test_sequences_reused_after_an_ended_transaction_are_refused() -> None:
    """librdkafka, after an abort purged batches it had in fact sent before a broker restart,
    sends new records under the same epoch and the same sequences. Those are not retries:
    taken for duplicates they would be answered with the aborted batch's offsets and never
    written. They are refused with UNKNOWN_PRODUCER_ID, so the client aborts and bumps its
    epoch (tests/transactions/test_sequence_reuse.py shows librdkafka doing it)."""
    state = ProducerStateManager(DAY_MS)
    log = FakeLog(state)
    assert log.produce(txn_header(7, 0, 0, 3)) == (0, True)  # transaction A
    state.apply_marker(header(7, 0, -1, 1, base_offset=3), aborted=True, coordinator_epoch=0)
    log.end = 4
    with pytest.raises(ProducerStateError) as refused:
        state.check(txn_header(7, 0, 0, 3))  # transaction B, the same sequences
    assert refused.value.error == ErrorCode.unknown_producer_id


def test_a_retry_inside_the_open_transaction_is_still_a_duplicate() -> None:
    state = ProducerStateManager(DAY_MS)
    log = FakeLog(state)
    assert log.produce(txn_header(7, 0, 0, 3)) == (0, True)  # transaction A
    state.apply_marker(header(7, 0, -1, 1, base_offset=3), aborted=False, coordinator_epoch=0)
    log.end = 4
    assert log.produce(txn_header(7, 0, 3, 2)) == (4, True)  # transaction B opens here
    assert log.produce(txn_header(7, 0, 5, 2)) == (6, True)
    assert log.produce(txn_header(7, 0, 3, 2)) == (4, False)  # retries of B's batches
    assert log.produce(txn_header(7, 0, 5, 2)) == (6, False)
    with pytest.raises(ProducerStateError):  # A's sequences, while B is open
        state.check(txn_header(7, 0, 0, 3))
