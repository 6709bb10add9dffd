"""Version negotiation against a running broker: the advertised table, ApiVersions fallback,
Produce v0-2 and unserved versions of other APIs."""

from __future__ import annotations

import dataclasses
import datetime
import io
import struct

import pytest
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsRequestV0
from kio.schema.api_versions.v0.response import ApiVersionsResponse as ApiVersionsResponseV0
from kio.schema.api_versions.v3.request import ApiVersionsRequest as ApiVersionsRequestV3
from kio.schema.api_versions.v4.request import ApiVersionsRequest as ApiVersionsRequestV4
from kio.schema.broker_heartbeat.v0.request import BrokerHeartbeatRequest
from kio.schema.broker_heartbeat.v0.response import BrokerHeartbeatResponse
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12.request import MetadataRequest as MetadataRequestV12
from kio.schema.metadata.v13.request import MetadataRequest as MetadataRequestV13
from kio.schema.metadata.v13.response import MetadataResponse as MetadataResponseV13
from kio.schema.produce.v3.response import ProduceResponse as ProduceResponseV3
from kio.schema.types import BrokerId
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i16, i32, i64

from samsa.protocol import codec
from samsa.protocol.apis import ADVERTISED, ApiKey, is_served
from samsa.testing import EmbeddedBroker

from .wire import Conn, create_topics_request, fetch_request, make_batch

TOPIC = "versions"


@pytest.fixture(scope="module", autouse=True)
def topic(broker: EmbeddedBroker) -> None:
    with Conn(broker.bootstrap) as conn:
        response = conn.request(create_topics_request(TOPIC, 2))
        assert response.topics[0].error_code == ErrorCode.none


def metadata_v12() -> MetadataRequestV12:
    return MetadataRequestV12(
        topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False
    )


def assert_still_serving(conn: Conn) -> None:
    response = conn.request(metadata_v12())
    assert [b.node_id for b in response.brokers] == [1]


def test_api_versions_v3_advertises_exactly_the_table(broker: EmbeddedBroker) -> None:
    with Conn(broker.bootstrap) as conn:
        response = conn.request(
            ApiVersionsRequestV3(client_software_name="t", client_software_version="1")
        )
    assert response.error_code == ErrorCode.none
    table = {int(k.api_key): (int(k.min_version), int(k.max_version)) for k in response.api_keys}
    assert table == {int(k): (v.min, v.max) for k, v in ADVERTISED.items()}
    assert table[ApiKey.PRODUCE][0] == 0


def test_api_versions_v0_also_answers(broker: EmbeddedBroker) -> None:
    with Conn(broker.bootstrap) as conn:
        response = conn.request(ApiVersionsRequestV0())
    assert response.error_code == ErrorCode.none
    assert {int(k.api_key) for k in response.api_keys} == {int(k) for k in ADVERTISED}


def _check_fallback(data: bytes, correlation_id: int) -> None:
    # Response header v0 (correlation id only), then an ApiVersions v0 body.
    (got,) = struct.unpack_from(">i", data)
    assert got == correlation_id
    body, consumed = entity_reader(ApiVersionsResponseV0)(data, 4)
    assert 4 + consumed == len(data)  # kio returns the bytes it read
    assert body.error_code == ErrorCode.unsupported_version
    assert int(ErrorCode.unsupported_version) == 35
    table = {int(k.api_key): (int(k.min_version), int(k.max_version)) for k in body.api_keys}
    assert table == {int(k): (v.min, v.max) for k, v in ADVERTISED.items()}


def test_api_versions_v4_gets_the_v0_fallback(broker: EmbeddedBroker) -> None:
    with Conn(broker.bootstrap) as conn:
        correlation_id = conn.send(
            ApiVersionsRequestV4(client_software_name="t", client_software_version="1")
        )
        _check_fallback(conn.recv_frame(), correlation_id)
        assert_still_serving(conn)


