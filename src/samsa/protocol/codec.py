"""kio glue: request frames to (header, payload) and response payloads to frames.

The header version follows from the payload schema that kio generated from Kafka's JSON
(`__header_schema__`), so flexible versions get request header v2 / response header v1, and
ApiVersions responses always get header v0. A decoded request's payload is the class of the
version the client sent; `samsa.broker.routing` converts it to the one its handler reads.
For the versions Kafka 4.0 removed, which kio lacks, the classes are samsa's own, generated in
kio's shape from Kafka 3.9's schemas (`samsa.protocol.legacy`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pkgutil import resolve_name
from typing import Any, Generic, TypeVar, cast

from kio.index import load_request_schema, load_response_schema
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.serial import entity_reader
from kio.static.primitive import i32
from kio.static.protocol import RequestPayload, ResponsePayload

from samsa.log.storage import FileRegion
from samsa.protocol import guard
from samsa.protocol.compiled_writer import writer_for
from samsa.protocol.legacy.index import INDEX as LEGACY

_PREFIX = struct.Struct(">hhi")
P_co = TypeVar("P_co", covariant=True)
Q = TypeVar("Q")


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
class Request(Generic[P_co]):
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    payload: P_co
    # The client's address as Kafka reports it (`/127.0.0.1`: Java's InetAddress.toString);
    # "" where no connection carried the request (the simulation, tools).
    client_host: str = ""
    # Who sent it, as Kafka's KafkaPrincipal prints: "User:alice" (SASL), "User:CN=..." (a TLS
    # client certificate), "User:ANONYMOUS" (no authentication).
    principal: str = "User:ANONYMOUS"
    # The name of the listener it came in on: Metadata answers with that listener's endpoints.
    listener: str = ""

    def with_payload(self, payload: Q) -> Request[Q]:
        return Request(
            self.api_key,
            self.api_version,
            self.correlation_id,
            self.client_id,
            payload,
            self.client_host,
            self.principal,
            self.listener,
        )


def peek_prefix(data: bytes | memoryview) -> RequestPrefix:
    """Api key, version and correlation id: readable even when the rest is not."""
    if len(data) < _PREFIX.size:
        raise DecodeError(f"request of {len(data)} bytes is shorter than a header")
    api_key, api_version, correlation_id = _PREFIX.unpack_from(data)
    return RequestPrefix(api_key, api_version, correlation_id)


@cache
def request_type(api_key: int, api_version: int) -> type[RequestPayload] | None:
    try:
        schema: type[RequestPayload] = load_request_schema(api_key, api_version)
    except Exception:  # kio raises its own index errors, or ImportError for gaps
        legacy: type[RequestPayload] | None = _legacy(api_key, api_version, 0)
        return legacy
    return schema


@cache
def response_type(api_key: int, api_version: int) -> type[ResponsePayload] | None:
    try:
        schema: type[ResponsePayload] = load_response_schema(api_key, api_version)
    except Exception:
        legacy: type[ResponsePayload] | None = _legacy(api_key, api_version, 1)
        return legacy
    return schema


def _legacy(api_key: int, api_version: int, which: int) -> Any:
    """The request (0) or response (1) class of a version kio lacks, if samsa has one."""
    paths = LEGACY.get((api_key, api_version))
    return None if paths is None else resolve_name(paths[which])


def preload(keys: Iterable[tuple[int, int]]) -> None:
    """Import the schemas of these (api key, version)s and build their readers and writers now.

    Each costs tens of milliseconds, which would otherwise fall on the first such request."""
    for api_key, version in keys:
        request = request_type(api_key, version)
        response = response_type(api_key, version)
        if request is not None:
            entity_reader(request.__header_schema__)
            entity_reader(request)
        if response is not None:
            writer_for(response.__header_schema__)
            writer_for(response)


def decode_request(
    data: bytes | memoryview,
    client_host: str = "",
    principal: str = "User:ANONYMOUS",
    listener: str = "",
) -> Request[RequestPayload]:
    """Decode a whole request frame (without its size prefix), sent from `client_host` by
    `principal` on `listener`."""
    prefix = peek_prefix(data)
    schema = request_type(prefix.api_key, prefix.api_version)
    if schema is None:
        raise DecodeError(f"no schema for api {prefix.api_key} v{prefix.api_version}")
    try:
        # kio's native reader aborts the process on a huge array count: check those first.
        guard.check(schema, data, guard.check(schema.__header_schema__, data, 0))
        header, offset = entity_reader(schema.__header_schema__)(data, 0)
        payload: RequestPayload
        payload, _ = entity_reader(schema)(data, offset)
    except Exception as exc:  # guard.Malformed, or kio's readers' many types
        raise DecodeError(f"api {prefix.api_key} v{prefix.api_version}: {exc!r}") from exc
    return Request(
        prefix.api_key,
        prefix.api_version,
        prefix.correlation_id,
        header.client_id,
        payload,
        client_host,
        principal,
        listener,
    )


def decode_client_id(data: bytes) -> str | None:
    """The client id of any request: header v1 is a prefix of v2."""
    try:
        header, _ = entity_reader(RequestHeaderV1)(data, 0)
    except Exception:
        return None
    client_id: str | None = header.client_id
    return client_id


# Writes at least this large (record sets) are kept by reference, not copied into the frame.
BY_REFERENCE_BYTES = 32 * 1024


# One response frame as buffers to send one after the other; a `FileRegion` (a fetch's records)
# is sent from its file.
Part = bytes | bytearray | FileRegion


class _Parts:
    """What response writers write into: small writes are gathered into one buffer (`small`),
    large ones (and file regions) are kept as they are, so a fetch response's records are not
    copied to be framed."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self._head = bytearray(b"\0\0\0\0")  # the size prefix, filled in by `frame`
        self.small = self._head

    def write(self, data: bytes | FileRegion) -> int:
        if isinstance(data, FileRegion) or len(data) >= BY_REFERENCE_BYTES:
            if self.small:
                self.parts.append(self.small)
            self.parts.append(data)
            self.small = bytearray()
        else:
            self.small += data
        return len(data)

    def frame(self) -> list[Part]:
        parts = [*self.parts, self.small] if self.small else self.parts
        size = sum(len(part) for part in parts) - 4  # the prefix counts what follows it
        self._head[:4] = size.to_bytes(4, "big")
        return parts


