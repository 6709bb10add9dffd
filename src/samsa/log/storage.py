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
import fcntl
import os
import shutil
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


class OsFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size

    def append(self, *parts: Bytes) -> None:
        views = [memoryview(part) for part in parts]
        while views:
            written = os.writev(self._fd, views)
            self._size += written
            while views and written >= views[0].nbytes:
                written -= views.pop(0).nbytes
            if views:
                views[0] = views[0][written:]

    def read(self, position: int, size: int) -> bytes:
        return os.pread(self._fd, size, position)

    def size(self) -> int:
        return self._size

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        self._size = size

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


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
    def lock(self, directory: str) -> DirLock:
        return OsDirLock(directory)

    def open(self, path: str) -> File:
        return OsFile(path)

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
