"""Writes that fail, segments that go missing, corruption at rest: the partition log never keeps
a partial batch, never cuts damage away silently, and goes offline rather than guess.

The disk faults here are injected at the file layer (a real file whose writes stop after a
budget of bytes, as a full disk makes them); tests/storage repeats the important ones on a
real full tmpfs."""

from __future__ import annotations

import errno
import os
import random

import pytest
from kio.schema.errors import ErrorCode

from log.log_batches import NOW_MS, OpenLog, append, make_batch, segment_files, sync
from samsa.log.partition import LOG_START_FILE, CorruptLog, LogConfig, PartitionLog, StorageError
from samsa.log.scrub import Scrubber
from samsa.log.segment import segment_name
from samsa.log.storage import Bytes, DataDirLocked, File, OsFile, OsStorage
from samsa.log.txn_index import AbortedTxn, TxnIndex
from samsa.protocol.batch import (
    HEADER_BYTES,
    TRANSACTIONAL_FLAG,
    crc_ok,
    iter_batches,
    parse_header,
)
from samsa.sim.disk import DiskFaults, SimDisk


class _FillingDisk(OsStorage):
    """Real files on a disk with `room` bytes left: a write past it writes what fits (as
    writev does on a full filesystem) and then fails with ENOSPC."""

    def __init__(self) -> None:
        self.room: int | None = None  # None: unlimited

    def open(self, path: str) -> File:
        disk = self

        class _File(OsFile):
            def append(self, *parts: Bytes) -> None:
                data = b"".join(bytes(p) for p in parts)
                if disk.room is not None and len(data) > disk.room:
                    fits, disk.room = data[: disk.room], 0
                    super().append(fits)
                    raise OSError(errno.ENOSPC, "No space left on device")
                if disk.room is not None:
                    disk.room -= len(data)
                super().append(data)

        return _File(path)


def _whole_batches(path: str) -> int:
    with open(path, "rb") as f:
        data = f.read()
    end = 0
    for position, header in iter_batches(data):
        assert crc_ok(data, position, header)
        end = position + header.size
    assert end == len(data), f"{path} ends in {len(data) - end} byte(s) of a partial batch"
    return end


def test_a_write_the_disk_refuses_is_undone_and_writes_resume_when_space_returns(
    log_dir: str,
) -> None:
    """Before: the failed write left part of a batch in the segment, later writes landed
    behind it, and the next recovery cut them all away."""
    disk = _FillingDisk()
    log = PartitionLog.open(disk, log_dir, "t", 0, LogConfig(), NOW_MS, False)
    append(log, [b"a" * 100])
    sync(log)
    disk.room = 50  # less than the next batch
    with pytest.raises(StorageError):
        append(log, [b"b" * 100])
    assert log.offline is None, "an undone write leaves the log online"
    assert log.log_end_offset == 1
    disk.room = None  # space returns
    assert append(log, [b"c" * 100]).base_offset == 1
    sync(log)
    log.close()
    _whole_batches(os.path.join(log_dir, segment_files(log_dir)[0]))
    reopened = PartitionLog.open(OsStorage(), log_dir, "t", 0, LogConfig(), NOW_MS, True)
    assert reopened.log_end_offset == 2
    reopened.close()


def test_a_roll_the_disk_refuses_is_undone(log_dir: str) -> None:
    disk = _FillingDisk()
    size = len(make_batch([b"a" * 100]))
    log = PartitionLog.open(disk, log_dir, "t", 0, LogConfig(segment_bytes=size), NOW_MS, False)
    append(log, [b"a" * 100])
    disk.room = 10  # the next batch rolls a new segment, then fails in it
    with pytest.raises(StorageError):
        append(log, [b"b" * 100])
    assert [s.base_offset for s in log.segments] == [0]
    assert segment_files(log_dir) == [segment_name(0) + ".log"]
    disk.room = None
    assert append(log, [b"b" * 100]).base_offset == 1
    assert [s.base_offset for s in log.segments] == [0, 1]
    log.close()


def test_a_write_that_cannot_be_undone_takes_the_log_offline(log_dir: str) -> None:
    class _Broken(_FillingDisk):
        def open(self, path: str) -> File:
            file = super().open(path)

            def truncate(size: int) -> None:
                raise OSError(errno.EIO, "Input/output error")

            file.truncate = truncate  # type: ignore[method-assign]
            return file

    disk = _Broken()
    log = PartitionLog.open(disk, log_dir, "t", 0, LogConfig(), NOW_MS, False)
    disk.room = 20
    with pytest.raises(StorageError):
        append(log, [b"b" * 100])
    assert log.offline is not None and "could not be undone" in log.offline
    with pytest.raises(StorageError):
        append(log, [b"c"])
    log.close()


