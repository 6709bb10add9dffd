"""The timestamps of the records inside one v2 batch, for ListOffsets by timestamp.

The produce and fetch paths never look inside a batch; only a timestamp lookup does, on the one
batch that holds the answer. Records are decompressed with the codec named in the batch
attributes (gzip from the standard library; snappy, lz4 and zstd through cramjam).
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass

import cramjam

from samsa.protocol.batch import HEADER_BYTES, TIMESTAMP_TYPE_MASK, parse_header

NONE, GZIP, SNAPPY, LZ4, ZSTD = range(5)
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER_BYTES = 16
_BLOCK = struct.Struct(">i")


def decompress(codec: int, data: bytes) -> bytes:
    if codec == NONE:
        return data
    if codec == GZIP:
        return gzip.decompress(data)
    if codec == SNAPPY:
        if data.startswith(_XERIAL_MAGIC):  # snappy-java's framing, as the Java client writes it
            out = bytearray()
            position = _XERIAL_HEADER_BYTES
            while position < len(data):
                (size,) = _BLOCK.unpack_from(data, position)
                position += _BLOCK.size
                out += bytes(cramjam.snappy.decompress_raw(data[position : position + size]))
                position += size
            return bytes(out)
        return bytes(cramjam.snappy.decompress_raw(data))
    if codec == LZ4:
        return bytes(cramjam.lz4.decompress(data))
    if codec == ZSTD:
        return bytes(cramjam.zstd.decompress(data))
    raise ValueError(f"unknown compression codec {codec}")


def _varint(data: bytes, position: int) -> tuple[int, int]:
    """A zigzag varint (Kafka's record fields); returns (value, next position)."""
    shift = 0
    raw = 0
    while True:
        byte = data[position]
        position += 1
        raw |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (raw >> 1) ^ -(raw & 1), position
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


@dataclass(frozen=True, slots=True)
class RecordView:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


def records(batch: bytes) -> list[RecordView]:
    """Every record of a stored batch, in order (headers skipped)."""
    header = parse_header(batch)
    log_append_time = bool(header.attributes & TIMESTAMP_TYPE_MASK)
    data = decompress(header.compression, bytes(batch[HEADER_BYTES : header.size]))
    found = []
    position = 0
    for _ in range(header.records_count):
        length, position = _varint(data, position)
        end = position + length
        position += 1  # record attributes
        timestamp_delta, position = _varint(data, position)
        offset_delta, position = _varint(data, position)
        key, position = _bytes(data, position)
        value, position = _bytes(data, position)
        timestamp = (
            header.max_timestamp if log_append_time else (header.base_timestamp + timestamp_delta)
        )
        found.append(RecordView(header.base_offset + offset_delta, timestamp, key, value))
        position = end
    return found


def _bytes(data: bytes, position: int) -> tuple[bytes | None, int]:
    length, position = _varint(data, position)
    if length < 0:
        return None, position
    return data[position : position + length], position + length


def record_timestamps(batch: bytes) -> list[tuple[int, int]]:
    """(offset, timestamp) of every record in a stored batch, in order."""
    return [(record.offset, record.timestamp) for record in records(batch)]
