"""The log cleaner on real files, against a model of compaction (Hypothesis), plus Kafka's
cleaner cases: latest value per key, tombstone expiry, aborted data never visible, committed
data never lost, offsets kept, nothing at or past the LSO cleaned, producer state after a
reopen (KAFKA-7190), and a crash at every step of a swap followed by a real reopen."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.records.readers import read_batch
from kio.schema.errors import ErrorCode

from log.log_batches import NOW_MS, append, make_batch, sync
from samsa.log import swap
from samsa.log.cleaner import SWAP_STEPS, LogCleaner
from samsa.log.compaction import CompactionConfig
from samsa.log.partition import LogConfig, PartitionLog
from samsa.log.storage import OsStorage
from samsa.protocol.batch import (
    TRANSACTIONAL_FLAG,
    iter_batches,
    parse_header,
    validate_produced,
)
from samsa.tools.logdir import check_partition, parse_partition_dir

DAY_MS = 24 * 3600 * 1000


def compacted_config(**overrides: object) -> LogConfig:
    compaction = CompactionConfig(
        compact=True,
        min_cleanable_dirty_ratio=float(overrides.pop("ratio", 0.01)),  # type: ignore[arg-type]
        delete_retention_ms=int(overrides.pop("delete_retention_ms", DAY_MS)),  # type: ignore[call-overload]
        segment_bytes=400,
    )
    return LogConfig(segment_bytes=400, cleanup_delete=False, compaction=compaction)


def open_log(directory: str, config: LogConfig, recover: bool = False) -> PartitionLog:
    return PartitionLog.open(OsStorage(), directory, "t", 0, config, NOW_MS, recover)


@dataclass(frozen=True)
class Seen:
    offset: int
    key: bytes | None
    value: bytes | None
    producer_id: int
    transactional: bool


def read_all(log: PartitionLog) -> tuple[list[Seen], list[tuple[int, int, int]]]:
    """Every data record below the high watermark as a read_uncommitted consumer gets it, and
    the aborted transactions a read_committed fetch from 0 is handed (pid, first, last)."""
    seen: list[Seen] = []
    offset = log.log_start_offset
    while offset < log.high_watermark:
        data = bytes(log.read(offset, 1 << 20, log.high_watermark, True))
        if not data:
            break
        for position, header in iter_batches(data):
            offset = header.next_offset
            if header.is_control:
                continue
            batch, _ = read_batch(data, position)
            for record in batch.records:
                seen.append(
                    Seen(
                        int(record.offset),
                        record.key,
                        record.value,
                        header.producer_id,
                        header.is_transactional,
                    )
                )
    aborted = [
        (a.producer_id, a.first_offset, a.last_offset)
        for a in log.aborted_transactions(0, log.high_watermark)
    ]
    return seen, aborted


def committed_view(seen: list[Seen], aborted: list[tuple[int, int, int]]) -> list[Seen]:
    """What a read_committed consumer keeps (the client's filtering by the aborted list)."""
    return [
        r
        for r in seen
        if not (
            r.transactional
            and any(pid == r.producer_id and f <= r.offset <= last for pid, f, last in aborted)
        )
    ]


# ----------------------------------------------------------------- building logs
Op = tuple[str, int, list[tuple[bytes, bytes | None]], bool]


@dataclass
class Writer:
    log: PartitionLog
    sequences: dict[int, int]

    def put(self, records: list[tuple[bytes, bytes | None]], pid: int = -1) -> None:
        kw: dict[str, object] = {}
        if pid >= 0:
            seq = self.sequences.get(pid, 0)
            kw = {"producer_id": pid, "producer_epoch": 0, "base_sequence": seq}
            self.sequences[pid] = seq + len(records)
        append(self.log, [v for _, v in records], keys=[k for k, _ in records], **kw)  # type: ignore[arg-type]

    def txn(self, pid: int, records: list[tuple[bytes, bytes | None]], commit: bool) -> None:
        seq = self.sequences.get(pid, 0)
        transactional(self.log, pid, seq, records)
        self.sequences[pid] = seq + len(records)
        self.log.append_marker(pid, 0, commit, 0, NOW_MS)


def transactional(
    log: PartitionLog, pid: int, sequence: int, records: list[tuple[bytes, bytes | None]]
) -> None:
    """A transactional batch, its transaction verified (as the coordinator would, KIP-890)."""
    data = make_batch(
        [v for _, v in records],
        keys=[k for k, _ in records],
        producer_id=pid,
        producer_epoch=0,
        base_sequence=sequence,
        attributes=TRANSACTIONAL_FLAG,
    )
    log.append(data, validate_produced(data, 1 << 30), NOW_MS, lambda _: ErrorCode.none)


keys = st.sampled_from([b"a", b"b", b"c", b"d", b"e"])
values = st.one_of(st.none(), st.binary(min_size=1, max_size=30))
records = st.lists(st.tuples(keys, values), min_size=1, max_size=3)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.just(-1), records, st.just(True)),
        st.tuples(st.just("idem"), st.just(7), records, st.just(True)),
        st.tuples(st.just("txn"), st.sampled_from([11, 12]), records, st.booleans()),
    ),
    min_size=1,
    max_size=40,
)


