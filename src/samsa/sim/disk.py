"""A simulated disk: files that lose what was not fsynced when the machine crashes.

Each file keeps what its last fsync made durable beside what the page cache holds now. A crash
keeps the durable part, plus, sometimes, a random part of the unsynced tail (a torn write: the
OS flushed some pages on its own). Directory operations (create, rename, remove) are durable at
once, as `write_atomic` and the directory fsyncs after them make them in the real storage.
"""

from __future__ import annotations

import posixpath
import random

from samsa.log.storage import Bytes, DataDirLocked, DirLock, File


class SimFile:
    def __init__(self, disk: SimDisk, path: str) -> None:
        self._disk = disk
        self.path = path
        self.content = bytearray()
        self.durable = b""

    def append(self, *parts: Bytes) -> None:
        self._disk.check_alive()
        for part in parts:
            self.content += part

    def read(self, position: int, size: int) -> bytes:
        return bytes(self.content[position : position + size])

    def size(self) -> int:
        return len(self.content)

    def truncate(self, size: int) -> None:
        self._disk.check_alive()
        del self.content[size:]

    def sync(self) -> None:
        self._disk.check_alive()
        self.durable = bytes(self.content)
        self._disk.fsyncs += 1

    def close(self) -> None:
        pass

    def crash(self, rng: random.Random, torn_probability: float) -> None:
        kept = bytearray(self.durable)
        if self.content.startswith(self.durable) and len(self.content) > len(self.durable):
            unsynced = self.content[len(self.durable) :]
            if rng.random() < torn_probability:
                kept += unsynced[: rng.randrange(len(unsynced) + 1)]
        self.content = kept


class SimLock:
    def __init__(self, disk: SimDisk, directory: str) -> None:
        self._disk = disk
        self.directory = directory

    def release(self) -> None:
        self._disk.locks.discard(self.directory)


class DiskCrashed(Exception):
    """Raised to code that keeps writing to a disk after its machine crashed."""


class SimDisk:
    """Implements `samsa.log.storage.Storage` in memory."""

    def __init__(self) -> None:
        self.files: dict[str, SimFile] = {}
        self.dirs: set[str] = {"/"}
        self.generation = 0  # bumped by each crash; handles from before it are dead
        self._alive_generation = 0
        self.fsyncs = 0
        self.locks: set[str] = set()  # data dirs locked by the (one) running broker

    def lock(self, directory: str) -> DirLock:
        if directory in self.locks:
            raise DataDirLocked(directory, None)
        self.locks.add(directory)
        return SimLock(self, directory)

    def check_alive(self) -> None:
        if self._alive_generation != self.generation:
            raise DiskCrashed("write after crash")

    def open(self, path: str) -> File:
        file = self.files.get(path)
        if file is None:
            self.makedirs(posixpath.dirname(path))
            file = self.files[path] = SimFile(self, path)
        return file

    def exists(self, path: str) -> bool:
        return path in self.files or path in self.dirs

    def listdir(self, path: str) -> list[str]:
        path = path.rstrip("/") or "/"
        names = {
            posixpath.basename(p)
            for p in [*self.files, *self.dirs]
            if posixpath.dirname(p) == path and p != path
        }
        return sorted(names)

    def makedirs(self, path: str) -> None:
        while path and path not in self.dirs:
            self.dirs.add(path)
            path = posixpath.dirname(path)

    def remove(self, path: str) -> None:
        self.files.pop(path, None)

    def rename(self, source: str, target: str) -> None:
        file = self.files.pop(source)
        file.path = target
        self.files[target] = file

    def rmtree(self, path: str) -> None:
        prefix = path.rstrip("/") + "/"
        for name in [p for p in self.files if p.startswith(prefix)]:
            del self.files[name]
        self.dirs = {d for d in self.dirs if d != path and not d.startswith(prefix)}

    def read_all(self, path: str) -> bytes | None:
        file = self.files.get(path)
        return None if file is None else bytes(file.content)

    def write_atomic(self, path: str, data: bytes) -> None:
        self.check_alive()
        file = self.open(path)
        if not isinstance(file, SimFile):
            raise TypeError(file)
        file.content = bytearray(data)
        file.durable = bytes(data)

    def sync_dir(self, path: str) -> None:
        pass

    def crash(self, rng: random.Random, torn_probability: float) -> None:
        """The machine dies: every file falls back to what was durable (or torn beyond it)."""
        for file in self.files.values():
            file.crash(rng, torn_probability)
        self.generation += 1
        self.locks.clear()  # the process died: the kernel drops its locks

    def reboot(self) -> None:
        self._alive_generation = self.generation
