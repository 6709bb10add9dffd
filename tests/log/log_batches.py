"""Valid v2 record batches for log tests, built with kio's record batch writer.

`make_batch` encodes one batch (CRC-32C, varint records, keys, values, headers) the way a client
would send it: base offset 0, so the log assigns the real one. `decode` reads batches back with
kio's reader (which checks the CRC and every record length).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kio.records.readers import read_batch

from samsa.durability.inline import sync_log
from samsa.log.partition import PartitionLog
from samsa.protocol.batch import BatchHeader, parse_header, validate_produced
from samsa.protocol.batch_writer import record_batch

BASE_TIMESTAMP_MS = 1_700_000_000_000


def make_batch(
    values: Sequence[bytes | None],
    *,
    keys: Sequence[bytes | None] | None = None,
    headers: Sequence[Sequence[tuple[bytes, bytes | None]]] | None = None,
    timestamps: Sequence[int] | None = None,
    timestamp_ms: int = BASE_TIMESTAMP_MS,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    attributes: int = 0,
) -> bytes:
    """One uncompressed v2 batch holding `values` (with optional keys, headers, timestamps)."""
    timestamps = timestamps if timestamps is not None else [timestamp_ms] * len(values)
    data = record_batch(
        values,
        timestamp_ms=timestamp_ms,
        keys=keys,
        headers=headers,
        timestamps_ms=timestamps,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        attributes=attributes,
    )
    # kio goes through float seconds; make sure the millisecond timestamps survived exactly.
    header = parse_header(data)
    assert header.base_timestamp == timestamps[0], (header.base_timestamp, timestamps[0])
    assert header.max_timestamp == max(timestamps), (header.max_timestamp, max(timestamps))
    return data


@dataclass(frozen=True)
class DecodedRecord:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[bytes | None, bytes | None], ...]


def decode(data: bytes | memoryview) -> list[DecodedRecord]:
    """Every record of the whole batches in `data` (which must hold nothing else)."""
    data = bytes(data)
    out: list[DecodedRecord] = []
    position = 0
    while position < len(data):
        batch, size = read_batch(data, position)
        position += size
        for record in batch.records:
            out.append(
                DecodedRecord(
                    int(record.offset),
                    record.key,
                    record.value,
                    tuple((h.key, h.value) for h in record.headers),
                )
            )
    return out


def values(data: bytes | memoryview) -> list[bytes | None]:
    return [record.value for record in decode(data)]


def offsets(data: bytes | memoryview) -> list[int]:
    return [record.offset for record in decode(data)]


# ------------------------------------------------------------------ log helpers
NOW_MS = BASE_TIMESTAMP_MS

# The `open_log` fixture: open_log(recover=False, now_ms=NOW_MS, **LogConfig fields).
OpenLog = Callable[..., PartitionLog]


def append(
    log: PartitionLog, values: Sequence[bytes | None], now_ms: int = NOW_MS, **kw: Any
) -> BatchHeader:
    """Validate and append one batch as the produce path does; return the written header."""
    data = make_batch(values, **kw)
    header = validate_produced(data, 1 << 30)
    written = log.append(data, header, now_ms)
    assert isinstance(written, BatchHeader), written
    return written


def sync(log: PartitionLog) -> None:
    """One fsync of everything `log` holds, as a group commit round makes it."""
    _, failed = sync_log(log)
    assert not failed, f"the fsync of {log.topic}-{log.partition} failed"


def segment_files(directory: str, suffix: str = ".log") -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(suffix))