def build(directory: str, history: list[Op], open_txn: bool = False) -> tuple[PartitionLog, int]:
    log = open_log(directory, compacted_config())
    writer = Writer(log, {})
    for kind, pid, recs, commit in history:
        if kind == "put":
            writer.put(recs)
        elif kind == "idem":
            writer.put(recs, pid)
        else:
            writer.txn(pid, recs, commit)
    open_from = -1
    if open_txn:
        open_from = log.log_end_offset
        transactional(log, 99, 0, [(b"a", b"open")])
    writer.put([(b"z", b"tail")])  # in the active segment
    sync(log)
    return log, open_from


def expected_after(before: list[Seen], end: int) -> list[Seen]:
    """The model: below `end`, the latest record per key of [0, end); from `end` on, all."""
    latest: dict[bytes | None, int] = {}
    for r in before:
        if r.offset < end:
            latest[r.key] = r.offset
    return [r for r in before if r.offset >= end or latest[r.key] == r.offset]


@pytest.fixture
def fresh_dir(tmp_path: Path) -> Iterator[str]:
    yield str(tmp_path / "t-0")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(history=ops, open_txn=st.booleans())
def test_compaction_matches_the_model(tmp_path: Path, history: list[Op], open_txn: bool) -> None:
    directory = str(tmp_path / "model")
    shutil.rmtree(directory, ignore_errors=True)
    log, open_from = build(directory, history, open_txn)
    try:
        before_seen, before_aborted = read_all(log)
        before = committed_view(before_seen, before_aborted)
        aborted_offsets = {r.offset for r in before_seen} - {r.offset for r in before}
        lso = log.last_stable_offset
        last_sequences = {d.producer_id: d.last_sequence for d in log.producers.describe_all()}
        end = log.active.base_offset
        LogCleaner(lambda: [log], lambda: NOW_MS).run_until_idle()
        cleaned_to, _ = swap.read_checkpoint(log.storage, directory)
        after_seen, after_aborted = read_all(log)
        after = committed_view(after_seen, after_aborted)
        # Nothing at or past the LSO, nor in the active segment, is cleaned.
        assert cleaned_to <= min(lso, end)
        if open_from >= 0:
            assert cleaned_to <= open_from
        assert after == expected_after(before, cleaned_to)
        # Aborted data is gone from the cleaned range even for read_uncommitted readers.
        assert not [r for r in after_seen if r.offset in aborted_offsets and r.offset < cleaned_to]
        offsets = [r.offset for r in after_seen]
        assert offsets == sorted(set(offsets))
        assert log.high_watermark == log.log_end_offset
        # A reopen replaying the whole log (no snapshot) sees the same records and rebuilds
        # every producer's last sequence: none is unknown because its batches were cleaned.
        log.close_files()
        for name in os.listdir(directory):
            if name.endswith(".snapshot"):
                os.remove(os.path.join(directory, name))
        log = open_log(directory, compacted_config())
        reopened_seen, reopened_aborted = read_all(log)
        assert committed_view(reopened_seen, reopened_aborted) == after
        for pid, last in last_sequences.items():
            described = log.producers.describe(pid)
            assert described is not None and described.last_sequence == last, pid
    finally:
        log.close_files()