def encode_response_parts(correlation_id: int, payload: ResponsePayload) -> list[Part]:
    """A whole response frame, size prefix included, as buffers to send one after the other."""
    # The id is the request's, read as an int32: no phantom type's range check needed.
    header = type(payload).__header_schema__(correlation_id=cast(i32, correlation_id))
    return _write(header, payload)


def _write(header: Any, payload: RequestPayload | ResponsePayload) -> list[Part]:
    """A frame of `header` then `payload`, size prefix included."""
    parts = _Parts()
    writer_for(type(header))(parts, header)
    writer_for(type(payload))(parts, payload)
    return parts.frame()


def encode_response(correlation_id: int, payload: ResponsePayload) -> bytes:
    """A whole response frame, size prefix included; file regions read into it (and closed)."""
    return b"".join(materialize(encode_response_parts(correlation_id, payload)))


def materialize(parts: list[Part]) -> list[bytes | bytearray]:
    """`parts` with each file region read into memory and closed."""
    return [_read_region(part) if isinstance(part, FileRegion) else part for part in parts]


def _read_region(region: FileRegion) -> bytes:
    try:
        return region.read()
    finally:
        region.close()


def close_regions(parts: list[Part]) -> None:
    """Let the file regions of a response that will not be sent go."""
    for part in parts:
        if isinstance(part, FileRegion):
            part.close()


def encode_request(correlation_id: int, client_id: str | None, payload: RequestPayload) -> bytes:
    """A whole request frame; used by samsa's own tools and tests."""
    header_schema = type(payload).__header_schema__
    fields: dict[str, Any] = {
        "request_api_key": type(payload).__api_key__,
        "request_api_version": type(payload).__version__,
        "correlation_id": correlation_id,
        "client_id": client_id,
    }
    return b"".join(materialize(_write(header_schema(**fields), payload)))


def decode_response(api_key: int, api_version: int, data: bytes) -> tuple[int, Any]:
    """(correlation id, payload) of a response frame without its size prefix."""
    schema = response_type(api_key, api_version)
    if schema is None:
        raise DecodeError(f"no schema for api {api_key} v{api_version}")
    header, offset = entity_reader(schema.__header_schema__)(data, 0)
    payload, _ = entity_reader(schema)(data, offset)
    return int(header.correlation_id), payload
