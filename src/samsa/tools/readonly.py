"""A `Storage` that can only read, so the tools can reuse `Segment` on a live data dir.

`OsStorage.open` opens read-write and creates a missing file: pointing a `Segment` at a
partition with it would create index files under a running broker. Here a missing file reads
as empty and every write raises `ReadOnlyStorageError`, so a tool that tried one has a bug, not
a changed data dir.
"""

from __future__ import annotations

import os
import shutil

from samsa.log.storage import Bytes, DirLock


class ReadOnlyStorageError(RuntimeError):
    """A tool tried to change a data dir through `ReadOnlyStorage`: a bug in the tool."""


def _refuse(what: str) -> ReadOnlyStorageError:
    return ReadOnlyStorageError(f"read-only storage: {what} refused")


class ReadOnlyFile:
    """Reads with `pread`; its size is fixed when opened (a broker may still append after)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            self._fd = -1
        self._size = os.fstat(self._fd).st_size if self._fd >= 0 else 0

    def append(self, *parts: Bytes) -> None:
        raise _refuse(f"append to {self.path}")

    def read(self, position: int, size: int) -> bytes:
        if self._fd < 0:
            return b""
        return os.pread(self._fd, size, position)

    def size(self) -> int:
        return self._size

    def truncate(self, size: int) -> None:
        raise _refuse(f"truncate {self.path}")

    def sync(self) -> None:
        raise _refuse(f"sync {self.path}")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class ReadOnlyStorage:
    def lock(self, directory: str) -> DirLock:
        raise _refuse(f"lock {directory}")

    def open(self, path: str) -> ReadOnlyFile:
        return ReadOnlyFile(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def makedirs(self, path: str) -> None:
        raise _refuse(f"makedirs {path}")

    def remove(self, path: str) -> None:
        raise _refuse(f"remove {path}")

    def rename(self, source: str, target: str) -> None:
        raise _refuse(f"rename {source}")

    def rmtree(self, path: str) -> None:
        raise _refuse(f"rmtree {path}")

    def read_all(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write_atomic(self, path: str, data: bytes) -> None:
        raise _refuse(f"write {path}")

    def sync_dir(self, path: str) -> None:
        raise _refuse(f"sync {path}")

    def disk_space(self, path: str) -> tuple[int, int]:
        usage = shutil.disk_usage(path)
        return usage.total, usage.free
