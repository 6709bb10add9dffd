"""Hostile record batches, for testing that a broker refuses them: each has a valid CRC, so only
record validation can tell it from a good batch.

    for case in poison_batches(): produce case.batch, expect case.error

`POISON` lists the eleven kinds of issue 13 (what a buggy or hostile client sent samsa, and
samsa stored); `zstd_bomb` and `gzip_bomb` build decompression bombs of a chosen inflated size
without inflating anything here.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import cramjam
import crc32c
from kio.schema.errors import ErrorCode

from samsa.protocol.batch import COMPRESSION_MASK, HEADER_BYTES
from samsa.protocol.batch_writer import record_batch, zigzag_varint
from samsa.protocol.compression import GZIP, LZ4, SNAPPY, ZSTD

TIMESTAMP_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
_ATTRIBUTES_AT = 21
_LAST_OFFSET_DELTA_AT = 23
_RECORDS_COUNT_AT = 57
_LENGTH_AT = 8


def good_batch(count: int = 3, timestamp_ms: int = TIMESTAMP_MS) -> bytes:
    """A valid uncompressed batch of `count` small records (base offset 0)."""
    return record_batch([f"value-{i}".encode() for i in range(count)], timestamp_ms=timestamp_ms)


def reseal(batch: bytes | bytearray) -> bytes:
    """The batch with its length and CRC-32C made right again, as a careful attacker would."""
    data = bytearray(batch)
    struct.pack_into(">i", data, _LENGTH_AT, len(data) - 12)
    struct.pack_into(">I", data, 17, crc32c.crc32c(bytes(data[21:])))
    return bytes(data)


def with_records(batch: bytes, records: bytes, codec: int | None = None) -> bytes:
    """`batch`'s header over other record bytes (and codec), resealed."""
    data = bytearray(batch[:HEADER_BYTES] + records)
    if codec is not None:
        (attributes,) = struct.unpack_from(">h", data, _ATTRIBUTES_AT)
        struct.pack_into(">h", data, _ATTRIBUTES_AT, (attributes & ~COMPRESSION_MASK) | codec)
    return reseal(data)


def with_count(batch: bytes, count: int, consistent: bool) -> bytes:
    """The header claims `count` records; `consistent` moves the last offset delta along."""
    data = bytearray(batch)
    struct.pack_into(">i", data, _RECORDS_COUNT_AT, count)
    if consistent:
        struct.pack_into(">i", data, _LAST_OFFSET_DELTA_AT, count - 1)
    return reseal(data)


def _varint_11_bytes() -> bytes:
    """One record whose timestamp delta is an 11-byte varint (Kafka allows 10 at most)."""
    body = b"\x00" + b"\x80" * 10 + b"\x00" + b"\x00" + b"\x01" + b"\x02x" + b"\x00"
    return zigzag_varint(len(body)) + body


def _garbage(seed: int, size: int = 200) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass(frozen=True, slots=True)
class Poison:
    name: str
    build: Callable[[], bytes]
    error: ErrorCode


POISON: tuple[Poison, ...] = (
    Poison(
        "count 10^6, 3 records",
        lambda: with_count(good_batch(), 10**6, consistent=False),
        ErrorCode.invalid_record,
    ),
    Poison(
        "count and last offset delta 10^6, 3 records",
        lambda: with_count(good_batch(), 10**6, consistent=True),
        ErrorCode.invalid_record,
    ),
    Poison(
        "count 2^31-1, 3 records",
        lambda: with_count(good_batch(), 2**31 - 1, consistent=False),
        ErrorCode.invalid_record,
    ),
    Poison(
        "count and last offset delta 2^31-1, 3 records",
        lambda: with_count(good_batch(), 2**31 - 1, consistent=True),
        ErrorCode.invalid_record,
    ),
    Poison(
        "an 11-byte varint",
        lambda: with_records(good_batch(1), _varint_11_bytes()),
        ErrorCode.invalid_record,
    ),
    Poison(
        "random record bytes",
        lambda: with_records(good_batch(), _garbage(1)),
        ErrorCode.invalid_record,
    ),
    Poison(
        "garbage inside gzip",
        lambda: with_records(good_batch(), _garbage(2), GZIP),
        ErrorCode.corrupt_message,
    ),
    Poison(
        "garbage inside snappy",
        lambda: with_records(good_batch(), _garbage(3), SNAPPY),
        ErrorCode.corrupt_message,
    ),
    Poison(
        "garbage inside lz4",
        lambda: with_records(good_batch(), _garbage(4), LZ4),
        ErrorCode.corrupt_message,
    ),
    Poison(
        "garbage inside zstd",
        lambda: with_records(good_batch(), _garbage(5), ZSTD),
        ErrorCode.corrupt_message,
    ),
    Poison(
        "compression codec 7",
        lambda: with_records(good_batch(), good_batch()[HEADER_BYTES:], 7),
        ErrorCode.unsupported_compression_type,
    ),
)


def zstd_bomb(inflated_bytes: int = 4 << 30) -> bytes:
    """A batch whose zstd frame declares and holds `inflated_bytes` of zeros (a multiple of
    128 KiB) in run-length blocks: 4 bytes per 128 KiB, so 4 GiB take 131 KB."""
    block = 128 * 1024
    blocks = inflated_bytes // block
    # Frame: magic, descriptor (8-byte content size, not single-segment), window 128 KiB.
    frame = bytearray(struct.pack("<IBB", 0xFD2FB528, 0xC0, 7 << 3))
    frame += struct.pack("<Q", blocks * block)
    rle = (block << 3) | (1 << 1)  # block size, type 1 (RLE)
    for index in range(blocks):
        last = 1 if index == blocks - 1 else 0
        frame += (rle | last).to_bytes(3, "little") + b"\x00"
    return with_records(good_batch(), bytes(frame), ZSTD)


def gzip_bomb(inflated_bytes: int = 512 << 20) -> bytes:
    """A batch whose gzip data inflates to `inflated_bytes` of zeros (a multiple of 16 MiB),
    about a thousandth of that on the wire: one 16 MiB member, repeated (concatenated gzip
    members are one stream, as Java's GZIPInputStream reads it)."""
    member_bytes = 16 << 20
    member = zlib.compress(bytes(member_bytes), 9, wbits=16 + zlib.MAX_WBITS)
    return with_records(good_batch(), member * (inflated_bytes // member_bytes), GZIP)


def compress(records: bytes, codec: int) -> bytes:
    """`records` compressed by `codec` as clients do: gzip, raw snappy, lz4 frame, zstd."""
    if codec == GZIP:
        return zlib.compress(records, wbits=16 + zlib.MAX_WBITS)
    if codec == SNAPPY:
        return bytes(cramjam.snappy.compress_raw(records))
    if codec == LZ4:
        return bytes(cramjam.lz4.compress(records))
    if codec == ZSTD:
        return bytes(cramjam.zstd.compress(records))
    raise ValueError(f"codec {codec}")


def compressed(batch: bytes, codec: int) -> bytes:
    """`batch` (uncompressed) with its records compressed by `codec`, as a client sends it."""
    return with_records(batch, compress(batch[HEADER_BYTES:], codec), codec)


__all__ = [
    "POISON",
    "Poison",
    "compress",
    "compressed",
    "good_batch",
    "gzip_bomb",
    "reseal",
    "with_count",
    "with_records",
    "zigzag_varint",
    "zstd_bomb",
]
