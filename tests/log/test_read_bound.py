"""The read paths that decode records (ListOffsets by timestamp and by max timestamp) inflate a
stored batch no further than `message.decompressed.max.bytes`, however it got on disk (written
before samsa validated records, or under a larger bound): they answer from the batch header."""

from __future__ import annotations

import struct
import time
import tracemalloc

from log.log_batches import NOW_MS, OpenLog, append, sync
from samsa.protocol.batch import BatchHeader, parse_header, validate_produced
from samsa.testing.poison import reseal, zstd_bomb


def stored_bomb(timestamp_ms: int) -> bytes:
    """A 4 GiB zstd bomb as a stored batch would hold it: one record counted, timestamps set."""
    bomb = bytearray(zstd_bomb(4 << 30))
    struct.pack_into(">iqq", bomb, 23, 0, timestamp_ms, timestamp_ms)  # last delta, base, max
    struct.pack_into(">i", bomb, 57, 1)  # records count
    return reseal(bomb)


def test_timestamp_lookups_do_not_inflate_a_stored_bomb(open_log: OpenLog) -> None:
    log = open_log(inflated_bytes_max=1 << 20)
    append(log, [b"a"], timestamp_ms=NOW_MS)
    bomb = stored_bomb(NOW_MS + 100)
    written = log.append(bomb, validate_produced(bomb, 1 << 30), NOW_MS)  # no record validation
    assert isinstance(written, BatchHeader)
    append(log, [b"c"], timestamp_ms=NOW_MS + 200)
    sync(log)
    tracemalloc.start()
    started = time.monotonic()
    try:
        assert log.offset_for_timestamp(NOW_MS + 50, log.high_watermark) == (1, NOW_MS + 100)
        assert log.offset_for_timestamp(NOW_MS + 150, log.high_watermark) == (2, NOW_MS + 200)
        assert log.max_timestamp_offset(2) == (1, NOW_MS + 100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 2.0
    assert peak < 4 << 20, f"a lookup allocated {peak} bytes"
    assert parse_header(bomb).max_timestamp == NOW_MS + 100
