"""Unit tests of the protocol layer: framing, batch validation, sequence arithmetic, versions."""

from __future__ import annotations

import dataclasses
import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from samsa.protocol import batch, codec
from samsa.protocol.apis import ADVERTISED, SERVED, ApiKey, VersionRange, is_served
from samsa.protocol.frames import FrameBuffer, FrameError, frame

from .wire import make_batch, recrc, with_magic

# ----------------------------------------------------------------------------- FrameBuffer


def test_frame_split_across_chunks_byte_by_byte() -> None:
    buffer = FrameBuffer(1024)
    data = frame(b"hello world")
    for byte in data[:-1]:
        buffer.receive_data(bytes([byte]))
        assert buffer.next_frame() is None
    buffer.receive_data(data[-1:])
    assert buffer.next_frame() == b"hello world"
    assert buffer.next_frame() is None
    assert buffer.buffered_bytes == 0


def test_several_frames_in_one_chunk_plus_a_partial_one() -> None:
    buffer = FrameBuffer(1024)
    payloads = [b"", b"a", b"bc" * 50, b"\x00\xff" * 3]
    tail = frame(b"partial frame")
    buffer.receive_data(b"".join(frame(p) for p in payloads) + tail[:7])
    assert [buffer.next_frame() for _ in payloads] == payloads
    assert buffer.next_frame() is None
    assert buffer.buffered_bytes == 7
    buffer.receive_data(tail[7:])
    assert buffer.next_frame() == b"partial frame"
    assert buffer.buffered_bytes == 0


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
)
def test_any_chunking_yields_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(p) for p in payloads)
    points = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    buffer = FrameBuffer(300)
    out: list[bytes] = []
    for begin, end in itertools.pairwise(points):
        buffer.receive_data(stream[begin:end])
        while (got := buffer.next_frame()) is not None:
            out.append(got)
    assert out == payloads
    assert buffer.buffered_bytes == 0


@given(
    payloads=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
)
def test_frame_views_through_the_socket_path_yield_the_same_frames(
    payloads: list[bytes], cuts: list[int]
) -> None:
    """The server's path: the socket writes into `get_buffer`, frames come out as views into
    the same buffer, each used and released before the next read reuses the space."""
    stream = b"".join(frame(p) for p in payloads)
    points = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    buffer = FrameBuffer(300, read_bytes=16)
    out: list[bytes] = []
    for begin, end in itertools.pairwise(points):
        chunk = stream[begin:end]
        while chunk:
            space = buffer.get_buffer()
            n = min(len(space), len(chunk))
            space[:n] = chunk[:n]
            space.release()
            buffer.buffer_updated(n)
            chunk = chunk[n:]
            while (view := buffer.next_frame_view()) is not None:
                assert view.readonly
                out.append(bytes(view))
                view.release()
    assert out == payloads
    assert buffer.buffered_bytes == 0


def test_frame_at_the_limit_is_accepted() -> None:
    buffer = FrameBuffer(16)
    buffer.receive_data(frame(b"x" * 16))
    assert buffer.next_frame() == b"x" * 16


def test_size_limit_checked_from_the_prefix_alone() -> None:
    """A huge announced size is refused as soon as its 4-byte prefix arrives: no body needed."""
    buffer = FrameBuffer(16)
    buffer.receive_data(struct.pack(">i", 17))
    with pytest.raises(FrameError):
        buffer.next_frame()
    buffer = FrameBuffer(100 * 1024 * 1024)
    buffer.receive_data(struct.pack(">i", 2**31 - 1))
    with pytest.raises(FrameError):
        buffer.next_frame()
    assert buffer.buffered_bytes == 4


@pytest.mark.parametrize("size", [-1, -(2**31), -100])
def test_negative_size_is_a_frame_error(size: int) -> None:
    buffer = FrameBuffer(1024)
    buffer.receive_data(struct.pack(">i", size) + b"abcd")
    with pytest.raises(FrameError):
        buffer.next_frame()


def test_oversized_frame_after_a_good_one() -> None:
    buffer = FrameBuffer(8)
    buffer.receive_data(frame(b"ok") + struct.pack(">i", 9))
    assert buffer.next_frame() == b"ok"
    with pytest.raises(FrameError):
        buffer.next_frame()


