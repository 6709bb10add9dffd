"""Record validation (samsa.protocol.validation), as Kafka's LogValidator: a batch in, the batch
to store or the partition's error (and KIP-467 record errors) out. No broker here."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import cramjam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from samsa.protocol import records_walk
from samsa.protocol.batch import (
    HEADER_BYTES,
    TIMESTAMP_TYPE_MASK,
    InvalidBatch,
    crc_ok,
    parse_header,
)
from samsa.protocol.batch_writer import record_batch
from samsa.protocol.compression import (
    GZIP,
    LZ4,
    SNAPPY,
    ZSTD,
    DecompressionFailed,
    inflate,
)
from samsa.protocol.records import records as decode_records
from samsa.protocol.records_walk import RecordsInvalid, accelerated, walk_python
from samsa.protocol.validation import RecordPolicy, validate
from samsa.testing.poison import (
    POISON,
    TIMESTAMP_MS,
    Poison,
    compressed,
    good_batch,
    gzip_bomb,
    reseal,
    with_records,
    zigzag_varint,
    zstd_bomb,
)
from samsa.testing.requirements import missing

NOW_MS = TIMESTAMP_MS + 60_000
POLICY = RecordPolicy(message_bytes_max=1_048_588, inflated_bytes_max=16 << 20)
HOUR_MS = 3_600_000


def refused(batch: bytes, policy: RecordPolicy = POLICY, now_ms: int = NOW_MS) -> InvalidBatch:
    with pytest.raises(InvalidBatch) as caught:
        validate(batch, policy, now_ms)
    return caught.value


def record(
    offset_delta: int,
    *,
    timestamp_delta: int = 0,
    key: bytes | None = None,
    value: bytes | None = b"v",
    headers: bytes = b"\x00",
) -> bytes:
    """One record's bytes, fields as given (to build records Kafka's writers never would)."""
    body = b"\x00" + zigzag_varint(timestamp_delta) + zigzag_varint(offset_delta)
    for field in (key, value):
        body += zigzag_varint(-1) if field is None else zigzag_varint(len(field)) + field
    body += headers
    return framed(body)


def framed(body: bytes) -> bytes:
    return zigzag_varint(len(body)) + body


# ----------------------------------------------------------------- the poison of issue 13
@pytest.mark.parametrize("poison", POISON, ids=[p.name for p in POISON])
def test_each_poison_batch_is_refused_with_kafkas_code(poison: Poison) -> None:
    assert refused(poison.build()).error == poison.error


@pytest.mark.parametrize(
    ("name", "records", "error"),
    [
        ("offset deltas out of order", record(1) + record(0) + record(2), ErrorCode.invalid_record),
        ("offset deltas with a gap", record(0) + record(2) + record(3), ErrorCode.invalid_record),
        ("a record cut short", (record(0) + record(1) + record(2))[:-1], ErrorCode.invalid_record),
        ("trailing bytes", record(0) + record(1) + record(2) + b"\x00", ErrorCode.invalid_record),
        ("two records for three", record(0) + record(1), ErrorCode.invalid_record),
        (
            "key length -2",
            record(0)
            + framed(
                b"\x00" + zigzag_varint(0) + zigzag_varint(1) + zigzag_varint(-2) + b"\x00\x00"
            )
            + record(2),
            ErrorCode.invalid_record,
        ),
        (
            "header count -1",
            record(0) + record(1, headers=zigzag_varint(-1)) + record(2),
            ErrorCode.invalid_record,
        ),
        (
            "a million headers in a small record",
            record(0, headers=zigzag_varint(10**6)) + record(1) + record(2),
            ErrorCode.invalid_record,
        ),
        (
            "record length past the batch",
            zigzag_varint(10**6) + record(0) + record(1) + record(2),
            ErrorCode.invalid_record,
        ),
        (
            "negative record length",
            zigzag_varint(-5) + record(0)[1:] + record(1) + record(2),
            ErrorCode.invalid_record,
        ),
        (
            "a 6-byte int32 varint",
            b"\x80\x80\x80\x80\x80\x00" + record(0)[1:] + record(1) + record(2),
            ErrorCode.invalid_record,
        ),
    ],
)
def test_malformed_records_are_refused(name: str, records: bytes, error: ErrorCode) -> None:
    batch = with_records(good_batch(3), records)
    assert refused(batch).error == error, name


def test_records_that_kafkas_writers_write_pass_unchanged() -> None:
    batch = record_batch(
        [b"a", None, b"c" * 300],
        keys=[b"k1", b"k2", None],
        headers=[[(b"h", b"v")], [], [(b"h1", None), (b"h2", b"x" * 200)]],
        timestamp_ms=TIMESTAMP_MS,
        timestamps_ms=[TIMESTAMP_MS, TIMESTAMP_MS + 5, TIMESTAMP_MS + 2],
    )
    validated = validate(batch, POLICY, NOW_MS)
    assert validated.records is batch  # the header was already right: no copy
    assert validated.header.max_timestamp == TIMESTAMP_MS + 5
    assert validated.log_append_time_ms == -1


@pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4, ZSTD])
def test_compressed_batches_are_walked_too(codec: int) -> None:
    assert validate(compressed(good_batch(50), codec), POLICY, NOW_MS).header.records_count == 50
    bad = with_records(good_batch(3), record(0) + record(2) + record(1))
    assert refused(compressed(bad, codec)).error == ErrorCode.invalid_record


def test_snappy_in_xerial_framing_as_the_java_client_writes_it() -> None:
    batch = good_batch(20)
    raw = bytes(cramjam.snappy.compress_raw(batch[HEADER_BYTES:]))
    framed = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1) + struct.pack(">i", len(raw)) + raw
    assert validate(with_records(batch, framed, SNAPPY), POLICY, NOW_MS).header.records_count == 20
    lying = framed[:16] + struct.pack(">i", len(raw) + 100) + raw
    assert refused(with_records(batch, lying, SNAPPY)).error == ErrorCode.corrupt_message


def test_truncated_compressed_data_is_corrupt() -> None:
    for codec in (GZIP, LZ4, ZSTD):
        whole = compressed(good_batch(50), codec)
        cut = with_records(whole, whole[HEADER_BYTES:-10], codec)
        assert refused(cut).error == ErrorCode.corrupt_message, codec


# ----------------------------------------------------------------- the inflation bound
def test_a_zstd_bomb_is_refused_without_inflating_it() -> None:
    bomb = zstd_bomb(4 << 30)
    assert len(bomb) < 140_000
    error = refused(bomb)
    assert error.error == ErrorCode.corrupt_message
    assert "message.decompressed.max.bytes" in str(error)


def test_a_gzip_bomb_is_refused() -> None:
    assert refused(gzip_bomb(512 << 20)).error == ErrorCode.corrupt_message


@pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4, ZSTD])
def test_the_bound_is_exact(codec: int) -> None:
    data = bytes(range(256)) * 64  # 16 KiB
    if codec == GZIP:
        packed = zlib.compress(data, wbits=31)
    else:
        module = {SNAPPY: cramjam.snappy, LZ4: cramjam.lz4, ZSTD: cramjam.zstd}[codec]
        packed = bytes(module.compress_raw(data) if codec == SNAPPY else module.compress(data))
    assert inflate(codec, packed, len(data)) == data
    with pytest.raises(DecompressionFailed) as caught:
        inflate(codec, packed, len(data) - 1)
    assert caught.value.over_bound


def test_gzip_members_are_concatenated_and_trailing_garbage_refused() -> None:
    member = zlib.compress(b"abc", wbits=31)
    assert inflate(GZIP, member * 3, 100) == b"abc" * 3
    with pytest.raises(DecompressionFailed):
        inflate(GZIP, member + b"junk", 100)


# ----------------------------------------------------------------- timestamps
def test_sarama_max_timestamp_minus_one_is_computed_from_the_records() -> None:
    batch = record_batch(
        [b"a", b"b", b"c"],
        timestamp_ms=TIMESTAMP_MS,
        timestamps_ms=[TIMESTAMP_MS, TIMESTAMP_MS + 30, TIMESTAMP_MS + 10],
    )
    sarama = bytearray(batch)
    struct.pack_into(">q", sarama, 35, -1)  # max timestamp, as Sarama writes it
    validated = validate(reseal(sarama), POLICY, NOW_MS)
    assert validated.header.max_timestamp == TIMESTAMP_MS + 30
    assert crc_ok(validated.records, 0, validated.header)
    assert validated.records[61:] == batch[61:]


def test_log_append_time_rewrites_the_header_as_kafka_does() -> None:
    batch = compressed(good_batch(5), LZ4)
    policy = RecordPolicy(
        message_bytes_max=1_048_588, inflated_bytes_max=16 << 20, log_append_time=True
    )
    validated = validate(batch, policy, NOW_MS)
    header = validated.header
    assert header.attributes & TIMESTAMP_TYPE_MASK
    assert header.compression == LZ4
    assert header.max_timestamp == NOW_MS
    assert validated.log_append_time_ms == NOW_MS
    assert crc_ok(validated.records, 0, header)
    assert validated.records[61:] == batch[61:]
    # Readers take every record's timestamp from the batch's max timestamp.
    assert {r.timestamp for r in decode_records(validated.records)} == {NOW_MS}


def test_a_producer_may_not_set_log_append_time() -> None:
    batch = record_batch([b"a"], timestamp_ms=TIMESTAMP_MS, attributes=TIMESTAMP_TYPE_MASK)
    policy = RecordPolicy(
        message_bytes_max=1_048_588, inflated_bytes_max=16 << 20, log_append_time=True
    )
    error = refused(batch, policy)
    assert error.error == ErrorCode.invalid_timestamp
    assert [index for index, _ in error.record_errors] == [0]


def test_kip_937_bounds_refuse_records_too_old_or_too_new_by_batch_index() -> None:
    policy = RecordPolicy(
        message_bytes_max=1_048_588,
        inflated_bytes_max=16 << 20,
        timestamp_before_max_ms=HOUR_MS,
        timestamp_after_max_ms=HOUR_MS,
    )
    stamps = [NOW_MS, NOW_MS - 2 * HOUR_MS, NOW_MS + HOUR_MS, NOW_MS + HOUR_MS + 1]
    batch = record_batch([b"x"] * len(stamps), timestamp_ms=stamps[0], timestamps_ms=stamps)
    error = refused(batch, policy)
    assert error.error == ErrorCode.invalid_timestamp
    assert [index for index, _ in error.record_errors] == [1, 3]
    assert all(message and "out of range" in message for _, message in error.record_errors)
    # Within bounds: accepted.
    assert validate(good_batch(3, NOW_MS - HOUR_MS), policy, NOW_MS).header.records_count == 3


def test_a_record_without_timestamp_is_never_out_of_range() -> None:
    policy = RecordPolicy(
        message_bytes_max=1_048_588, inflated_bytes_max=16 << 20, timestamp_before_max_ms=0
    )
    no_timestamp = bytearray(good_batch(1))
    struct.pack_into(">qq", no_timestamp, 27, -1, -1)  # base and max timestamp
    assert validate(reseal(no_timestamp), policy, NOW_MS).header.max_timestamp == -1


def test_a_compacted_topic_refuses_records_without_keys() -> None:
    policy = RecordPolicy(message_bytes_max=1_048_588, inflated_bytes_max=16 << 20, compacted=True)
    batch = record_batch([b"a", b"b", b"c"], keys=[b"k", None, b"k"], timestamp_ms=TIMESTAMP_MS)
    error = refused(batch, policy)
    assert error.error == ErrorCode.invalid_record
    assert [index for index, _ in error.record_errors] == [1]
    tombstone = record_batch([None], keys=[b"k"], timestamp_ms=TIMESTAMP_MS)
    assert validate(tombstone, policy, NOW_MS).header.records_count == 1


# ----------------------------------------------------------------- properties
values = st.one_of(st.none(), st.binary(max_size=300))
batches = st.lists(st.tuples(values, values, st.integers(-(10**6), 10**6)), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches, st.sampled_from([0, GZIP, SNAPPY, LZ4, ZSTD]))
def test_any_batch_a_client_writes_passes_with_its_max_timestamp(
    rows: list[tuple[bytes | None, bytes | None, int]], codec: int
) -> None:
    stamps = [TIMESTAMP_MS + delta for _, _, delta in rows]
    batch = record_batch(
        [value for _, value, _ in rows],
        keys=[key for key, _, _ in rows],
        timestamp_ms=stamps[0],
        timestamps_ms=stamps,
    )
    if codec:
        batch = compressed(batch, codec)
    validated = validate(batch, POLICY, NOW_MS)
    assert validated.header.max_timestamp == max(stamps)
    assert [r.value for r in decode_records(validated.records)] == [v for _, v, _ in rows]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_batches_pass_or_are_refused_never_crash(data: st.DataObject) -> None:
    batch = bytearray(good_batch(4))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(HEADER_BYTES, len(batch) - 1))
        batch[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, 6))
    mutated = with_records(bytes(batch), bytes(batch[HEADER_BYTES : len(batch) - cut]))
    try:
        validated = validate(mutated, POLICY, NOW_MS)
    except InvalidBatch as exc:
        assert exc.error in (ErrorCode.invalid_record, ErrorCode.corrupt_message)
        return
    # What passes decodes: a reader of the stored batch never fails on it.
    assert len(decode_records(validated.records)) == parse_header(validated.records).records_count


# ----------------------------------------------------------------- the C walk and its reference
def c_walk() -> Callable[[bytes, int, int, bool], tuple[int, int, list[int]]]:
    try:
        from samsa.protocol import _walk
    except ImportError:
        missing(
            "MISSING EXTENSION: samsa.protocol._walk was not compiled at install (no C "
            "compiler?); the C record walk was NOT tested"
        )
    return _walk.walk


def outcomes(data: bytes, start: int, count: int, keys: bool) -> tuple[object, object]:
    try:
        python: object = walk_python(data, count, keys, start)
    except (RecordsInvalid, IndexError):
        python = "refused"
    try:
        c: object = c_walk()(data, start, count, keys)
    except ValueError:
        c = "refused"
    return python, c


def test_the_extension_is_used_when_built() -> None:
    c_walk()
    assert accelerated()


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80), st.integers(1, 12), st.booleans())
def test_c_and_python_walks_agree_on_random_bytes(data: bytes, count: int, keys: bool) -> None:
    python, c = outcomes(data, 0, count, keys)
    assert python == c


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_c_and_python_walks_agree_on_mutated_records(data: st.DataObject) -> None:
    rows = data.draw(st.lists(st.tuples(values, values), min_size=1, max_size=6))
    batch = bytearray(
        record_batch(
            [value for _, value in rows],
            keys=[key for key, _ in rows],
            headers=[[(b"h", b"v")] if i % 2 else [] for i in range(len(rows))],
            timestamp_ms=TIMESTAMP_MS,
            timestamps_ms=[TIMESTAMP_MS + 70 * i for i in range(len(rows))],
        )
    )
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(HEADER_BYTES, len(batch) - 1))
        batch[at] = data.draw(st.sampled_from([0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF, 0x03]))
    count = len(rows) + data.draw(st.integers(-1, 1)) or 1
    python, c = outcomes(bytes(batch), HEADER_BYTES, count, data.draw(st.booleans()))
    assert python == c


def test_c_and_python_walks_agree_on_extreme_varints() -> None:
    ten = b"\xff" * 9 + b"\x01"  # a varlong using all 64 bits
    body = b"\x00" + ten + b"\x00\x01\x02x\x00"
    for records in (
        framed(body),
        framed(b"\x00" + b"\xff" * 9 + b"\x7f" + b"\x00\x01\x02x\x00"),  # bits past 64
        b"\xff\xff\xff\xff\x0f" + body,  # a length using all 32 bits
        framed(b"\x00\x00" + b"\x80\x80\x80\x80\x10" + b"\x01\x02x\x00"),  # offset delta 2^31
    ):
        python, c = outcomes(records, 0, 1, False)
        assert python == c


def test_without_the_extension_the_python_walk_refuses_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(records_walk, "_accelerated", None)
    for poison in POISON:
        assert refused(poison.build()).error == poison.error, poison.name
    assert validate(compressed(good_batch(30), ZSTD), POLICY, NOW_MS).header.records_count == 30
