"""The small file interface the log is written against, and its real implementation.

`File.sync` may run on a worker thread while the event loop appends to the same file: that is
how fsyncs are group-committed without blocking the loop.

A data dir has one owner (Kafka's `.lock` per log dir): `Storage.lock` takes an exclusive OS
lock on a file in it for the broker's whole life, and a second broker, in this process or
another, is refused before it reads or writes anything there. The lock file holds the owner's
pid, so the refusal can name it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from typing import Protocol

Bytes = bytes | bytearray | memoryview


class File(Protocol):
    def append(self, *parts: Bytes) -> None: ...  # written one after the other, at the end
    def read(self, position: int, size: int) -> bytes: ...
    def size(self) -> int: ...
    def truncate(self, size: int) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...


class DirLock(Protocol):
    def release(self) -> None: ...


class DataDirLocked(Exception):
    """Another broker owns the data dir; raised by `Storage.lock` before anything is touched."""

    def __init__(self, directory: str, holder_pid: int | None) -> None:
        holder = f"process {holder_pid}" if holder_pid else "another broker"
        super().__init__(f"data dir {directory} is in use by {holder} (its lock file is held)")
        self.directory = directory
        self.holder_pid = holder_pid


LOCK_FILE = ".lock"


class Storage(Protocol):
    def lock(self, directory: str) -> DirLock: ...
    def open(self, path: str) -> File: ...
    def exists(self, path: str) -> bool: ...
    def listdir(self, path: str) -> list[str]: ...
    def makedirs(self, path: str) -> None: ...
    def remove(self, path: str) -> None: ...
    def rename(self, source: str, target: str) -> None: ...
    def rmtree(self, path: str) -> None: ...
    def read_all(self, path: str) -> bytes | None: ...
    def write_atomic(self, path: str, data: bytes) -> None: ...
    def sync_dir(self, path: str) -> None: ...
    def disk_space(self, path: str) -> tuple[int, int]: ...  # (total, usable) bytes


_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_APPEND
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})


class OutOfDescriptors(OSError):
    """No descriptor could be had for a log file (EMFILE/ENFILE even after giving back half the
    cache's): nothing was read or written. A condition of the process, not of the disk, so it
    never takes a log offline: a write it stopped is undone without a descriptor (`truncate`
    to the size the file has is nothing to do), and the request gets KAFKA_STORAGE_ERROR."""


class FileCache:
    """The open descriptors of log files, at most `capacity` at once (`log.open.files.max`).

    A file's descriptor is opened on first use and closed, least recently used first, when
    another file needs room, so a broker with 10,000 partitions (four files per segment) does
    not need 40,000 descriptors. A descriptor in use (pinned for the length of one call, on the
    loop or on an fsync worker) is never closed under its user. Closing one whose file has
    writes not yet fsynced fsyncs it first: once a descriptor is closed, an error from the
    page cache's writeback could otherwise be lost with the inode (PostgreSQL's "fsyncgate");
    a failure there is kept and raised by that file's next write or sync, so its log goes
    offline as for any failed fsync. Such an fsync runs under the cache's lock, on whichever
    thread needed room: the price of more files than descriptors, paid only then.
    """

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity  # None: unbounded
        self._open: OrderedDict[OsFile, None] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        self.opens = 0
        self.evictions = 0

    @property
    def open_count(self) -> int:
        return len(self._open)

    @contextlib.contextmanager
    def descriptor(self, file: OsFile) -> Iterator[int]:
        """`file`'s descriptor, opened if need be, and kept open until the block ends."""
        with self._lock:
            if file.closed:
                raise OSError(errno.EBADF, f"{file.path} is closed")
            if file.fd < 0:
                self._make_room(1)
                file.fd = self._os_open(file.path)
                self.opens += 1
                self._open[file] = None
            else:
                self._open.move_to_end(file)
            file.pins += 1
        try:
            yield file.fd
        finally:
            with self._lock:
                file.pins -= 1
                if file.closed and file.pins == 0:
                    self._close(file)

    def close(self, file: OsFile) -> None:
        """`file` is done with; its descriptor closes now, or when its last user is done."""
        with self._lock:
            file.closed = True
            if file.pins == 0:
                self._close(file)

    def trim(self, keep: int = 0) -> None:
        """Close descriptors not in use (the least recently used first) until `keep` are open."""
        with self._lock:
            self._evict(len(self._open) - keep)

    def _os_open(self, path: str) -> int:
        for attempt in range(2):
            try:
                return os.open(path, _OPEN_FLAGS, 0o644)
            except OSError as exc:
                if exc.errno not in _OUT_OF_DESCRIPTORS:
                    raise
                if attempt or not self._open:
                    raise OutOfDescriptors(exc.errno, f"{path}: {exc.strerror}") from exc
                # Something else took the process's last descriptors: give back half of ours.
                self._evict(max(1, len(self._open) // 2))
        raise AssertionError("unreachable")

    def _make_room(self, needed: int) -> None:
        if self.capacity is not None:
            self._evict(len(self._open) + needed - self.capacity)

    def _evict(self, count: int) -> None:
        victims: list[OsFile] = []
        for file in self._open:  # least recently used first; pinned ones stay
            if len(victims) >= count:
                break
            if file.pins == 0:
                victims.append(file)
        for file in victims:
            file.sync_before_close()
            self._close(file)
            self.evictions += 1

    def _close(self, file: OsFile) -> None:
        self._open.pop(file, None)
        if file.fd >= 0:
            os.close(file.fd)
            file.fd = -1


UNBOUNDED_FILES = FileCache(None)


class FileRegion:
    """Bytes of a file sent from the file itself (`os.sendfile`), never read into memory.

    It holds a duplicate of the file's descriptor: the `FileCache` may close the file's own, and
    retention may delete the file, while a response with this region waits to be sent; the
    bytes stay readable until `close` (or, failing that, garbage collection) lets the duplicate
    go. `next_offset`: the offset after the region's last batch (or an upper bound of it), for
    the log's readers."""

    __slots__ = ("__weakref__", "_closer", "fd", "next_offset", "position", "size")

    def __init__(self, fd: int, position: int, size: int, next_offset: int = -1) -> None:
        self.fd = fd
        self.position = position
        self.size = size
        self.next_offset = next_offset
        self._closer = weakref.finalize(self, os.close, fd)

    def __len__(self) -> int:
        return self.size

    def read(self, start: int = 0) -> bytes:
        """The bytes themselves from `start` on: for a transport that cannot take them from the
        file (TLS), or what a socket did not take at once."""
        size = self.size - start
        data = os.pread(self.fd, size, self.position + start)
        if len(data) != size:
            raise OSError(errno.EIO, f"the file ends inside a region: {len(data)} of {size} bytes")
        return data

    def close(self) -> None:
        self._closer()


class OsFile:
    """A file written only at its end, through a descriptor its `FileCache` lends it."""

    def __init__(self, path: str, cache: FileCache = UNBOUNDED_FILES) -> None:
        self.path = path
        self.fd = -1
        self.pins = 0
        self.closed = False
        self._cache = cache
        self._writes = 0  # appends and truncations so far
        self._synced_writes = 0  # how many of them an fsync has covered
        self._lost_sync: OSError | None = None  # an fsync that failed as the descriptor closed
        with cache.descriptor(self) as fd:  # creates the file now, as the log expects
            self._size = os.fstat(fd).st_size

    def append(self, *parts: Bytes) -> None:
        views = [memoryview(part) for part in parts]
        with self._cache.descriptor(self) as fd:
            self._check_synced()
            self._writes += 1
            while views:
                written = os.writev(fd, views)
                self._size += written
                while views and written >= views[0].nbytes:
                    written -= views.pop(0).nbytes
                if views:
                    views[0] = views[0][written:]

    def read(self, position: int, size: int) -> bytes:
        with self._cache.descriptor(self) as fd:
            return os.pread(fd, size, position)

    def region(self, position: int, size: int) -> FileRegion:
        """`size` bytes from `position`, to be sent without reading them here (`FileRegion`).
        `OutOfDescriptors` when the process has no descriptor left for it."""
        with self._cache.descriptor(self) as fd:
            try:
                return FileRegion(os.dup(fd), position, size)
            except OSError as exc:
                if exc.errno in _OUT_OF_DESCRIPTORS:
                    raise OutOfDescriptors(exc.errno, f"{self.path}: {exc.strerror}") from exc
                raise

    def size(self) -> int:
        return self._size

    def truncate(self, size: int) -> None:
        """Cut the file to `size` bytes. Already that size, nothing is done and no descriptor
        is needed: undoing a write that never started (its descriptor could not be opened)
        cannot fail for the same reason."""
        self._check_synced()
        if size == self._size:
            return
        with self._cache.descriptor(self) as fd:
            self._writes += 1
            os.ftruncate(fd, size)
            self._size = size

    def sync(self) -> None:
        with self._cache.descriptor(self) as fd:
            self._check_synced()
            self._fdatasync(fd)

    def sync_before_close(self) -> None:
        """Called by the cache, under its lock, before it closes this file's descriptor."""
        if self._synced_writes == self._writes or self._lost_sync is not None:
            return
        try:
            self._fdatasync(self.fd)
        except OSError as exc:
            self._lost_sync = exc

    def _fdatasync(self, fd: int) -> None:
        covered = self._writes
        os.fdatasync(fd)
        self._synced_writes = max(self._synced_writes, covered)

    def _check_synced(self) -> None:
        if self._lost_sync is not None:
            raise OSError(
                self._lost_sync.errno,
                f"{self.path}: an fsync failed when its descriptor was closed to make room "
                f"({self._lost_sync.strerror})",
            )

    def close(self) -> None:
        self._cache.close(self)


class OsDirLock:
    """`flock` on `<dir>/.lock`: held per open file description, so a second broker in the same
    process is refused too (a POSIX record lock would not be), and released by the kernel when
    the process dies, so a `kill -9` leaves no stale lock behind."""

    def __init__(self, directory: str) -> None:
        path = os.path.join(directory, LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise DataDirLocked(directory, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # drops the flock
            self._fd = -1


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


class OsStorage:
    """Real files; log files share one `FileCache` (unbounded unless `open_files_max`)."""

    files: FileCache = UNBOUNDED_FILES

    def __init__(self, open_files_max: int | None = None) -> None:
        if open_files_max is not None:
            self.files = FileCache(open_files_max)

    def lock(self, directory: str) -> DirLock:
        return OsDirLock(directory)

    def open(self, path: str) -> File:
        return OsFile(path, self.files)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)

    def rename(self, source: str, target: str) -> None:
        os.replace(source, target)

    def rmtree(self, path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def read_all(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write_atomic(self, path: str, data: bytes) -> None:
        """Write, fsync, rename over `path`, fsync the directory: all or nothing after a crash."""
        tmp = path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.remove(tmp)  # a full disk must not also keep a half-written copy
            raise
        self.sync_dir(os.path.dirname(path) or ".")

    def sync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def disk_space(self, path: str) -> tuple[int, int]:
        """The size of the file system holding `path` and what an unprivileged writer may
        still use of it (Java's `FileStore.getTotalSpace` and `getUsableSpace`)."""
        usage = shutil.disk_usage(path)
        return usage.total, usage.free
