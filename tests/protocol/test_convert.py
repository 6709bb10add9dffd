"""`samsa.protocol.versions.convert`: kio entities between versions of one API."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsRequestV0
from kio.schema.api_versions.v3.request import ApiVersionsRequest as ApiVersionsRequestV3
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v4.request import FetchPartition as FetchPartitionV4
from kio.schema.fetch.v4.request import FetchRequest as FetchRequestV4
from kio.schema.fetch.v4.request import FetchTopic as FetchTopicV4
from kio.schema.fetch.v12.request import FetchRequest as FetchRequestV12
from kio.schema.list_offsets.v1.request import ListOffsetsRequest as ListOffsetsRequestV1
from kio.schema.list_offsets.v7.request import ListOffsetsRequest as ListOffsetsRequestV7
from kio.schema.metadata.v10.response import MetadataResponse as MetadataResponseV10
from kio.schema.metadata.v12.response import MetadataResponse as MetadataResponseV12
from kio.schema.metadata.v12.response import (
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from kio.schema.produce.v3.response import ProduceResponse as ProduceResponseV3
from kio.schema.produce.v10.response import (
    PartitionProduceResponse,
    ProduceResponse,
    TopicProduceResponse,
)
from kio.schema.types import BrokerId, TopicName
from kio.static.primitive import Records, i8, i32, i32Timedelta, i64
from kio.static.protocol import Entity

from samsa.protocol import codec, versions
from samsa.protocol.apis import SERVED, ApiKey

PRODUCE_V10 = ProduceResponse(
    responses=(
        TopicProduceResponse(
            name=TopicName("t"),
            partition_responses=(
                PartitionProduceResponse(
                    index=i32(3),
                    error_code=ErrorCode.corrupt_message,
                    base_offset=i64(-1),
                    log_start_offset=i64(17),
                    record_errors=(),
                    error_message="bad crc",
                ),
            ),
        ),
    ),
    throttle_time=i32Timedelta.parse(datetime.timedelta(milliseconds=250)),
)


def test_the_same_version_is_returned_as_it_is() -> None:
    assert versions.convert(PRODUCE_V10, ProduceResponse) is PRODUCE_V10


def test_down_keeps_the_fields_the_version_has_and_drops_the_rest() -> None:
    v3 = versions.convert(PRODUCE_V10, ProduceResponseV3)
    partition = v3.responses[0].partition_responses[0]
    assert type(partition).__module__ == "kio.schema.produce.v3.response"
    assert (partition.index, partition.error_code, partition.base_offset) == (
        3,
        ErrorCode.corrupt_message,
        -1,
    )
    assert not hasattr(partition, "log_start_offset")
    assert v3.throttle_time == datetime.timedelta(milliseconds=250)


def test_a_field_only_an_older_version_has_gets_its_schema_default() -> None:
    v12 = MetadataResponseV12(
        throttle_time=i32Timedelta.parse(datetime.timedelta(0)), brokers=(), topics=()
    )
    assert versions.convert(v12, MetadataResponseV10).cluster_authorized_operations == -(2**31)


def test_up_fills_what_the_old_version_lacks_with_schema_or_implicit_defaults() -> None:
    v4 = FetchRequestV4(
        max_wait=i32Timedelta.parse(datetime.timedelta(milliseconds=500)),
        min_bytes=i32(1),
        max_bytes=i32(1000),
        isolation_level=i8(1),
        topics=(
            FetchTopicV4(
                topic=TopicName("t"),
                partitions=(
                    FetchPartitionV4(
                        partition=i32(2), fetch_offset=i64(7), partition_max_bytes=i32(99)
                    ),
                ),
            ),
        ),
    )
    v12 = versions.convert(v4, FetchRequestV12)
    assert (v12.max_bytes, v12.isolation_level) == (1000, 1)
    assert (v12.session_id, v12.session_epoch) == (0, -1)  # the schema's defaults
    assert v12.forgotten_topics_data == ()  # none in the schema: Kafka's empty array
    partition = v12.topics[0].partitions[0]
    assert (partition.partition, partition.fetch_offset, partition.current_leader_epoch) == (
        2,
        7,
        -1,
    )
    listed = versions.convert(
        ListOffsetsRequestV1(replica_id=BrokerId(-1), topics=()), ListOffsetsRequestV7
    )
    assert listed.isolation_level == 0
    assert versions.convert(ApiVersionsRequestV0(), ApiVersionsRequestV3).client_software_name == ""


def test_every_implicit_default_fits_its_field() -> None:
    """Each served request converted up from an instance of only defaults encodes."""
    for api_key, served in SERVED.items():
        top = codec.request_type(api_key, served.max)
        assert top is not None
        for version in range(served.min, served.max + 1):
            old = codec.request_type(api_key, version)
            assert old is not None
            codec.encode_request(1, "t", versions.convert(versions.default_instance(old), top))


st.register_type_strategy(Records, st.binary(max_size=64))  # kio registers all but this one


def _drop_free_versions(kind: str) -> list[tuple[type[Entity], type[Entity]]]:
    """(version, highest served version) pairs where converting up loses nothing."""
    load = codec.request_type if kind == "request" else codec.response_type
    pairs: list[tuple[type[Entity], type[Entity]]] = []
    for api_key, served in SERVED.items():
        top = load(api_key, served.max)
        for version in range(served.min, served.max):
            old = load(api_key, version)
            assert old is not None and top is not None
            if not versions.dropped(old, top):
                pairs.append((old, top))
    return pairs


@pytest.mark.parametrize(
    ("old", "top"),
    _drop_free_versions("request"),
    ids=lambda cls: f"{ApiKey(cls.__api_key__).name}-v{cls.__version__}",
)
@settings(max_examples=10, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_up_and_back_down_is_the_identity(
    old: type[Entity], top: type[Entity], data: st.DataObject
) -> None:
    value = data.draw(st.builds(old))
    assert versions.convert(versions.convert(value, top), old) == value


def test_dropped_names_nested_fields_too() -> None:
    assert versions.dropped(ProduceResponse, ProduceResponseV3) == [
        "responses.partition_responses.log_start_offset",
        "responses.partition_responses.record_errors",
        "responses.partition_responses.error_message",
        "responses.partition_responses.current_leader",
        "node_endpoints",
    ]


@pytest.mark.parametrize("version", range(0, 13))
def test_a_metadata_response_converts_to_every_version_and_round_trips(version: int) -> None:
    v12 = MetadataResponseV12(
        throttle_time=i32Timedelta.parse(datetime.timedelta(0)),
        brokers=(MetadataResponseBroker(node_id=BrokerId(1), host="h", port=i32(9092)),),
        cluster_id="c",
        controller_id=BrokerId(1),
        topics=(
            MetadataResponseTopic(
                error_code=ErrorCode.none,
                name=TopicName("t"),
                topic_id=None,
                partitions=(
                    MetadataResponsePartition(
                        error_code=ErrorCode.none,
                        partition_index=i32(0),
                        leader_id=BrokerId(1),
                        replica_nodes=(BrokerId(1),),
                    ),
                ),
            ),
        ),
    )
    schema = codec.response_type(ApiKey.METADATA, version)
    assert schema is not None
    data = codec.encode_response(42, versions.convert(v12, schema))
    correlation_id, decoded = codec.decode_response(ApiKey.METADATA, version, data[4:])
    assert correlation_id == 42
    assert decoded.topics[0].name == "t"
    assert decoded.topics[0].partitions[0].leader_id == 1
    assert decoded.brokers[0].port == 9092
