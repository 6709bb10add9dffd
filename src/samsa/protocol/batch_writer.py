"""Building v2 record batches with kio's writer (CRC-32C, varint records, keys, headers).

The broker never builds a client's batch; its coordinators build their own records' batches,
and the simulation, the benchmarks and the tests build batches the way a client would send
them: base offset 0, so the log assigns the real one.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Sequence

from kio.records.schema import NewRecordBatch, Record, RecordHeader
from kio.records.writers import write_new_batch
from kio.static.primitive import TZAwareMicros, i8, i16, i32, i64

Headers = Sequence[tuple[bytes, bytes | None]]


def _timestamp(ms: int) -> TZAwareMicros:
    return TZAwareMicros.parse(datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC))


def record_batch(
    values: Sequence[bytes | None],
    *,
    timestamp_ms: int,
    keys: Sequence[bytes | None] | None = None,
    headers: Sequence[Headers] | None = None,
    timestamps_ms: Sequence[int] | None = None,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    attributes: int = 0,
) -> bytes:
    """One uncompressed batch of `values`, with optional keys, headers and per-record
    timestamps (else every record at `timestamp_ms`); `attributes` as in the batch header."""
    count = len(values)
    keys = keys if keys is not None else [None] * count
    headers = headers if headers is not None else [()] * count
    timestamps_ms = timestamps_ms if timestamps_ms is not None else [timestamp_ms] * count
    records = tuple(
        Record(
            attributes=i8(0),
            timestamp=_timestamp(timestamps_ms[i]),
            offset=i64(i),
            key=keys[i],
            value=values[i],
            headers=tuple(RecordHeader(key=k, value=v) for k, v in headers[i]),
        )
        for i in range(count)
    )
    buffer = io.BytesIO()
    write_new_batch(
        buffer,
        NewRecordBatch(
            producer_id=i64(producer_id),
            producer_epoch=i16(producer_epoch),
            base_sequence=i32(base_sequence),
            records=records,
            attributes=i16(attributes),
        ),
    )
    return buffer.getvalue()
