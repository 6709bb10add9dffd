"""A simulated disk: files that lose what was not fsynced when the machine crashes.

Each file keeps what its last fsync made durable beside what the page cache holds now. A crash
keeps the durable part, plus, sometimes, a random part of the unsynced tail (a torn write: the
OS flushed some pages on its own). Directory operations (create, rename, remove) are durable at
once, as `write_atomic` and the directory fsyncs after them make them in the real storage.

With `faults`, the disk also fails as real ones do: a write to a segment file writes part of
its bytes and raises ENOSPC or EIO; an fsync raises EIO and makes nothing durable; and
`flip_bit` damages a stored batch at rest.
"""

from __future__ import annotations

import errno
import posixpath
import random
from dataclasses import dataclass

from samsa.log.storage import Bytes, DataDirLocked, DirLock, File
from samsa.protocol.batch import CRC_START, iter_batches

SEGMENT_FILES = (".log", ".index", ".timeindex", ".txnindex")


@dataclass(frozen=True, slots=True)
class DiskFaults:
    """Per-operation probabilities of each fault, drawn from the disk's own seeded rng."""

    write_error: float = 0.0  # a segment file append writes a prefix, then fails
    fsync_error: float = 0.0  # an fsync fails and makes nothing durable


class SimFile:
    def __init__(self, disk: SimDisk, path: str) -> None:
        self._disk = disk
        self.path = path
        self.content = bytearray()
        self.durable = b""

    def append(self, *parts: Bytes) -> None:
        self._disk.check_alive()
        data = b"".join(bytes(part) for part in parts)
        if self._disk.fails("write_error", self.path):
            self.content += data[: self._disk.rng.randrange(len(data) + 1)]
            code = self._disk.rng.choice((errno.ENOSPC, errno.EIO))
            raise OSError(code, f"simulated {errno.errorcode[code]} writing {self.path}")
        self.content += data

    def read(self, position: int, size: int) -> bytes:
        return bytes(self.content[position : position + size])

    def size(self) -> int:
        return len(self.content)

    def truncate(self, size: int) -> None:
        self._disk.check_alive()
        del self.content[size:]

    def sync(self) -> None:
        self._disk.check_alive()
        if self._disk.fails("fsync_error", self.path):
            raise OSError(errno.EIO, f"simulated EIO on fsync of {self.path}")
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

    def __init__(
        self,
        faults: DiskFaults | None = None,
        rng: random.Random | None = None,
        fault_prefixes: tuple[str, ...] = ("",),
    ) -> None:
        self.faults = faults or DiskFaults()
        self.rng = rng or random.Random(0)
        self.fault_prefixes = fault_prefixes  # the files faults may hit
        self.injected: dict[str, int] = {"write_error": 0, "fsync_error": 0, "bit_flip": 0}
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

    def fails(self, kind: str, path: str) -> bool:
        """Whether this operation on `path` fails (segment files only: the small metadata
        files are written atomically, and a failure there is a refused request, not a fault
        of the log)."""
        probability: float = getattr(self.faults, kind)
        if probability <= 0 or not path.endswith(SEGMENT_FILES):
            return False
        if not path.startswith(self.fault_prefixes):
            return False
        if self.rng.random() >= probability:
            return False
        self.injected[kind] += 1
        return True

    def flip_bit(self, rng: random.Random) -> tuple[str, int, int] | None:
        """Flip one bit of a stored batch that is not the last of its file, in a durable `.log`
        file that faults may hit (a damaged last batch looks exactly like a torn write and is
        cut off as one; see docs/durability.md), in the bytes its CRC covers (the leader epoch
        before them is covered by nothing, in Kafka's format too). Returns (path, byte
        position, mask), what `toggle` takes to undo it."""
        candidates = []
        for path, file in sorted(self.files.items()):
            if not (path.startswith(self.fault_prefixes) and path.endswith(".log")):
                continue
            batches = list(iter_batches(file.durable))
            if len(batches) >= 2:
                candidates.append((path, batches[:-1]))
        if not candidates:
            return None
        path, batches = rng.choice(candidates)
        start, header = rng.choice(batches)
        position = start + rng.randrange(CRC_START, header.size)
        mask = 1 << rng.randrange(8)
        self.toggle(path, position, mask)
        self.injected["bit_flip"] += 1
        return path, position, mask

    def toggle(self, path: str, position: int, mask: int) -> None:
        """XOR one byte of a file, both durable and cached (damage at rest, or its repair)."""
        file = self.files.get(path)
        if file is None or position >= len(file.durable):
            return  # cut away meanwhile (what the checker reports as corruption-undetected)
        durable = bytearray(file.durable)
        durable[position] ^= mask
        file.durable = bytes(durable)
        if position < len(file.content):
            file.content[position] ^= mask

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

    def disk_space(self, path: str) -> tuple[int, int]:
        """A disk without a size: unknown, as DescribeLogDirs says it (-1)."""
        return -1, -1

    def crash(self, rng: random.Random, torn_probability: float) -> None:
        """The machine dies: every file falls back to what was durable (or torn beyond it)."""
        for file in self.files.values():
            file.crash(rng, torn_probability)
        self.generation += 1
        self.locks.clear()  # the process died: the kernel drops its locks

    def reboot(self) -> None:
        self._alive_generation = self.generation