def _socket_write(buffer: FrameBuffer, data: bytes) -> None:
    """What asyncio's BufferedProtocol does: receive into the offered space, as much as fits."""
    while data:
        space = buffer.get_buffer()
        n = min(len(space), len(data))
        space[:n] = data[:n]
        space.release()
        buffer.buffer_updated(n)
        data = data[n:]


def test_an_announced_size_reserves_nothing() -> None:
    """Five bytes (a 100 MiB size prefix, then one byte) cost one read's worth of buffer, not
    the 100 MiB announced: room is made for bytes that arrive."""
    read_bytes = 64 * 1024
    buffer = FrameBuffer(100 * 1024 * 1024, read_bytes=read_bytes)
    assert buffer.capacity_bytes == 0  # nothing until the first read
    _socket_write(buffer, struct.pack(">i", 100 * 1024 * 1024))
    assert buffer.next_frame_view() is None
    _socket_write(buffer, b"x")
    assert buffer.next_frame_view() is None
    buffer.get_buffer().release()  # asyncio asks for room before every read
    assert buffer.missing_bytes == 100 * 1024 * 1024 - 1
    assert buffer.capacity_bytes <= 2 * read_bytes, buffer.capacity_bytes


def test_a_large_frame_grows_with_its_bytes_in_few_copies() -> None:
    read_bytes = 64 * 1024
    payload = bytes(range(256)) * (40 * 1024)  # 10 MiB
    data = frame(payload)
    buffer = FrameBuffer(len(payload), read_bytes=read_bytes)
    capacities = []
    for begin in range(0, len(data), read_bytes):  # a socket that delivers one read at a time
        space = buffer.get_buffer()
        capacities.append(buffer.capacity_bytes)
        chunk = data[begin : begin + min(read_bytes, len(space))]
        space[: len(chunk)] = chunk
        space.release()
        buffer.buffer_updated(len(chunk))
        received = begin + len(chunk)
        # Never more than twice what arrived, plus one read.
        assert buffer.capacity_bytes <= 2 * received + read_bytes
    assert buffer.next_frame() == payload
    growths = len(set(capacities))
    assert growths <= 12, f"{growths} reallocations for a 10 MiB frame"
    assert max(capacities) <= len(data) + read_bytes


def test_a_quiet_buffer_can_be_trimmed_and_a_large_one_is_not_kept() -> None:
    buffer = FrameBuffer(16 * 1024 * 1024, read_bytes=1024)
    _socket_write(buffer, frame(b"small"))
    assert buffer.next_frame() == b"small"
    assert buffer.capacity_bytes > 0
    buffer.trim()
    assert buffer.capacity_bytes == 0
    _socket_write(buffer, frame(b"y" * (8 * 1024 * 1024)))
    assert buffer.next_frame() == b"y" * (8 * 1024 * 1024)
    assert buffer.capacity_bytes == 0  # larger than RETAINED_BYTES_MAX: let go at once
    _socket_write(buffer, frame(b"abc")[:5])
    buffer.trim()  # a partial frame stays
    assert buffer.missing_bytes == 2
    _socket_write(buffer, frame(b"abc")[5:])
    assert buffer.missing_bytes == 0
    assert buffer.next_frame() == b"abc"


# ----------------------------------------------------------------------------- validate_produced

MAX = 1 << 20


def test_valid_batch_passes_and_header_is_parsed() -> None:
    records = make_batch([b"a", b"bb", b"ccc"])
    header = batch.validate_produced(records, MAX)
    assert header.magic == 2
    assert header.records_count == 3
    assert header.last_offset_delta == 2
    assert header.size == len(records)
    assert not header.is_control


def test_bad_crc_is_corrupt_message() -> None:
    records = bytearray(make_batch([b"value"]))
    records[-1] ^= 0x01  # inside the CRC-covered region
    with pytest.raises(batch.InvalidBatch) as info:
        batch.validate_produced(bytes(records), MAX)
    assert info.value.error == ErrorCode.corrupt_message
    assert int(ErrorCode.corrupt_message) == 2


@pytest.mark.parametrize("magic", [0, 1, 3, -1])
def test_magic_other_than_2_is_invalid_record(magic: int) -> None:
    records = with_magic(make_batch([b"value"]), magic)
    with pytest.raises(batch.InvalidBatch) as info:
        batch.validate_produced(records, MAX)
    assert info.value.error == ErrorCode.invalid_record
    assert int(ErrorCode.invalid_record) == 87


