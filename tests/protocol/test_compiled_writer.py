"""samsa's compiled response writers against kio's `entity_writer`: the same bytes for every
response schema samsa serves, on random values; large record sets and file regions still kept
by reference."""

from __future__ import annotations

import datetime
import io
import os
import tempfile
import uuid
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v16.response import (
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from kio.serial import entity_writer
from kio.static.primitive import Records, i32, i32Timedelta, i64
from kio.static.protocol import ResponsePayload

from samsa.log.storage import FileRegion
from samsa.protocol import codec
from samsa.protocol.apis import SERVED, ApiKey
from samsa.protocol.frames import frame

TOPIC_ID = uuid.UUID(int=7)
st.register_type_strategy(Records, st.binary(max_size=64))  # kio registers all but this one


def kio_frame(correlation_id: int, payload: ResponsePayload) -> bytes:
    buffer = io.BytesIO()
    header_schema = type(payload).__header_schema__
    entity_writer(header_schema)(buffer, header_schema(correlation_id=i32(correlation_id)))
    entity_writer(type(payload))(buffer, payload)
    return frame(buffer.getvalue())


def _served_responses() -> list[type[ResponsePayload]]:
    schemas = []
    for api_key, served in SERVED.items():
        for version in range(served.min, served.max + 1):
            schema = codec.response_type(api_key, version)
            assert schema is not None
            schemas.append(schema)
    return schemas


@pytest.mark.parametrize(
    "schema",
    _served_responses(),
    ids=lambda cls: f"{ApiKey(cls.__api_key__).name}-v{cls.__version__}",
)
@settings(max_examples=10, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), correlation_id=st.integers(-(2**31), 2**31 - 1))
def test_same_bytes_as_kio(
    schema: type[ResponsePayload], data: st.DataObject, correlation_id: int
) -> None:
    payload = data.draw(st.from_type(schema))
    assert codec.encode_response(correlation_id, payload) == kio_frame(correlation_id, payload)


def _fetch(records: bytes | FileRegion) -> FetchResponse:
    partition = PartitionData(
        partition_index=i32(0),
        error_code=ErrorCode.none,
        high_watermark=i64(10),
        aborted_transactions=None,
        records=cast(Records, records),  # a region stands for the bytes it holds
    )
    return FetchResponse(
        throttle_time=i32Timedelta.parse(datetime.timedelta(0)),
        error_code=ErrorCode.none,
        responses=(FetchableTopicResponse(topic_id=TOPIC_ID, partitions=(partition,)),),
    )


def test_large_records_and_file_regions_are_kept_by_reference() -> None:
    data = os.urandom(codec.BY_REFERENCE_BYTES)
    with tempfile.TemporaryFile() as file:
        file.write(b"ab" + data)
        file.flush()
        region = FileRegion(os.dup(file.fileno()), 2, len(data))
        parts = codec.encode_response_parts(7, _fetch(region))
        assert any(part is region for part in parts)
        assert b"".join(codec.materialize(parts)) == kio_frame(7, _fetch(data))
    parts = codec.encode_response_parts(7, _fetch(data))
    assert any(part is data for part in parts)
    assert b"".join(codec.materialize(parts)) == kio_frame(7, _fetch(data))
    small = codec.encode_response_parts(7, _fetch(b"x" * 100))
    assert len(small) == 1
