"""samsa's compiled writers against kio's `entity_writer`: the same bytes for every request and
response schema samsa serves, on random values; large record sets and file regions still kept
by reference."""

from __future__ import annotations

import datetime
import io
import os
import tempfile
import uuid
from collections.abc import Callable
from typing import Any, cast

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
from kio.static.protocol import Entity, RequestPayload, ResponsePayload

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


def kio_request_frame(correlation_id: int, payload: RequestPayload) -> bytes:
    buffer = io.BytesIO()
    header_schema = type(payload).__header_schema__
    header = header_schema(
        request_api_key=type(payload).__api_key__,
        request_api_version=type(payload).__version__,
        correlation_id=i32(correlation_id),
        client_id="a client",
    )
    entity_writer(header_schema)(buffer, header)
    entity_writer(type(payload))(buffer, payload)
    return frame(buffer.getvalue())


def _served(load: Callable[[int, int], type[Entity] | None]) -> list[type[Entity]]:
    schemas = []
    for api_key, served in SERVED.items():
        for version in range(served.min, served.max + 1):
            schema = load(api_key, version)
            assert schema is not None
            schemas.append(schema)
    return schemas


def _name(cls: Any) -> str:
    return f"{ApiKey(cls.__api_key__).name}-v{cls.__version__}"


@pytest.mark.parametrize("schema", _served(codec.response_type), ids=_name)
@settings(max_examples=5, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), correlation_id=st.integers(-(2**31), 2**31 - 1))
def test_same_response_bytes_as_kio(
    schema: type[ResponsePayload], data: st.DataObject, correlation_id: int
) -> None:
    payload = data.draw(st.from_type(schema))
    assert codec.encode_response(correlation_id, payload) == kio_frame(correlation_id, payload)


@pytest.mark.parametrize("schema", _served(codec.request_type), ids=_name)
@settings(max_examples=3, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), correlation_id=st.integers(-(2**31), 2**31 - 1))
def test_same_request_bytes_as_kio(
    schema: type[RequestPayload], data: st.DataObject, correlation_id: int
) -> None:
    payload = data.draw(st.from_type(schema))
    expected = kio_request_frame(correlation_id, payload)
    assert codec.encode_request(correlation_id, "a client", payload) == expected


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