@pytest.mark.parametrize("version", [5, 100, 32767])
def test_api_versions_from_the_future_gets_the_fallback(
    broker: EmbeddedBroker, version: int
) -> None:
    # A body we cannot know: header v2 then junk. The fallback never reads past the prefix.
    header = struct.pack(">hhih", 18, version, 4242, -1) + b"\x00"
    with Conn(broker.bootstrap) as conn:
        conn.send_raw(struct.pack(">i", len(header) + 5) + header + b"\x01\x02\x03\x04\x05")
        _check_fallback(conn.recv_frame(), 4242)
        assert_still_serving(conn)


def _old_produce_request(version: int, correlation_id: int, acks: int, records: bytes) -> bytes:
    """Produce v0-2: request header v1, acks, timeout, [topic [partition records]]."""
    name = TOPIC.encode()
    body = struct.pack(">hi", acks, 5000) + struct.pack(">i", 1)
    body += struct.pack(">h", len(name)) + name + struct.pack(">i", 2)
    for index in (0, 1):
        body += struct.pack(">ii", index, len(records)) + records
    client = b"old"
    header = struct.pack(">hhih", 0, version, correlation_id, len(client)) + client
    return struct.pack(">i", len(header) + len(body)) + header + body


def _read_old_produce_response(version: int, data: bytes) -> tuple[int, list[tuple[int, int, int]]]:
    correlation_id, topics = struct.unpack_from(">ii", data)
    assert topics == 1
    position = 8
    (name_length,) = struct.unpack_from(">h", data, position)
    position += 2
    assert data[position : position + name_length] == TOPIC.encode()
    position += name_length
    (count,) = struct.unpack_from(">i", data, position)
    position += 4
    partitions = []
    for _ in range(count):
        partitions.append(struct.unpack_from(">ihq", data, position))
        position += 14
    if version == 1:
        (throttle,) = struct.unpack_from(">i", data, position)
        assert throttle == 0
        position += 4
    assert position == len(data)
    return correlation_id, partitions


@pytest.mark.parametrize("version", [0, 1])
def test_produce_v0_v1_unsupported_per_partition(broker: EmbeddedBroker, version: int) -> None:
    with Conn(broker.bootstrap) as conn:
        conn.send_raw(_old_produce_request(version, 31, 1, make_batch([b"old"])))
        correlation_id, partitions = _read_old_produce_response(version, conn.recv_frame())
        assert correlation_id == 31
        assert partitions == [(0, 35, -1), (1, 35, -1)]
        assert_still_serving(conn)
        _assert_topic_empty(conn)


def test_produce_v2_unsupported_per_partition(broker: EmbeddedBroker) -> None:
    with Conn(broker.bootstrap) as conn:
        conn.send_raw(_old_produce_request(2, 32, -1, make_batch([b"old"])))
        correlation_id, response = codec.decode_response(0, 3, conn.recv_frame())
        assert correlation_id == 32
        assert isinstance(response, ProduceResponseV3)
        [topic_response] = response.responses
        assert topic_response.name == TOPIC
        assert [(p.index, p.error_code) for p in topic_response.partition_responses] == [
            (0, ErrorCode.unsupported_version),
            (1, ErrorCode.unsupported_version),
        ]
        assert response.throttle_time == datetime.timedelta(0)
        assert_still_serving(conn)
        _assert_topic_empty(conn)


@pytest.mark.parametrize("version", [0, 1, 2])
def test_produce_v0_to_v2_with_acks_0_closes(broker: EmbeddedBroker, version: int) -> None:
    with Conn(broker.bootstrap) as conn:
        conn.send_raw(_old_produce_request(version, 33, 0, make_batch([b"old"])))
        assert conn.is_closed_by_peer()
    with Conn(broker.bootstrap) as conn:
        _assert_topic_empty(conn)


def _assert_topic_empty(conn: Conn) -> None:
    response = conn.request(fetch_request(TOPIC, [0, 1]))
    for partition in response.responses[0].partitions:
        assert partition.error_code == ErrorCode.none
        assert partition.high_watermark == 0
        assert not partition.records