def test_retention_checkpoints_the_log_start_and_a_missing_first_segment_is_corruption(
    open_log: OpenLog, log_dir: str
) -> None:
    size = len(make_batch([b"x"]))
    log = open_log(segment_bytes=size, retention_bytes=2 * size)
    for _ in range(4):
        append(log, [b"x"])
    sync(log)
    assert log.apply_retention(NOW_MS) == 2
    with open(os.path.join(log_dir, LOG_START_FILE)) as f:
        assert f.read().strip() == "2"
    log.close()
    reopened = open_log(segment_bytes=size)
    assert (reopened.log_start_offset, reopened.log_end_offset) == (2, 4)
    reopened.close()
    # The new first segment is lost: without the checkpoint the log would just start later.
    os.remove(os.path.join(log_dir, segment_name(2) + ".log"))
    os.remove(os.path.join(log_dir, segment_name(2) + ".index"))
    os.remove(os.path.join(log_dir, segment_name(2) + ".timeindex"))
    os.remove(os.path.join(log_dir, segment_name(2) + ".txnindex"))
    with pytest.raises(CorruptLog, match="segment missing: the log starts at offset 2"):
        open_log(segment_bytes=size)


def test_an_interrupted_retention_is_finished_at_the_next_start(
    open_log: OpenLog, log_dir: str
) -> None:
    size = len(make_batch([b"x"]))
    log = open_log(segment_bytes=size)
    for _ in range(3):
        append(log, [b"x"])
    log.close()
    # A crash after the checkpoint, before the files were deleted.
    with open(os.path.join(log_dir, LOG_START_FILE), "w") as f:
        f.write("2\n")
    reopened = open_log(segment_bytes=size)
    assert reopened.log_start_offset == 2
    assert segment_files(log_dir) == [segment_name(2) + ".log"]
    reopened.close()


def test_a_deleted_middle_segment_is_corruption(open_log: OpenLog, log_dir: str) -> None:
    """Before: the broker started with a hole of the segment's records and said nothing."""
    size = len(make_batch([b"x"]))
    log = open_log(segment_bytes=size)
    for _ in range(3):
        append(log, [b"x"])
    log.close()
    os.remove(os.path.join(log_dir, segment_name(1) + ".log"))
    with pytest.raises(CorruptLog, match=r"segment missing: its \.index file is there"):
        open_log(segment_bytes=size)
    for suffix in (".index", ".timeindex", ".txnindex"):
        os.remove(os.path.join(log_dir, segment_name(1) + suffix))
    with pytest.raises(CorruptLog, match="offsets 1 to 1 are missing"):
        open_log(segment_bytes=size)


def test_a_lost_last_segment_is_found_by_its_snapshot_after_a_clean_stop(
    open_log: OpenLog, log_dir: str
) -> None:
    size = len(make_batch([b"x"]))
    log = open_log(segment_bytes=size)
    for _ in range(3):
        append(log, [b"x"])
    log.close()  # snapshots producer state at offset 3
    for suffix in (".log", ".index", ".timeindex", ".txnindex"):
        os.remove(os.path.join(log_dir, segment_name(2) + suffix))
    with pytest.raises(CorruptLog, match="snapshot at offset 3 but the log ends at 2"):
        open_log(segment_bytes=size)


def test_the_scrubber_finds_a_flipped_byte_in_a_sealed_segment(
    open_log: OpenLog, log_dir: str
) -> None:
    """Before: sealed segments were never read back; the byte was served as good data."""
    size = len(make_batch([b"x" * 50]))
    log = open_log(segment_bytes=2 * size)
    for _ in range(6):
        append(log, [b"x" * 50])
    sync(log)
    path = os.path.join(log_dir, segment_name(2) + ".log")
    with open(path, "r+b") as f:
        f.seek(size + HEADER_BYTES + 5)
        byte = f.read(1)
        f.seek(size + HEADER_BYTES + 5)
        f.write(bytes([byte[0] ^ 0x10]))
    now = [NOW_MS]
    scrubber = Scrubber(lambda: [log], lambda: now[0], interval_ms=60_000)
    verified = scrubber.step(10 * size)
    assert log.offline is not None
    assert f"{path} at byte {size}: CRC-32C mismatch (after offset 2)" in log.offline
    assert scrubber.status.findings == [log.offline.removeprefix("scrub found corruption: ")]
    assert verified == 2 * size + size, "two good segments' worth, then the good batch before"
    log.close()


def test_the_scrubber_is_paced_and_starts_again_after_its_interval(
    open_log: OpenLog,
) -> None:
    size = len(make_batch([b"x" * 50]))
    log = open_log(segment_bytes=2 * size)
    for _ in range(4):
        append(log, [b"x" * 50])
    now = [NOW_MS]
    scrubber = Scrubber(lambda: [log], lambda: now[0], interval_ms=60_000)
    assert scrubber.step(size) == size  # whole batches, no more than the budget
    assert scrubber.step(10 * size) == 3 * size
    assert scrubber.step(10 * size) == 0
    assert scrubber.status.passes_completed == 1
    now[0] += 59_999
    assert scrubber.step(10 * size) == 0, "the next pass waits for its interval"
    now[0] += 1
    assert scrubber.step(10 * size) == 4 * size
    assert log.offline is None and scrubber.status.findings == []
    log.close()


