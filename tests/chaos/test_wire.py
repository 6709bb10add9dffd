"""Reading just enough of a frame: api, version, correlation id, and Produce's acks."""

from __future__ import annotations

import datetime

import pytest
from kio.schema.produce.v3.request import ProduceRequest as ProduceV3
from kio.schema.produce.v9.request import ProduceRequest as ProduceV9
from kio.schema.types import TransactionalId
from kio.static.primitive import i16, i32Timedelta

from samsa.chaos.wire import RequestInfo, WireError, read_request, read_response_correlation_id
from samsa.protocol import codec


def _unframed(data: bytes) -> bytes:
    return data[4:]


@pytest.mark.parametrize("schema", [ProduceV3, ProduceV9])
@pytest.mark.parametrize("transactional_id", [None, "tx-1"])
@pytest.mark.parametrize("client_id", [None, "a-client"])
@pytest.mark.parametrize("acks", [0, 1, -1])
def test_produce_acks_decide_whether_a_response_comes(
    schema: type[ProduceV3] | type[ProduceV9],
    transactional_id: str | None,
    client_id: str | None,
    acks: int,
) -> None:
    request = schema(
        transactional_id=None if transactional_id is None else TransactionalId(transactional_id),
        acks=i16(acks),
        timeout=i32Timedelta.parse(datetime.timedelta(seconds=5)),
        topic_data=(),
    )
    data = _unframed(codec.encode_request(77, client_id, request))
    version = schema.__version__
    assert read_request(data) == RequestInfo(0, version, 77, expects_response=acks != 0)


def test_other_apis_always_expect_a_response() -> None:
    data = b"\x00\x03\x00\x0c\x00\x00\x00\x2a"  # Metadata v12, correlation id 42
    assert read_request(data) == RequestInfo(3, 12, 42, expects_response=True)
    assert read_response_correlation_id(b"\x00\x00\x00\x2a rest") == 42


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x03\x00",  # shorter than the fixed header
        b"\x00\x00\x00\x03\x00\x00\x00\x01",  # Produce v3 cut before its client id
        b"\x00\x00\x00\x03\x00\x00\x00\x01\xff\xff\xff\xff",  # ... before its acks
        b"\x00\x00\x00\x09\x00\x00\x00\x01\xff\xff\x80",  # v9: cut inside a varint
    ],
)
def test_truncated_requests_raise(data: bytes) -> None:
    with pytest.raises(WireError):
        read_request(data)
    with pytest.raises(WireError):
        read_response_correlation_id(b"\x00\x00")