def test_control_batch_from_a_client_is_invalid_record() -> None:
    records = make_batch([b"\x00\x00\x00\x00"], attributes=batch.CONTROL_FLAG)
    assert batch.parse_header(records).is_control
    assert batch.crc_ok(records, 0, batch.parse_header(records))  # only the flag is wrong
    with pytest.raises(batch.InvalidBatch) as info:
        batch.validate_produced(records, MAX)
    assert info.value.error == ErrorCode.invalid_record


def test_two_batches_in_one_partition_is_invalid_record() -> None:
    records = make_batch([b"one"]) + make_batch([b"two"])
    with pytest.raises(batch.InvalidBatch) as info:
        batch.validate_produced(records, MAX)
    assert info.value.error == ErrorCode.invalid_record


def test_oversized_batch_is_message_too_large() -> None:
    records = make_batch([b"x" * 1000])
    assert batch.validate_produced(records, len(records)).size == len(records)
    with pytest.raises(batch.InvalidBatch) as info:
        batch.validate_produced(records, len(records) - 1)
    assert info.value.error == ErrorCode.message_too_large


@pytest.mark.parametrize("cut", [0, 1, 12, 60, -1])
def test_truncated_batch_is_corrupt_message(cut: int) -> None:
    records = make_batch([b"value", b"value2"])
    with pytest.raises(batch.InvalidBatch) as info:
        batch.validate_produced(records[:cut], MAX)
    assert info.value.error == ErrorCode.corrupt_message


def test_records_count_not_matching_last_offset_delta_is_invalid_record() -> None:
    records = bytearray(make_batch([b"a", b"b"]))
    struct.pack_into(">i", records, 57, 5)  # recordsCount
    with pytest.raises(batch.InvalidBatch) as info:
        batch.validate_produced(recrc(bytes(records)), MAX)
    assert info.value.error == ErrorCode.invalid_record


def test_idempotent_batch_without_sequence_is_invalid_record() -> None:
    records = make_batch([b"a"], producer_id=7, producer_epoch=0, base_sequence=-1)
    with pytest.raises(batch.InvalidBatch) as info:
        batch.validate_produced(records, MAX)
    assert info.value.error == ErrorCode.invalid_record
    ok = make_batch([b"a"], producer_id=7, producer_epoch=0, base_sequence=0)
    assert batch.validate_produced(ok, MAX).producer_id == 7


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_validate_produced_on_garbage_only_raises_invalid_batch(data: bytes) -> None:
    try:
        batch.validate_produced(data, MAX)
    except batch.InvalidBatch as exc:
        assert exc.error in (
            ErrorCode.corrupt_message,
            ErrorCode.invalid_record,
            ErrorCode.message_too_large,
        )


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_bit_flip_in_a_batch_is_rejected_or_harmless(position: int, bit: int) -> None:
    """A flip in the CRC-covered part, the CRC, the magic or the length is always caught."""
    original = make_batch([b"k" * 5, b"v" * 9])
    records = bytearray(original)
    position %= len(records)
    records[position] ^= 1 << bit
    if position < 12 and position not in range(8, 12):
        # baseOffset: ignored on produce (the broker assigns offsets)
        assert batch.validate_produced(bytes(records), MAX).size == len(original)
        return
    if position in range(12, 16):
        # partitionLeaderEpoch: outside the CRC, overwritten by the broker
        assert batch.validate_produced(bytes(records), MAX).size == len(original)
        return
    with pytest.raises(batch.InvalidBatch):
        batch.validate_produced(bytes(records), MAX)


def test_assign_offset_keeps_the_crc_valid() -> None:
    records = make_batch([b"a", b"b", b"c"])
    written, head, rest = batch.assign_offset(records, batch.parse_header(records), 1234, 5)
    assigned = head + bytes(rest)
    header = batch.parse_header(assigned)
    assert header == written
    assert header.base_offset == 1234
    assert header.partition_leader_epoch == 5
    assert header.last_offset == 1236
    assert batch.crc_ok(assigned, 0, header)
    assert assigned[16:] == records[16:]


def test_iter_batches_stops_at_a_partial_batch() -> None:
    one, two = make_batch([b"a"]), make_batch([b"bb", b"cc"])
    data = one + two + two[:30]
    positions = [position for position, _ in batch.iter_batches(data)]
    assert positions == [0, len(one)]


# ----------------------------------------------------------------------------- sequences


