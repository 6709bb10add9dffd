"""kio glue: request frames to (header, payload) and response payloads to frames.

The header version follows from the payload schema that kio generated from Kafka's JSON
(`__header_schema__`), so flexible versions get request header v2 / response header v1, and
ApiVersions responses always get header v0.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from functools import cache
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.serial import entity_reader, entity_writer

from samsa.protocol import guard
from samsa.protocol.frames import frame

_PREFIX = struct.Struct(">hhi")


class DecodeError(Exception):
    """Raised by `decode_request` for a frame that is not a well-formed request.

    The caller closes the connection: the byte stream can no longer be trusted.
    """


@dataclass(frozen=True, slots=True)
class RequestPrefix:
    api_key: int
    api_version: int
    correlation_id: int


@dataclass(frozen=True, slots=True)
class Request:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    payload: Any


def peek_prefix(data: bytes) -> RequestPrefix:
    """Api key, version and correlation id: readable even when the rest is not."""
    if len(data) < _PREFIX.size:
        raise DecodeError(f"request of {len(data)} bytes is shorter than a header")
    api_key, api_version, correlation_id = _PREFIX.unpack_from(data)
    return RequestPrefix(api_key, api_version, correlation_id)


@cache
def request_type(api_key: int, api_version: int) -> type[Any] | None:
    try:
        return load_request_schema(api_key, api_version)
    except Exception:  # kio raises its own index errors, or ImportError for gaps
        return None


@cache
def response_type(api_key: int, api_version: int) -> type[Any] | None:
    try:
        return load_response_schema(api_key, api_version)
    except Exception:
        return None


def decode_request(data: bytes) -> Request:
    """Decode a whole request frame (without its size prefix)."""
    prefix = peek_prefix(data)
    schema = request_type(prefix.api_key, prefix.api_version)
    if schema is None:
        raise DecodeError(f"no schema for api {prefix.api_key} v{prefix.api_version}")
    try:
        # kio's native reader aborts the process on a huge array count: check those first.
        guard.check(schema, data, guard.check(schema.__header_schema__, data, 0))
        header, offset = entity_reader(schema.__header_schema__)(data, 0)
        payload, _ = entity_reader(schema)(data, offset)
    except Exception as exc:  # guard.Malformed, or kio's readers' many types
        raise DecodeError(f"api {prefix.api_key} v{prefix.api_version}: {exc!r}") from exc
    return Request(
        prefix.api_key, prefix.api_version, prefix.correlation_id, header.client_id, payload
    )


def decode_client_id(data: bytes) -> str | None:
    """The client id of any request: header v1 is a prefix of v2."""
    try:
        header, _ = entity_reader(RequestHeaderV1)(data, 0)
    except Exception:
        return None
    client_id: str | None = header.client_id
    return client_id


def encode_response(correlation_id: int, payload: Any) -> bytes:
    """A whole response frame, size prefix included."""
    buffer = io.BytesIO()
    buffer.write(b"\0\0\0\0")  # the size, filled in below: no copy of the body to frame it
    header_schema = type(payload).__header_schema__
    entity_writer(header_schema)(buffer, header_schema(correlation_id=correlation_id))
    entity_writer(type(payload))(buffer, payload)
    size = buffer.tell() - 4
    view = buffer.getbuffer()
    view[:4] = size.to_bytes(4, "big")
    del view
    return buffer.getvalue()


def encode_request(correlation_id: int, client_id: str | None, payload: Any) -> bytes:
    """A whole request frame; used by samsa's own tools and tests."""
    buffer = io.BytesIO()
    header_schema = type(payload).__header_schema__
    fields: dict[str, Any] = {
        "request_api_key": type(payload).__api_key__,
        "request_api_version": type(payload).__version__,
        "correlation_id": correlation_id,
        "client_id": client_id,
    }
    entity_writer(header_schema)(buffer, header_schema(**fields))
    entity_writer(type(payload))(buffer, payload)
    return frame(buffer.getvalue())


def decode_response(api_key: int, api_version: int, data: bytes) -> tuple[int, Any]:
    """(correlation id, payload) of a response frame without its size prefix."""
    schema = response_type(api_key, api_version)
    if schema is None:
        raise DecodeError(f"no schema for api {api_key} v{api_version}")
    header, offset = entity_reader(schema.__header_schema__)(data, 0)
    payload, _ = entity_reader(schema)(data, offset)
    return int(header.correlation_id), payload
