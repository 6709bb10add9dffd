"""Transaction markers: the control batches that end a transaction on a partition.

A marker is a v2 batch with the transactional and control attributes, the transaction's producer
id and epoch, base sequence -1, and one record: key (version i16 = 0, type i16: ABORT = 0,
COMMIT = 1), value (version i16 = 0, coordinator epoch i32).
"""

from __future__ import annotations

import struct

from kio.records.readers import read_batch

from samsa.protocol.batch import CONTROL_FLAG, TRANSACTIONAL_FLAG
from samsa.protocol.batch_writer import record_batch

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
    return record_batch(
        [_VALUE.pack(0, coordinator_epoch)],
        keys=[_KEY.pack(0, COMMIT if commit else ABORT)],
        timestamp_ms=timestamp_ms,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        attributes=TRANSACTIONAL_FLAG | CONTROL_FLAG,
        base_offset=offset,
    )


def marker_type(batch: bytes) -> int:
    """ABORT or COMMIT, from a control batch as stored."""
    parsed, _ = read_batch(batch, 0)
    key = parsed.records[0].key
    if key is None or len(key) < _KEY.size:
        raise ValueError("control record without a type")
    _, control_type = _KEY.unpack_from(key)
    return int(control_type)
