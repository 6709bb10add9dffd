"""The bounded cache of log-file descriptors (`log.open.files.max`): never more open than the
bound, nothing lost or misread across evictions, and a descriptor closed only after what was
written through it is fsynced."""

from __future__ import annotations

import errno
import os
import resource
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from log.log_batches import NOW_MS, append, sync, values
from samsa.log.partition import LogConfig, PartitionLog, StorageError
from samsa.log.storage import FileCache, OsFile, OsStorage, OutOfDescriptors

HUGE = 1 << 30


def read_all_values(log: PartitionLog) -> list[bytes | None]:
    found: list[bytes | None] = []
    offset = log.log_start_offset
    while offset < log.high_watermark:
        data = log.read(offset, HUGE, log.high_watermark, min_one=True)
        assert data, f"no progress at offset {offset}"
        found += values(bytes(data))
        offset = log.log_start_offset + len(found)
    return found


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_never_more_descriptors_than_the_bound_and_every_byte_reads_back(
    tmp_path: Path,
) -> None:
    cache = FileCache(8)
    before = _open_fds()
    files = [OsFile(str(tmp_path / f"f{i}"), cache) for i in range(100)]
    for round_number in range(3):
        for i, file in enumerate(files):
            file.append(f"{round_number}:{i};".encode())
            assert cache.open_count <= 8
            assert _open_fds() - before <= 8
    for i, file in enumerate(files):
        assert file.read(0, file.size()) == f"0:{i};1:{i};2:{i};".encode()
    assert cache.evictions > 250, "the test must make the cache evict"
    for file in files:
        file.close()
    assert cache.open_count == 0
    assert _open_fds() == before


def test_a_file_written_since_its_last_fsync_is_fsynced_before_its_descriptor_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fdatasync = os.fdatasync

    def recording_fdatasync(fd: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", recording_fdatasync)
    cache = FileCache(1)
    dirty = OsFile(str(tmp_path / "dirty"), cache)
    dirty.append(b"not yet on disk")
    clean = OsFile(str(tmp_path / "clean"), cache)  # evicts `dirty`
    assert synced == ["dirty"]
    clean.append(b"x")
    clean.sync()
    synced.clear()
    OsFile(str(tmp_path / "third"), cache)  # evicts `clean`, fsynced already: no fsync again
    assert synced == []


def test_a_descriptor_in_use_is_not_closed_under_its_user(tmp_path: Path) -> None:
    cache = FileCache(1)
    busy = OsFile(str(tmp_path / "busy"), cache)
    busy.append(b"data")
    with cache.descriptor(busy) as fd:  # as an fsync worker holds it
        other = OsFile(str(tmp_path / "other"), cache)  # cannot evict `busy`: over by one
        assert cache.open_count == 2
        busy.close()  # the log closes it meanwhile: the descriptor stays until the user is done
        assert os.pread(fd, 4, 0) == b"data"
    assert cache.open_count == 1
    with pytest.raises(OSError, match="closed"):
        busy.read(0, 4)
    other.close()


def test_a_partition_log_behind_a_tiny_cache_keeps_every_record(tmp_path: Path) -> None:
    """Ten logs of several segments each, through a cache of 6 descriptors: writes, syncs,
    rolls, reads and a reopen all see every record."""
    storage = OsStorage(open_files_max=6)
    config = LogConfig(segment_bytes=300)
    logs = [
        PartitionLog.open(storage, str(tmp_path / f"t-{p}"), "t", p, config, NOW_MS, False)
        for p in range(10)
    ]
    for n in range(20):
        for p, log in enumerate(logs):
            append(log, [f"{p}-{n}".encode()])
            sync(log)
            assert storage.files.open_count <= 6 + 1  # one pinned by the call under way
    for p, log in enumerate(logs):
        assert len(log.segments) > 3
        assert read_all_values(log) == [f"{p}-{n}".encode() for n in range(20)]
        assert log.close()
    reopened = PartitionLog.open(storage, str(tmp_path / "t-3"), "t", 3, config, NOW_MS, True)
    assert read_all_values(reopened) == [f"3-{n}".encode() for n in range(20)]
    reopened.close()


class Exhausted:
    """The process's descriptors used up: the soft open-files limit lowered near what is open,
    and the rest taken by /dev/null; `give_back(n)` frees n. Restored at teardown."""

    def __init__(self) -> None:
        self.soft, self.hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 64, self.hard))
        self.taken: list[int] = []
        while True:
            try:
                self.taken.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break

    def give_back(self, count: int) -> None:
        for _ in range(count):
            os.close(self.taken.pop())

    def restore(self) -> None:
        self.give_back(len(self.taken))
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.soft, self.hard))


@pytest.fixture
def exhaust() -> Iterator[Callable[[], Exhausted]]:
    made: list[Exhausted] = []

    def _exhaust() -> Exhausted:
        made.append(Exhausted())
        return made[-1]

    yield _exhaust
    for exhausted in made:
        exhausted.restore()


def test_out_of_descriptors_the_cache_gives_back_half_of_its_own(
    tmp_path: Path, exhaust: Callable[[], Exhausted]
) -> None:
    cache = FileCache(1000)
    files = [OsFile(str(tmp_path / f"f{i}"), cache) for i in range(20)]
    exhaust()
    late = OsFile(str(tmp_path / "late"), cache)  # EMFILE, then room made: opened
    late.append(b"opened")
    assert cache.open_count == 11
    assert late.read(0, 6) == b"opened"
    for file in [*files, late]:
        file.close()


def test_a_log_that_gets_no_descriptor_fails_that_request_and_stays_online(
    tmp_path: Path, exhaust: Callable[[], Exhausted]
) -> None:
    """Not the disk's fault: before, the failed open was taken for a write that could not be
    undone, and the partition went offline until a restart."""
    storage = OsStorage(open_files_max=4)
    log = PartitionLog.open(storage, str(tmp_path / "t-0"), "t", 0, LogConfig(), NOW_MS, False)
    append(log, [b"first"])
    sync(log)
    storage.files.trim()  # as if the cache had given its descriptors to other logs
    exhausted = exhaust()
    with pytest.raises(StorageError):
        append(log, [b"refused"])
    assert log.offline is None
    with pytest.raises(OutOfDescriptors):
        log.read(0, HUGE, log.high_watermark, min_one=True)
    log.read_failed(OutOfDescriptors(errno.EMFILE, "Too many open files"))
    assert log.offline is None
    exhausted.give_back(8)
    append(log, [b"second"])
    sync(log)
    assert read_all_values(log) == [b"first", b"second"]
    log.close()
