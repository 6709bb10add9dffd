"""Decompressing a batch's records with a hard bound on the bytes they inflate to.

Kafka's codecs (the batch attributes' low three bits): 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd;
anything else is an unknown codec. A compressed batch is a few hundred bytes on the wire but may
claim, or really hold, gigabytes: a zstd frame header can declare 4 GiB of content, and a gzip
stream of zeros inflates a thousandfold. So nothing here allocates what the input claims:

- gzip: `zlib.decompressobj`, fed with `max_length`, one chunk at a time; concatenated gzip
  members are read as Java's GZIPInputStream reads them.
- snappy (raw, or the xerial framing the Java client writes): each block's claimed length is
  read from its header and checked against the bound before the block is decompressed.
- lz4 (frame format) and zstd: cramjam's `decompress_into` writes into a buffer of exactly the
  bound and fails when the output does not fit; the buffer is an anonymous mapping, so only the
  pages actually written cost memory.

Past the bound, or on anything the codec cannot decode, `DecompressionFailed`: the produce path
answers CORRUPT_MESSAGE, the read paths fall back to what the batch header says.
"""

from __future__ import annotations

import mmap
import struct
import zlib

import cramjam

NONE, GZIP, SNAPPY, LZ4, ZSTD = range(5)
CODEC_NAMES = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}

_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer, not zlib's
_GZIP_CHUNK_BYTES = 256 * 1024
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER_BYTES = 16  # magic, version i32, compatible version i32
_XERIAL_BLOCK = struct.Struct(">i")
# cramjam's error when the output buffer (the bound) is full before the input is consumed.
_OUTPUT_FULL = "failed to write whole buffer"


class DecompressionFailed(Exception):
    """The records of a batch cannot be decompressed within the bound: corrupt input, an
    unknown codec, or more than `inflated_bytes_max` bytes. Raised to the caller, which refuses
    the batch (produce) or answers from the batch header alone (reads)."""

    def __init__(self, message: str, over_bound: bool = False) -> None:
        super().__init__(message)
        self.over_bound = over_bound


def is_known(codec: int) -> bool:
    return codec in CODEC_NAMES


def inflate(codec: int, data: bytes | memoryview, inflated_bytes_max: int) -> bytes:
    """The decompressed records of a batch: at most `inflated_bytes_max` bytes, else
    `DecompressionFailed`. `data` is the part of the batch after its 61-byte header."""
    if codec == NONE:
        return bytes(data)
    try:
        if codec == GZIP:
            return _gunzip(data, inflated_bytes_max)
        if codec == SNAPPY:
            return _unsnappy(data, inflated_bytes_max)
        if codec in (LZ4, ZSTD):
            return _into_bounded(codec, data, inflated_bytes_max)
    except (zlib.error, cramjam.DecompressionError) as exc:
        raise DecompressionFailed(f"{CODEC_NAMES[codec]} data is corrupt: {exc}") from None
    raise DecompressionFailed(f"unknown compression codec {codec}")


def _over(codec: int, bound: int) -> DecompressionFailed:
    return DecompressionFailed(
        f"{CODEC_NAMES[codec]} records inflate past {bound} bytes (message.decompressed.max.bytes)",
        over_bound=True,
    )


def _gunzip(data: bytes | memoryview, bound: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    pending = bytes(data)
    while True:
        member = zlib.decompressobj(_GZIP_WBITS)
        while not member.eof:
            # One byte more than the bound allows tells "exactly at the bound" from "past it".
            chunk = member.decompress(pending, min(_GZIP_CHUNK_BYTES, bound - total + 1))
            total += len(chunk)
            if total > bound:
                raise _over(GZIP, bound)
            chunks.append(chunk)
            pending = member.unconsumed_tail
            if not chunk and not pending:
                raise DecompressionFailed("gzip data is truncated")
        pending = member.unused_data
        if not pending:
            return b"".join(chunks)


def _unsnappy(data: bytes | memoryview, bound: int) -> bytes:
    data = bytes(data)
    if not data.startswith(_XERIAL_MAGIC):
        return _snappy_block(data, bound)
    chunks: list[bytes] = []
    total = 0
    position = _XERIAL_HEADER_BYTES
    while position < len(data):
        if position + _XERIAL_BLOCK.size > len(data):
            raise DecompressionFailed("snappy (xerial) block header is truncated")
        (size,) = _XERIAL_BLOCK.unpack_from(data, position)
        position += _XERIAL_BLOCK.size
        if size < 0 or position + size > len(data):
            raise DecompressionFailed(f"snappy (xerial) block of {size} bytes overruns the batch")
        block = _snappy_block(data[position : position + size], bound - total)
        total += len(block)
        chunks.append(block)
        position += size
    return b"".join(chunks)


def _snappy_block(block: bytes, bound: int) -> bytes:
    claimed = int(cramjam.snappy.decompress_raw_len(block))
    if claimed > bound:
        raise _over(SNAPPY, bound)
    out = bytearray(claimed)
    written = int(cramjam.snappy.decompress_raw_into(block, out))
    if written != claimed:
        raise DecompressionFailed(f"snappy block holds {written} bytes, claims {claimed}")
    return bytes(out)


def _into_bounded(codec: int, data: bytes | memoryview, bound: int) -> bytes:
    module = cramjam.lz4 if codec == LZ4 else cramjam.zstd
    if bound <= 0:
        raise _over(codec, bound)
    with mmap.mmap(-1, bound) as out:
        try:
            written = int(module.decompress_into(bytes(data), out))
        except cramjam.DecompressionError as exc:
            if _OUTPUT_FULL in str(exc):
                raise _over(codec, bound) from None
            raise
        return out[:written]


def deflate(codec: int, data: bytes) -> bytes:
    """`data` compressed with `codec`, as a batch's records section: how the log cleaner writes
    a batch it filtered back in the codec it came in (snappy as a raw block, as librdkafka
    writes it; the Java client reads that too)."""
    if codec == NONE:
        return data
    if codec == GZIP:
        compressor = zlib.compressobj(wbits=_GZIP_WBITS)
        return compressor.compress(data) + compressor.flush()
    if codec == SNAPPY:
        return bytes(cramjam.snappy.compress_raw(data))
    if codec == LZ4:
        return bytes(cramjam.lz4.compress(data))
    if codec == ZSTD:
        return bytes(cramjam.zstd.compress(data))
    raise DecompressionFailed(f"unknown compression codec {codec}")