@pytest.mark.parametrize(
    ("sequence", "increment", "expected"),
    [
        (0, 0, 0),
        (0, 5, 5),
        (2**31 - 1, 0, 2**31 - 1),
        (2**31 - 1, 1, 0),
        (2**31 - 2, 1, 2**31 - 1),
        (2**31 - 2, 2, 0),
        (2**31 - 3, 10, 7),
        (2**31 - 1, 2**31 - 1, 2**31 - 2),
    ],
)
def test_increment_sequence_wraps_at_int32_max(
    sequence: int, increment: int, expected: int
) -> None:
    assert batch.increment_sequence(sequence, increment) == expected


@given(
    sequence=st.integers(min_value=0, max_value=2**31 - 1),
    increment=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_increment_sequence_is_addition_modulo_2_31(sequence: int, increment: int) -> None:
    assert batch.increment_sequence(sequence, increment) == (sequence + increment) % 2**31


def test_last_sequence_of_a_batch_that_wraps() -> None:
    records = make_batch(
        [b"a", b"b", b"c"], producer_id=1, producer_epoch=0, base_sequence=2**31 - 2
    )
    header = batch.validate_produced(records, MAX)
    assert header.last_sequence == 0


# ----------------------------------------------------------------------------- version tables


def test_every_served_version_has_kio_request_and_response_schemas() -> None:
    missing = [
        (int(api_key), version)
        for api_key, versions in SERVED.items()
        for version in range(versions.min, versions.max + 1)
        if codec.request_type(api_key, version) is None
        or codec.response_type(api_key, version) is None
    ]
    assert missing == []


def test_served_schemas_carry_their_own_api_key_and_version() -> None:
    for api_key, versions in SERVED.items():
        for version in range(versions.min, versions.max + 1):
            request = codec.request_type(api_key, version)
            assert request is not None
            assert (request.__api_key__, request.__version__) == (api_key, version)


def test_advertised_is_served_except_produce_minimum() -> None:
    assert ADVERTISED[ApiKey.PRODUCE] == VersionRange(0, SERVED[ApiKey.PRODUCE].max)
    assert {k: v for k, v in ADVERTISED.items() if k != ApiKey.PRODUCE} == {
        k: v for k, v in SERVED.items() if k != ApiKey.PRODUCE
    }
    for version in range(0, 3):
        assert not is_served(ApiKey.PRODUCE, version)
    assert is_served(ApiKey.PRODUCE, 3)
    assert not is_served(9999, 0)
    assert not is_served(ApiKey.API_VERSIONS, 4)


def test_version_range_contains_ints_only() -> None:
    r = VersionRange(2, 4)
    assert 2 in r and 4 in r
    assert 1 not in r and 5 not in r
    assert "3" not in r


def test_peek_prefix_and_short_frames() -> None:
    prefix = codec.peek_prefix(struct.pack(">hhi", 3, 12, -5) + b"rest")
    assert (prefix.api_key, prefix.api_version, prefix.correlation_id) == (3, 12, -5)
    with pytest.raises(codec.DecodeError):
        codec.peek_prefix(b"\x00" * 7)


def test_request_round_trip_through_codec() -> None:
    from kio.schema.metadata.v12.request import MetadataRequest

    payload = MetadataRequest(
        topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False
    )
    data = codec.encode_request(77, "cid", payload)
    request = codec.decode_request(data[4:])
    assert (request.api_key, request.api_version, request.correlation_id) == (3, 12, 77)
    assert request.client_id == "cid"
    assert request.payload == payload
    assert codec.decode_client_id(data[4:]) == "cid"
    with pytest.raises(codec.DecodeError):
        codec.decode_request(data[4:-1][:20])


def test_dataclass_fields_of_error_response_are_complete() -> None:
    """unsupported._error_response must produce an encodable payload for every kio response
    that has a top-level error_code (so an unserved version never crashes the encoder)."""
    from samsa.broker import unsupported

    checked = 0
    for api_key in range(0, 100):
        for version in range(0, 20):
            schema = codec.response_type(api_key, version)
            if schema is None:
                continue
            if "error_code" not in {f.name for f in dataclasses.fields(schema)}:
                continue
            payload = unsupported._error_response(schema)
            data = codec.encode_response(9, payload)
            _, decoded = codec.decode_response(api_key, version, data[4:])
            assert decoded.error_code == ErrorCode.unsupported_version
            checked += 1
    assert checked > 50
