"""The array-count guard in front of kio's native reader (samsa.protocol.guard)."""

from __future__ import annotations

import dataclasses
import datetime
import struct
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.list_offsets.v7.request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kio.schema.metadata.v4.request import MetadataRequest as MetadataRequestV4
from kio.schema.metadata.v4.request import MetadataRequestTopic as MetadataRequestTopicV4
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.produce.v3.request import PartitionProduceData as PartitionV3
from kio.schema.produce.v3.request import ProduceRequest as ProduceRequestV3
from kio.schema.produce.v3.request import TopicProduceData as TopicV3
from kio.schema.types import BrokerId, TopicName, TransactionalId
from kio.serial import entity_reader
from kio.static.primitive import Records, i8, i16, i32, i32Timedelta, i64
from kio.static.protocol import RequestPayload

from samsa.protocol import codec, guard
from samsa.protocol.apis import SERVED

from .wire import create_topics_request, fetch_request, make_batch, produce_request

VALID: list[RequestPayload] = [
    produce_request("t", {0: make_batch([b"a", b"b"]), 1: None, 2: b""}),
    ProduceRequestV3(
        transactional_id=TransactionalId("tx"),
        acks=i16(1),
        timeout=i32Timedelta.parse(datetime.timedelta(seconds=1)),
        topic_data=(
            TopicV3(
                name=TopicName("t"),
                partition_data=(PartitionV3(index=i32(0), records=Records(b"xyz")),),
            ),
        ),
    ),
    fetch_request("t", [0, 1, 2], offset=5),
    create_topics_request("new", 3),
    MetadataRequest(
        topics=(MetadataRequestTopic(topic_id=None, name=TopicName("a")),),
        allow_auto_topic_creation=True,
        include_topic_authorized_operations=False,
    ),
    MetadataRequest(
        topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=True
    ),
    MetadataRequestV4(
        topics=(
            MetadataRequestTopicV4(name=TopicName("a")),
            MetadataRequestTopicV4(name=TopicName("bb")),
        ),
        allow_auto_topic_creation=True,
    ),
    ApiVersionsRequest(client_software_name="a", client_software_version="b"),
    ListOffsetsRequest(
        replica_id=BrokerId(-1),
        isolation_level=i8(1),
        topics=(
            ListOffsetsTopic(
                name=TopicName("t"),
                partitions=(
                    ListOffsetsPartition(
                        partition_index=i32(0), current_leader_epoch=i32(3), timestamp=i64(-2)
                    ),
                ),
            ),
        ),
    ),
]


@pytest.mark.parametrize("payload", VALID, ids=lambda p: f"{type(p).__name__}v{p.__version__}")
def test_guard_walks_valid_requests_to_their_exact_end(payload: RequestPayload) -> None:
    data = codec.encode_request(3, "client", payload)[4:]
    schema = type(payload)
    body_offset = guard.check(schema.__header_schema__, data)
    assert guard.check(schema, data, body_offset) == len(data)
    assert codec.decode_request(data).payload == payload


def test_guard_has_a_plan_for_every_served_request_schema() -> None:
    for api_key, versions in SERVED.items():
        for version in range(versions.min, versions.max + 1):
            schema = codec.request_type(api_key, version)
            assert schema is not None
            # The plan must build; an empty body is malformed unless the schema has no fields
            # (and, when flexible, still needs its one-byte tag buffer).
            if dataclasses.fields(schema) or schema.__flexible__:
                with pytest.raises(guard.Malformed):
                    guard.check(schema, b"")
            else:
                assert guard.check(schema, b"") == 0
            if not dataclasses.fields(schema) and schema.__flexible__:
                assert guard.check(schema, b"\x00") == 1


def test_huge_array_count_is_refused_before_kio_reads_it() -> None:
    header = struct.pack(">hhih", 0, 3, 1, 1) + b"c"
    body = struct.pack(">hhi", -1, 1, 1000) + struct.pack(">i", 2**31 - 1)
    with pytest.raises(codec.DecodeError, match="array of 2147483647"):
        codec.decode_request(header + body)