def test_tombstones_expire_after_delete_retention_ms(fresh_dir: str) -> None:
    log = open_log(fresh_dir, compacted_config(delete_retention_ms=1000))
    writer = Writer(log, {})
    for i in range(20):
        writer.put([(b"k%d" % (i % 4), b"v%d" % i)])
    writer.put([(b"k0", None)])  # a tombstone
    for i in range(20):
        writer.put([(b"x%d" % i, b"filler")])
    sync(log)
    now = NOW_MS
    cleaner = LogCleaner(lambda: [log], lambda: now)
    cleaner.run_until_idle()
    keys_left = [(r.key, r.value) for r in read_all(log)[0]]
    assert (b"k0", None) in keys_left  # kept: first pass, and within delete.retention.ms
    assert [k for k, _ in keys_left].count(b"k1") == 1
    # More data, a later pass, past the retention: the tombstone (now clean) goes.
    for i in range(20):
        writer.put([(b"y%d" % i, b"filler")])
    sync(log)
    now = NOW_MS + 5000
    cleaner.run_until_idle()
    keys_left = [(r.key, r.value) for r in read_all(log)[0]]
    assert (b"k0", None) not in keys_left
    assert not [k for k, _ in keys_left if k == b"k0"]
    log.close_files()


def test_markers_go_once_their_transaction_data_is_gone(fresh_dir: str) -> None:
    log = open_log(fresh_dir, compacted_config(delete_retention_ms=1000))
    writer = Writer(log, {})
    writer.txn(11, [(b"k", b"aborted")], commit=False)
    writer.txn(12, [(b"k", b"committed-then-overwritten")], commit=True)
    writer.txn(12, [(b"only", b"committed")], commit=True)
    for i in range(30):
        writer.put([(b"k", b"v%d" % i)])
    sync(log)
    now = NOW_MS

    def markers() -> list[int]:
        found = []
        for segment in log.segments:
            for _, header in segment.batches():
                if header.is_control:
                    found.append(header.producer_id)
        return found

    cleaner = LogCleaner(lambda: [log], lambda: now)
    cleaner.run_until_idle()
    # The data went in this pass; the markers stay for it (Kafka keeps them one pass longer).
    assert sorted(markers()) == [11, 12, 12]
    assert b"aborted" not in [r.value for r in read_all(log)[0]]
    for i in range(30):
        writer.put([(b"k", b"w%d" % i)])
    sync(log)
    now = NOW_MS + 5000
    cleaner.run_until_idle()
    # The first transaction of 12 has no data left: its marker went after
    # delete.retention.ms. A producer's last data batch stays (emptied if need be, so its
    # state survives), and so does its marker, or a replay would find it open (Kafka's rule).
    assert markers().count(12) == 1
    assert markers().count(11) == 1
    assert [r.value for r in read_all(log)[0] if r.key == b"only"] == [b"committed"]
    log.close_files()


def test_min_compaction_lag_and_dirty_ratio_hold_cleaning_back(fresh_dir: str) -> None:
    log = open_log(fresh_dir, compacted_config())
    writer = Writer(log, {})
    for i in range(60):
        writer.put([(b"k%d" % i, b"v%d" % i)])  # all distinct: cleaning keeps them all
    sync(log)
    cleaner = LogCleaner(lambda: [log], lambda: NOW_MS)
    cleaner.run_until_idle()
    assert cleaner.stats.passes == 1
    for i in range(8):
        writer.put([(b"k", b"w%d" % i)])
    sync(log)

    def configure(ratio: float, lag_ms: int) -> None:
        log.config = LogConfig(
            segment_bytes=400,
            cleanup_delete=False,
            compaction=CompactionConfig(
                compact=True, min_cleanable_dirty_ratio=ratio, min_compaction_lag_ms=lag_ms
            ),
        )

    configure(0.5, 0)
    cleaner.run_until_idle()
    assert cleaner.stats.passes == 1  # a little dirty data, under half of the log
    configure(0.01, 10_000)
    cleaner.run_until_idle()
    assert cleaner.stats.passes == 1  # dirty enough, but younger than the lag
    LogCleaner(lambda: [log], lambda: NOW_MS + 10_001).run_until_idle()
    end = log.active.base_offset
    assert [r.key for r in read_all(log)[0] if r.offset < end].count(b"k") == 1
    log.close_files()


