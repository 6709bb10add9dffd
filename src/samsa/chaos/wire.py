"""What the proxy needs to know about a Kafka frame, read without decoding the body.

A request tells us its api key, version and correlation id (the first 8 bytes of every request
header) and whether the broker will answer it: a Produce with `acks=0` gets no response, so it
must not wait in the queue that matches responses to requests. A response tells us only its
correlation id (the first 4 bytes of every response header). Frames here have no size prefix.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_REQUEST_PREFIX = struct.Struct(">hhi")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")

PRODUCE = 0
# Produce v9 is the first flexible version: request header v2 (tagged fields after client id)
# and compact strings in the body. KIP-482.
_PRODUCE_FIRST_FLEXIBLE_VERSION = 9
# Produce v3 added transactional_id before acks (KIP-98).
_PRODUCE_FIRST_TRANSACTIONAL_VERSION = 3


class WireError(Exception):
    """Raised by the readers here for a frame too short or malformed to read.

    The proxy counts it and closes the connection: the byte stream can no longer be matched.
    """


@dataclass(frozen=True, slots=True)
class RequestInfo:
    api_key: int
    api_version: int
    correlation_id: int
    expects_response: bool


def read_request(data: bytes) -> RequestInfo:
    if len(data) < _REQUEST_PREFIX.size:
        raise WireError(f"request of {len(data)} bytes is shorter than a request header")
    api_key, api_version, correlation_id = _REQUEST_PREFIX.unpack_from(data)
    expects_response = True
    if api_key == PRODUCE:
        expects_response = _produce_acks(data, api_version) != 0
    return RequestInfo(api_key, api_version, correlation_id, expects_response)


def read_response_correlation_id(data: bytes) -> int:
    if len(data) < _INT32.size:
        raise WireError(f"response of {len(data)} bytes is shorter than a response header")
    (correlation_id,) = _INT32.unpack_from(data)
    return int(correlation_id)


def _produce_acks(data: bytes, api_version: int) -> int:
    flexible = api_version >= _PRODUCE_FIRST_FLEXIBLE_VERSION
    offset = _skip_nullable_string(data, _REQUEST_PREFIX.size)  # client_id: never compact
    if flexible:
        offset = _skip_tagged_fields(data, offset)
    if api_version >= _PRODUCE_FIRST_TRANSACTIONAL_VERSION:
        if flexible:
            offset = _skip_compact_nullable_string(data, offset)
        else:
            offset = _skip_nullable_string(data, offset)
    if offset + _INT16.size > len(data):
        raise WireError("produce request ends before its acks field")
    (acks,) = _INT16.unpack_from(data, offset)
    return int(acks)


def _skip_nullable_string(data: bytes, offset: int) -> int:
    if offset + _INT16.size > len(data):
        raise WireError("frame ends inside a string length")
    (length,) = _INT16.unpack_from(data, offset)
    return offset + _INT16.size + max(int(length), 0)


def _skip_compact_nullable_string(data: bytes, offset: int) -> int:
    length_plus_one, offset = _read_uvarint(data, offset)
    return offset + max(length_plus_one - 1, 0)


def _skip_tagged_fields(data: bytes, offset: int) -> int:
    count, offset = _read_uvarint(data, offset)
    for _ in range(count):
        _, offset = _read_uvarint(data, offset)  # tag
        size, offset = _read_uvarint(data, offset)
        offset += size
    return offset


_UVARINT_BYTES_MAX = 5


def _read_uvarint(data: bytes, offset: int) -> tuple[int, int]:
    value = 0
    for index in range(_UVARINT_BYTES_MAX):
        if offset >= len(data):
            raise WireError("frame ends inside a varint")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, offset
    raise WireError(f"varint longer than {_UVARINT_BYTES_MAX} bytes")
