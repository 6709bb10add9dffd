"""Transaction markers: the control batches that end a transaction on a partition.

A marker is a v2 batch with the transactional and control attributes, the transaction's producer
id and epoch, base sequence -1, and one record: key (version i16 = 0, type i16: ABORT = 0,
COMMIT = 1), value (version i16 = 0, coordinator epoch i32). Built with kio's batch writer.
"""

from __future__ import annotations

import datetime
import io
import struct

from kio.records.readers import read_batch
from kio.records.schema import NewRecordBatch, Record
from kio.records.writers import write_new_batch
from kio.static.primitive import TZAwareMicros, i8, i16, i32, i64

from samsa.protocol.batch import CONTROL_FLAG, TRANSACTIONAL_FLAG

ABORT = 0
COMMIT = 1
_KEY = struct.Struct(">hh")
_VALUE = struct.Struct(">hi")


def marker_batch(
    producer_id: int,
    producer_epoch: int,
    commit: bool,
    coordinator_epoch: int,
    offset: int,
    timestamp_ms: int,
) -> bytes:
    record = Record(
        attributes=i8(0),
        timestamp=TZAwareMicros.parse(
            datetime.datetime.fromtimestamp(timestamp_ms / 1000, datetime.UTC)
        ),
        offset=i64(offset),
        key=_KEY.pack(0, COMMIT if commit else ABORT),
        value=_VALUE.pack(0, coordinator_epoch),
        headers=(),
    )
    batch = NewRecordBatch(
        producer_id=i64(producer_id),
        producer_epoch=i16(producer_epoch),
        base_sequence=i32(-1),
        records=(record,),
        attributes=i16(TRANSACTIONAL_FLAG | CONTROL_FLAG),
    )
    buffer = io.BytesIO()
    write_new_batch(buffer, batch)
    return buffer.getvalue()


def marker_type(batch: bytes) -> int:
    """ABORT or COMMIT, from a control batch as stored."""
    parsed, _ = read_batch(batch, 0)
    key = parsed.records[0].key
    if key is None or len(key) < _KEY.size:
        raise ValueError("control record without a type")
    _, control_type = _KEY.unpack_from(key)
    return int(control_type)