def test_metadata_v13_gets_top_level_unsupported_version(broker: EmbeddedBroker) -> None:
    with Conn(broker.bootstrap) as conn:
        correlation_id = conn.send(
            MetadataRequestV13(
                topics=None,
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
        )
        got, response = conn.recv(MetadataResponseV13)
        assert got == correlation_id
        assert response.error_code == ErrorCode.unsupported_version
        assert response.topics == ()
        assert_still_serving(conn)


def test_unserved_api_with_error_code_gets_unsupported_version(broker: EmbeddedBroker) -> None:
    # BrokerHeartbeat: a KRaft controller API samsa serves at no version.
    with Conn(broker.bootstrap) as conn:
        correlation_id = conn.send(
            BrokerHeartbeatRequest(
                broker_id=BrokerId(1),
                current_metadata_offset=i64(0),
                want_fence=False,
                want_shut_down=False,
            )
        )
        got, response = conn.recv(BrokerHeartbeatResponse)
        assert got == correlation_id
        assert response.error_code == ErrorCode.unsupported_version
        assert_still_serving(conn)


@pytest.mark.parametrize(
    ("api_key", "version"),
    [
        # Below the served range, and neither kio nor samsa.protocol.legacy has a schema: old
        # message formats, which Kafka 3.9 down-converted and Kafka 4.0 closes on (KIP-896).
        (ApiKey.FETCH, 0),
        (ApiKey.FETCH, 3),
        (ApiKey.METADATA, 14),  # beyond anything kio knows
        (999, 0),  # no such api
        (-1, 0),
        (ApiKey.PRODUCE, -1),
    ],
)
def test_unknown_api_or_version_closes_the_connection(
    broker: EmbeddedBroker, api_key: int, version: int
) -> None:
    header = struct.pack(">hhih", api_key, version, 5, -1)
    body = b"\x00" * 16
    with Conn(broker.bootstrap) as conn:
        conn.send_raw(struct.pack(">i", len(header) + len(body)) + header + body)
        assert conn.is_closed_by_peer()
    with Conn(broker.bootstrap) as conn:
        assert_still_serving(conn)


def _unserved_known_versions() -> list[tuple[int, int]]:
    return [
        (api_key, version)
        for api_key in range(0, 100)
        for version in range(0, 20)
        if codec.request_type(api_key, version) is not None
        and not is_served(api_key, version)
        and api_key not in (ApiKey.API_VERSIONS, ApiKey.PRODUCE)  # tested above
    ]


UNSERVED = _unserved_known_versions()


def test_there_are_many_unserved_known_versions() -> None:
    assert len(UNSERVED) > 100
    assert (ApiKey.METADATA, 13) in UNSERVED


@pytest.mark.parametrize(("api_key", "version"), UNSERVED)
def test_every_unserved_known_version_replies_or_closes(
    broker: EmbeddedBroker, api_key: int, version: int
) -> None:
    """Every (api, version) kio knows but samsa does not serve: when the response has a top-level
    error code, a response carrying UNSUPPORTED_VERSION; otherwise a closed connection."""
    request = codec.request_type(api_key, version)
    response_schema = codec.response_type(api_key, version)
    assert request is not None and response_schema is not None
    has_error_code = "error_code" in {f.name for f in dataclasses.fields(response_schema)}
    header_schema = request.__header_schema__
    # A header of the right version and no body: the broker must not need to decode the body.
    buffer = io.BytesIO()
    entity_writer(header_schema)(
        buffer,
        header_schema(
            request_api_key=i16(api_key),
            request_api_version=i16(version),
            correlation_id=i32(77),
            client_id="x",
        ),
    )
    data = buffer.getvalue()
    with Conn(broker.bootstrap, timeout_s=5) as conn:
        conn.send_raw(struct.pack(">i", len(data)) + data)
        if not has_error_code:
            assert conn.is_closed_by_peer()
            return
        got, response = codec.decode_response(api_key, version, conn.recv_frame())
        assert got == 77
        assert response.error_code == ErrorCode.unsupported_version
        assert_still_serving(conn)