def test_one_owner_per_data_dir(tmp_path: object) -> None:
    """flock: a second owner is refused even in the same process, and learns the pid."""
    directory = str(tmp_path)
    first = OsStorage().lock(directory)
    with pytest.raises(DataDirLocked) as refused:
        OsStorage().lock(directory)
    assert refused.value.holder_pid == os.getpid()
    assert str(os.getpid()) in str(refused.value)
    first.release()
    OsStorage().lock(directory).release()


def test_no_snapshot_at_shutdown_unless_everything_before_it_is_durable(log_dir: str) -> None:
    """Found by the disk-fault simulation (seed 14): the shutdown snapshot was written before
    the indexes were synced. When the aborted-transaction index's fsync failed, the snapshot
    still claimed everything before it was settled; after a later power loss the index had lost
    its entry, no replay restored it, and an aborted transaction's records became visible to
    read_committed readers."""

    class _FailingIndexSync(OsStorage):
        def open(self, path: str) -> File:
            file = OsFile(path)
            if path.endswith(".txnindex"):

                def sync() -> None:
                    raise OSError(errno.EIO, "Input/output error")

                file.sync = sync  # type: ignore[method-assign]
            return file

    log = PartitionLog.open(_FailingIndexSync(), log_dir, "t", 0, LogConfig(), NOW_MS, False)
    append(log, [b"a"])
    assert log.close() is False, "the shutdown is not clean: the next start must recover"
    assert not [name for name in os.listdir(log_dir) if name.endswith(".snapshot")]


def test_a_damaged_middle_index_entry_is_found_on_read_and_rebuilt(
    open_log: OpenLog, log_dir: str
) -> None:
    """Found by `samsa log verify`'s author: start-up checks only an index's last entry, and a
    middle entry moved by one byte made fetches at six offsets below the high watermark come
    back empty, with no error."""
    log = open_log(index_interval_bytes=1)  # an entry for every batch
    for n in range(12):
        append(log, [f"v{n}".encode()])
    sync(log)
    log.close()
    index = os.path.join(log_dir, segment_name(0) + ".index")
    with open(index, "r+b") as f:
        f.seek(6 * 8 + 4)  # entry 6's position
        position = int.from_bytes(f.read(4), "big")
        f.seek(6 * 8 + 4)
        f.write((position + 1).to_bytes(4, "big"))

    log = open_log(index_interval_bytes=1)
    for offset in range(12):
        data = log.read(offset, 1 << 20, log.high_watermark, min_one=True)
        first = next(iter(iter_batches(data)))[1]
        assert first.base_offset == offset, offset
    with open(index, "rb") as f:
        f.seek(6 * 8 + 4)
        assert int.from_bytes(f.read(4), "big") == position, "the index file was rebuilt"
    log.close()


def test_a_damaged_aborted_transaction_index_is_rebuilt_by_a_whole_replay(
    open_log: OpenLog, log_dir: str
) -> None:
    """The entries after a damaged one are lost, and a replay from the newest snapshot would
    not reach their markers: aborted records would be served to read_committed readers."""
    log = open_log()
    pid = 7
    for n in range(3):
        data = make_batch(
            [f"t{n}".encode()],
            producer_id=pid,
            producer_epoch=0,
            base_sequence=n,
            attributes=TRANSACTIONAL_FLAG,
        )
        log.append(data, parse_header(data), NOW_MS, lambda _: ErrorCode.none)
        log.append_marker(pid, 0, commit=False, coordinator_epoch=0, now_ms=NOW_MS)
    sync(log)
    aborted = [(e.first_offset, e.last_offset) for e in log.aborted_transactions(0, 6)]
    assert aborted == [(0, 1), (2, 3), (4, 5)]
    log.close()  # a snapshot at the log end: nothing to replay after it
    txn_index = os.path.join(log_dir, segment_name(0) + ".txnindex")
    with open(txn_index, "r+b") as f:
        f.seek(34)  # the second entry's version field
        f.write(b"\x00\x09")

    log = open_log()
    again = [(e.first_offset, e.last_offset) for e in log.aborted_transactions(0, 6)]
    assert again == aborted
    log.close()


def test_loading_the_aborted_transaction_index_never_rewrites_what_it_keeps() -> None:
    """Found by the disk-fault simulation (seed 508): loading cut a torn entry off by
    truncating the file to nothing and writing the kept entries again; a write that failed
    there (or a crash) left the file empty. The entries lost had markers before the newest
    producer snapshot, so no replay restored them, and an aborted transaction's records were
    served to read_committed readers."""
    disk = SimDisk(DiskFaults(write_error=1.0), random.Random(1), ("/d/",))
    path = "/d/t-0/00000000000000000000.txnindex"
    index = TxnIndex(disk.open(path))
    disk.faults = DiskFaults()
    index.append(AbortedTxn(7, 0, 1, 2))
    index.append(AbortedTxn(7, 2, 3, 4))
    disk.open(path).append(b"\x00" * 20)  # a torn third entry
    disk.faults = DiskFaults(write_error=1.0)  # every write now fails halfway
    TxnIndex(disk.open(path)).load(0, 10)
    reloaded = TxnIndex(disk.open(path))
    reloaded.load(0, 10)
    assert [(e.first_offset, e.last_offset) for e in reloaded.entries] == [(0, 1), (2, 3)]
