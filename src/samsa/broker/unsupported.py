"""Answers to requests of a version samsa does not serve.

- ApiVersions of a newer version: Kafka's fallback, a v0 body with UNSUPPORTED_VERSION and the
  supported ranges, so the client can retry with a version both sides know (KIP-511).
- Produce v0-2 (advertised for librdkafka's sake, KAFKA-18659): UNSUPPORTED_VERSION on every
  partition.
- Anything else kio has a schema for: a response with UNSUPPORTED_VERSION in its top-level error
  code. Where the response has no top-level error code, or kio has no schema at all, the
  connection is closed (what Kafka does for versions it cannot parse).
"""

from __future__ import annotations

import dataclasses
import struct

from kio.schema.api_versions.v0.response import ApiVersionsResponse as ApiVersionsResponseV0
from kio.schema.api_versions.v3.response import ApiVersionsResponse
from kio.schema.errors import ErrorCode
from kio.schema.produce.v3.request import ProduceRequest as ProduceRequestV3
from kio.schema.produce.v3.response import PartitionProduceResponse, TopicProduceResponse
from kio.schema.produce.v3.response import ProduceResponse as ProduceResponseV3
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.types import TopicName
from kio.serial import entity_reader
from kio.static.primitive import i32, i64
from kio.static.protocol import ResponsePayload

from samsa.broker.metadata import api_keys
from samsa.broker.outcomes import Close, Outcome, RawFrame, Reply
from samsa.broker.routing import NO_THROTTLE
from samsa.protocol import codec, guard, versions
from samsa.protocol.apis import ApiKey
from samsa.protocol.codec import RequestPrefix

_NULL_STRING = b"\xff\xff"


def api_versions_fallback(prefix: RequestPrefix) -> Outcome:
    every = ApiVersionsResponse(
        error_code=ErrorCode.unsupported_version, api_keys=api_keys(), throttle_time=NO_THROTTLE
    )
    return Reply(prefix.correlation_id, versions.convert(every, ApiVersionsResponseV0))


def respond(prefix: RequestPrefix, data: bytes | memoryview) -> Outcome:
    reason = f"api {prefix.api_key} v{prefix.api_version} is not served"
    if prefix.api_key == ApiKey.PRODUCE and 0 <= prefix.api_version <= 2:
        return _old_produce(prefix, data)
    request_schema = codec.request_type(prefix.api_key, prefix.api_version)
    response_schema = codec.response_type(prefix.api_key, prefix.api_version)
    if request_schema is None or response_schema is None:
        return Close(reason)
    names = {f.name for f in dataclasses.fields(response_schema)}
    if "error_code" not in names:
        return Close(reason)
    try:
        payload = _error_response(response_schema)
        codec.encode_response(prefix.correlation_id, payload)  # fail here, not in the server
    except Exception:
        return Close(f"{reason}; no error response could be built")
    return Reply(prefix.correlation_id, payload)


def _error_response(schema: type[ResponsePayload]) -> ResponsePayload:
    """UNSUPPORTED_VERSION, every other field its default (the schema's, else Kafka's implicit
    one). Set explicitly: some schemas default the error code to NONE."""
    return dataclasses.replace(
        versions.default_instance(schema), error_code=ErrorCode.unsupported_version
    )


def _old_produce(prefix: RequestPrefix, data: bytes | memoryview) -> Outcome:
    """Produce v0-2 bodies are v3 bodies without the leading transactional id."""
    try:
        _, offset = entity_reader(RequestHeaderV1)(data, 0)
        body_data = _NULL_STRING + data[offset:]
        guard.check(ProduceRequestV3, body_data)  # array counts, before kio's native reader
        body: ProduceRequestV3
        body, _ = entity_reader(ProduceRequestV3)(body_data, 0)
    except Exception:
        return Close(f"undecodable produce v{prefix.api_version}")
    if body.acks == 0:
        return Close(f"produce v{prefix.api_version} is not served (acks=0: closing)")
    topics = [(t.name, [p.index for p in t.partition_data]) for t in body.topic_data]
    if prefix.api_version == 2:  # the v2 response is laid out exactly as v3's
        return Reply(prefix.correlation_id, _produce_v3(topics))
    return _RawReply.produce_v0_v1(prefix, topics)


def _produce_v3(topics: list[tuple[TopicName, list[i32]]]) -> ProduceResponseV3:
    return ProduceResponseV3(
        responses=tuple(
            TopicProduceResponse(
                name=name,
                partition_responses=tuple(
                    PartitionProduceResponse(
                        index=index,
                        error_code=ErrorCode.unsupported_version,
                        base_offset=i64(-1),
                        log_append_time=None,
                    )
                    for index in indexes
                ),
            )
            for name, indexes in topics
        ),
        throttle_time=NO_THROTTLE,
    )


class _RawReply:
    """Produce v0/v1 responses, which kio no longer carries: three fields per partition."""

    @staticmethod
    def produce_v0_v1(prefix: RequestPrefix, topics: list[tuple[TopicName, list[i32]]]) -> Outcome:
        out = bytearray(struct.pack(">ii", prefix.correlation_id, len(topics)))
        for name, indexes in topics:
            encoded = name.encode()
            out += struct.pack(">h", len(encoded)) + encoded + struct.pack(">i", len(indexes))
            for index in indexes:
                out += struct.pack(">ihq", index, ErrorCode.unsupported_version, -1)
        if prefix.api_version == 1:
            out += struct.pack(">i", 0)  # throttle_time_ms
        return Reply(prefix.correlation_id, RawFrame(bytes(out)))
