"""Record batches for the protocol tests, beside the raw connection and request builders of
`samsa.testing.wire` (re-exported here: the protocol tests import them from this module)."""

from __future__ import annotations

import struct

import crc32c

from samsa.protocol.batch import CRC_START
from samsa.protocol.batch_writer import record_batch
from samsa.testing.wire import Conn, create_topics_request, fetch_request, produce_request

__all__ = [
    "Conn",
    "create_topics_request",
    "fetch_request",
    "make_batch",
    "produce_request",
    "read_partition",
    "recrc",
    "with_magic",
]

TIMESTAMP_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def make_batch(
    values: list[bytes],
    *,
    attributes: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """A valid magic-2 record batch (base offset 0, CRC-32C computed by kio's writer)."""
    return record_batch(
        values,
        timestamp_ms=TIMESTAMP_MS,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        attributes=attributes,
    )


def recrc(batch: bytes) -> bytes:
    """The batch with its CRC-32C recomputed over attributes..end."""
    crc = crc32c.crc32c(batch[CRC_START:])
    return batch[:17] + struct.pack(">I", crc) + batch[CRC_START:]


def with_magic(batch: bytes, magic: int) -> bytes:
    """Magic sits outside the CRC, so the CRC stays valid."""
    return batch[:16] + struct.pack(">b", magic) + batch[17:]


def read_partition(conn: Conn, topic: str, partition: int) -> list[tuple[int, bytes | None]]:
    """Every (offset, value) of an uncompressed partition, fetched up to its high watermark."""
    from kio.records.readers import read_batch

    out: list[tuple[int, bytes | None]] = []
    offset = 0
    while True:
        response = conn.request(fetch_request(topic, [partition], offset))
        [data] = response.responses[0].partitions
        assert data.error_code == 0, data.error_code
        records = bytes(data.records or b"")
        position = 0
        while position < len(records):
            batch, size = read_batch(records, position)
            position += size
            out.extend((int(r.offset), r.value) for r in batch.records)
        if out:
            offset = out[-1][0] + 1
        if offset >= data.high_watermark:
            return out
        assert records, "no progress below the high watermark"