def test_huge_compact_array_count_is_refused() -> None:
    header = struct.pack(">hhih", 3, 12, 1, 1) + b"c" + b"\x00"
    body = b"\xff\xff\xff\xff\x0f" + b"\x00\x00\x00"  # topics: 2^32 - 2 elements
    with pytest.raises(codec.DecodeError, match="array of"):
        codec.decode_request(header + body)


@pytest.mark.parametrize(
    "frame_hex",
    [
        # Produce v3, topic array count 2^31-1, in 23 bytes
        (struct.pack(">hhih", 0, 3, 1, 1) + b"c" + struct.pack(">hhii", -1, 1, 1000, 2**31 - 1)),
        # Metadata v12, compact topics array of 2^32-2
        (struct.pack(">hhih", 3, 12, 1, 1) + b"c\x00" + b"\xff\xff\xff\xff\x0f\x00\x00"),
        # Produce v1 (answered by the unsupported path, which also decodes the body)
        (struct.pack(">hhih", 0, 1, 1, 1) + b"c" + struct.pack(">hii", 1, 1000, 2**31 - 1)),
    ],
)
def test_a_tiny_frame_with_a_huge_count_does_not_kill_the_process(frame_hex: bytes) -> None:
    """Run in a child: without the guard kio aborts the whole interpreter (SIGABRT)."""
    script = textwrap.dedent(
        f"""
        from samsa.broker.core import Broker
        from samsa.broker import unsupported
        from samsa.protocol import codec
        data = bytes.fromhex({frame_hex.hex()!r})
        prefix = codec.peek_prefix(data)
        try:
            if prefix.api_version < 3 and prefix.api_key == 0:
                print(type(unsupported.respond(prefix, data)).__name__)
            else:
                codec.decode_request(data)
                print("decoded")
        except codec.DecodeError:
            print("DecodeError")
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.strip() in ("DecodeError", "Close")


@settings(max_examples=2000, deadline=None)
@given(
    pair=st.sampled_from([(int(k), v) for k, r in SERVED.items() for v in range(r.min, r.max + 1)]),
    body=st.binary(max_size=120),
)
def test_when_the_guard_passes_kio_reads_exactly_as_far(pair: tuple[int, int], body: bytes) -> None:
    """The guard walks the same layout kio reads: wherever it accepts, kio either fails or
    stops at the same byte. (Only called when the guard passed, so kio is safe to call.)"""
    schema = codec.request_type(*pair)
    assert schema is not None
    try:
        end = guard.check(schema, body)
    except guard.Malformed:
        return
    try:
        _, consumed = entity_reader(schema)(body, 0)
    except Exception:
        return
    assert consumed == end


def test_null_array_where_the_schema_does_not_allow_one_is_refused() -> None:
    # Produce v3: transactional_id null, acks, timeout, topic_data = null (-1): not nullable.
    header = struct.pack(">hhih", 0, 3, 1, 1) + b"c"
    body = struct.pack(">hhii", -1, 1, 1000, -1)
    with pytest.raises(codec.DecodeError, match="not nullable"):
        codec.decode_request(header + body)
    # Metadata v4: topics = null (-1) means "all topics": nullable, accepted.
    header = struct.pack(">hhih", 3, 4, 1, 1) + b"c"
    request = codec.decode_request(header + struct.pack(">ib", -1, 1))
    assert isinstance(request.payload, MetadataRequestV4)
    assert request.payload.topics is None


st.register_type_strategy(Records, st.binary(max_size=64))  # kio registers all but this one


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    pair=st.sampled_from([(int(k), v) for k, r in SERVED.items() for v in range(r.min, r.max + 1)]),
)
def test_every_well_formed_request_passes_to_its_exact_end(
    data: st.DataObject, pair: tuple[int, int]
) -> None:
    """The compiled walk never refuses what kio wrote, and ends where the frame does."""
    schema = codec.request_type(*pair)
    assert schema is not None
    frame = codec.encode_request(9, "client", data.draw(st.from_type(schema)))[4:]
    assert guard.check(schema, frame, guard.check(schema.__header_schema__, frame)) == len(frame)
