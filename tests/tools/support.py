"""Data dirs for the `samsa log` tools, written by the broker's own log code, and the damage done
to them afterwards with plain file operations."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass

from kio.records.readers import read_batch

from samsa.log.partition import LogConfig, PartitionLog
from samsa.log.segment import segment_name
from samsa.log.storage import OsStorage
from samsa.protocol.batch import BatchHeader, iter_batches, validate_produced
from samsa.protocol.batch_writer import record_batch

NOW_MS = 1_700_000_000_000
TOPIC = "orders"
HUGE = 1 << 30


@dataclass(frozen=True)
class Batch:
    """Where the broker wrote one batch, and what it holds."""

    segment: int  # base offset of its segment
    position: int
    size: int
    first: int
    last: int
    values: tuple[bytes, ...]

    @property
    def log(self) -> str:
        return segment_name(self.segment) + ".log"


def build_partition(
    data_dir: str,
    batches: int = 30,
    per_batch: int = 2,
    segment_bytes: int = 1024,
    index_interval_bytes: int = 200,
    topic: str = TOPIC,
) -> list[Batch]:
    """Write `topics.json` and one partition of `batches` batches through `PartitionLog` (it
    rolls segments, writes indexes, and on close a producer snapshot); return where each went."""
    directory = os.path.join(data_dir, f"{topic}-0")
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, "topics.json"), "w") as f:
        json.dump({topic: {"id": str(uuid.uuid4()), "partitions": 1, "configs": {}}}, f)
    config = LogConfig(segment_bytes=segment_bytes, index_interval_bytes=index_interval_bytes)
    log = PartitionLog.open(OsStorage(), directory, topic, 0, config, NOW_MS, recover=False)
    for n in range(batches):
        data = record_batch(
            [f"{n:03d}.{i}".encode() for i in range(per_batch)], timestamp_ms=NOW_MS + 10 * n
        )
        log.append(data, validate_produced(data, HUGE), NOW_MS)
    point = log.sync_point()
    point.run()
    log.complete_sync(point)
    log.close()
    return layout(directory)


def layout(directory: str) -> list[Batch]:
    found: list[Batch] = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".log"):
            continue
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        for position, header in iter_batches(data):
            found.append(
                Batch(
                    int(name[:-4]),
                    position,
                    header.size,
                    header.base_offset,
                    header.last_offset,
                    tuple(v for v in values_of(data[position : position + header.size])),
                )
            )
    return found


def values_of(data: bytes) -> list[bytes]:
    """The record values of whole batches, read with kio's reader (which checks every CRC)."""
    out: list[bytes] = []
    position = 0
    while position < len(data):
        batch, size = read_batch(data, position)
        position += size
        out.extend(record.value or b"" for record in batch.records)
    return out


@dataclass(frozen=True)
class Readback:
    log_start_offset: int
    log_end_offset: int
    values: list[bytes]


def read_back(data_dir: str, topic: str = TOPIC, recover: bool = True) -> Readback:
    """Open a partition as the broker does (`create=False`) and read every record value."""
    log = PartitionLog.open(
        OsStorage(),
        os.path.join(data_dir, f"{topic}-0"),
        topic,
        0,
        LogConfig(),
        NOW_MS,
        recover,
        False,
    )
    out: list[bytes] = []
    start, end = log.log_start_offset, log.log_end_offset
    offset = start
    while offset < log.high_watermark:
        data = bytes(log.read(offset, HUGE, log.high_watermark, min_one=True))
        assert data, f"no progress at offset {offset}"
        out.extend(values_of(data))
        last: BatchHeader = [header for _, header in iter_batches(data)][-1]
        offset = last.next_offset
    log.close_files()
    return Readback(start, end, out)


def partition(data_dir: str) -> str:
    return os.path.join(data_dir, f"{TOPIC}-0")


def segments(batches: list[Batch]) -> list[int]:
    return sorted({b.segment for b in batches})


def in_segment(batches: list[Batch], base: int) -> list[Batch]:
    return [b for b in batches if b.segment == base]


# ------------------------------------------------------------------ damage


def remove_segment(
    directory: str,
    base: int,
    suffixes: tuple[str, ...] = (".log", ".index", ".timeindex", ".txnindex"),
) -> None:
    for suffix in suffixes:
        os.remove(os.path.join(directory, segment_name(base) + suffix))


def tree(path: str) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `path` (the lock file aside)."""
    out: dict[str, str] = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            if name != ".lock":
                with open(full, "rb") as f:
                    out[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return out


# ------------------------------------------------------------------ the command line
def samsa(*args: str) -> subprocess.CompletedProcess[str]:
    """`samsa log ...` as a subprocess: its exit status, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "samsa.cli", "log", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
