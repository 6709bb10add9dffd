"""The small file interface the log is written against, and its real implementation.

`File.sync` may run on a worker thread while the event loop appends to the same file: that is
how fsyncs are group-committed without blocking the loop.
"""

from __future__ import annotations

import contextlib
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


class Storage(Protocol):
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


class OsStorage:
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
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self.sync_dir(os.path.dirname(path) or ".")

    def sync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