def test_samsa_log_verify_takes_compaction_gaps_for_what_they_are(fresh_dir: str) -> None:
    log = open_log(fresh_dir, compacted_config())
    writer = Writer(log, {})
    for i in range(60):
        writer.put([(b"k%d" % (i % 3), b"v%d" % i)])
    sync(log)
    LogCleaner(lambda: [log], lambda: NOW_MS).run_until_idle()
    log.close()
    ref = parse_partition_dir("t-0")
    assert ref is not None
    report = check_partition(os.path.dirname(fresh_dir), ref)
    assert report.segments > 1 and not report.findings, report.findings
    # Without the checkpoint the same gaps are missing offsets.
    os.remove(os.path.join(fresh_dir, swap.CHECKPOINT_FILE))
    report = check_partition(os.path.dirname(fresh_dir), ref)
    assert any("missing between" in f.problem for f in report.findings), report.findings


def test_a_reader_mid_partition_continues_across_a_cleaning(fresh_dir: str) -> None:
    log = open_log(fresh_dir, compacted_config())
    writer = Writer(log, {})
    for i in range(40):
        writer.put([(b"k%d" % (i % 3), b"v%d" % i)])
    sync(log)
    position = 17  # a consumer has read up to here
    LogCleaner(lambda: [log], lambda: NOW_MS).run_until_idle()
    data = bytes(log.read(position, 1 << 20, log.high_watermark, True))
    first = parse_header(data)
    # It gets the next batch still there: offsets never move, some are skipped.
    assert first.base_offset >= position or first.last_offset >= position
    rest = [r.offset for r in read_all(log)[0] if r.offset >= position]
    assert rest == sorted(rest) and rest
    log.close_files()


@pytest.mark.parametrize("step", SWAP_STEPS)
def test_a_crash_at_every_step_leaves_the_old_log_or_the_new(fresh_dir: str, step: str) -> None:
    log = open_log(fresh_dir, compacted_config())
    writer = Writer(log, {})
    for i in range(60):
        writer.put([(b"k%d" % (i % 5), b"v%d" % i)])
    writer.txn(11, [(b"k1", b"aborted")], commit=False)
    for i in range(10):
        writer.put([(b"x%d" % i, b"filler")])
    sync(log)
    before = committed_view(*read_all(log))
    end = log.active.base_offset

    class Crash(Exception):
        pass

    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    cleaner = LogCleaner(lambda: [log], lambda: NOW_MS, crash_hook=crash)
    with pytest.raises(Crash):
        cleaner.run_until_idle()
    # The process "dies": descriptors go, nothing is flushed or snapshotted; then a real reopen.
    log.close_files()
    log = open_log(fresh_dir, compacted_config(), recover=True)
    try:
        after = committed_view(*read_all(log))
        assert not [n for n in os.listdir(fresh_dir) if n.endswith(swap.CLEANED_SUFFIX)]
        assert not os.path.exists(os.path.join(fresh_dir, swap.SWAP_MANIFEST))
        # Each segment range is the old one or the new one: the records seen are the old log
        # with some prefix of groups compacted, each record exactly as written.
        by_offset = {r.offset: r for r in before}
        assert all(by_offset[r.offset] == r for r in after)
        assert [r.offset for r in after] == sorted({r.offset for r in after})
        model = expected_after(before, end)
        assert set(model) <= set(after)  # nothing that must survive was lost
        tail = [r for r in before if r.offset >= end]
        assert [r for r in after if r.offset >= end] == tail
        # A later pass finishes the job.
        LogCleaner(lambda: [log], lambda: NOW_MS).run_until_idle()
        assert committed_view(*read_all(log)) == expected_after(before, end)
    finally:
        log.close_files()
