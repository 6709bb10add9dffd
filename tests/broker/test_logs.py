"""DeleteRecords and DescribeLogDirs on the wire, against a real (embedded) broker: every
served version, Kafka's errors for each partition, and what reads see afterwards."""

from __future__ import annotations

import os

import pytest
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.create_topics.v7.request import (
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
)
from kio.schema.delete_records.v0.request import DeleteRecordsPartition as DeleteRecordsPartitionV0
from kio.schema.delete_records.v0.request import DeleteRecordsRequest as DeleteRecordsRequestV0
from kio.schema.delete_records.v0.request import DeleteRecordsTopic as DeleteRecordsTopicV0
from kio.schema.delete_records.v2.request import (
    DeleteRecordsPartition,
    DeleteRecordsRequest,
    DeleteRecordsTopic,
)
from kio.schema.describe_log_dirs.v1.request import (
    DescribableLogDirTopic as DescribableLogDirTopicV1,
)
from kio.schema.describe_log_dirs.v1.request import DescribeLogDirsRequest as DescribeLogDirsV1
from kio.schema.describe_log_dirs.v4.request import DescribeLogDirsRequest as DescribeLogDirsV4
from kio.schema.errors import ErrorCode
from kio.schema.types import TopicName
from kio.static.primitive import i16, i32, i64

from samsa.protocol.batch_writer import record_batch
from samsa.protocol.legacy.describe_log_dirs.v0.request import (
    DescribableLogDirTopic as DescribableLogDirTopicV0,
)
from samsa.protocol.legacy.describe_log_dirs.v0.request import (
    DescribeLogDirsRequest as DescribeLogDirsV0,
)
from samsa.testing import EmbeddedBroker
from samsa.testing.wire import (
    REQUEST_TIMEOUT,
    Conn,
    create_topics_request,
    fetch_request,
    list_offsets_request,
    produce_request,
)

EARLIEST = -2


def create(
    conn: Conn, topic: str, partitions: int = 1, configs: dict[str, str] | None = None
) -> None:
    request = create_topics_request(topic, partitions)
    if configs:
        wanted = request.topics[0]
        request = CreateTopicsRequest(
            topics=(
                CreatableTopic(
                    name=wanted.name,
                    num_partitions=wanted.num_partitions,
                    replication_factor=wanted.replication_factor,
                    assignments=(),
                    configs=tuple(
                        CreatableTopicConfig(name=n, value=v) for n, v in (configs or {}).items()
                    ),
                ),
            ),
            timeout=REQUEST_TIMEOUT,
        )
    assert conn.request(request).topics[0].error_code == ErrorCode.none


def produce(conn: Conn, topic: str, count: int, partition: int = 0) -> None:
    for i in range(count):
        batch = record_batch([f"v{i}".encode()], timestamp_ms=1_700_000_000_000 + i)
        answer = conn.request(produce_request(topic, {partition: batch}))
        assert answer.responses[0].partition_responses[0].error_code == ErrorCode.none


def delete(conn: Conn, topic: str, offsets: dict[int, int]) -> dict[int, tuple[ErrorCode, int]]:
    """DeleteRecords v2: partition -> (error, low watermark)."""
    answer = conn.request(
        DeleteRecordsRequest(
            topics=(
                DeleteRecordsTopic(
                    name=TopicName(topic),
                    partitions=tuple(
                        DeleteRecordsPartition(partition_index=i32(p), offset=i64(o))
                        for p, o in offsets.items()
                    ),
                ),
            ),
            timeout=REQUEST_TIMEOUT,
        )
    )
    (result,) = answer.topics
    assert result.name == topic
    return {p.partition_index: (p.error_code, p.low_watermark) for p in result.partitions}


def earliest(conn: Conn, topic: str) -> int:
    answer = conn.request(list_offsets_request(topic, 0, EARLIEST))
    offset: int = answer.topics[0].partitions[0].offset
    return offset


@pytest.fixture
def conn(samsa_broker: EmbeddedBroker) -> Conn:
    return Conn(samsa_broker.bootstrap)


def test_delete_records_moves_the_log_start_for_reads(conn: Conn) -> None:
    create(conn, "dr")
    produce(conn, "dr", 10)
    assert delete(conn, "dr", {0: 4}) == {0: (ErrorCode.none, 4)}
    assert earliest(conn, "dr") == 4
    fetched = conn.request(fetch_request("dr", [0], offset=3)).responses[0].partitions[0]
    assert fetched.error_code == ErrorCode.offset_out_of_range
    assert fetched.log_start_offset == 4
    fetched = conn.request(fetch_request("dr", [0], offset=4)).responses[0].partitions[0]
    assert (fetched.error_code, fetched.log_start_offset) == (ErrorCode.none, 4)
    # Below the log start changes nothing: the low watermark is where the start is.
    assert delete(conn, "dr", {0: 2}) == {0: (ErrorCode.none, 4)}
    # -1 means the high watermark.
    assert delete(conn, "dr", {0: -1}) == {0: (ErrorCode.none, 10)}
    assert earliest(conn, "dr") == 10


def test_delete_records_errors_are_per_partition(conn: Conn) -> None:
    create(conn, "errs", partitions=2)
    create(conn, "compacted", configs={"cleanup.policy": "compact"})
    produce(conn, "errs", 3)
    assert delete(conn, "errs", {0: 4, 1: 0, 2: 0}) == {
        0: (ErrorCode.offset_out_of_range, -1),  # beyond the high watermark (3)
        1: (ErrorCode.none, 0),
        2: (ErrorCode.unknown_topic_or_partition, -1),
    }
    assert delete(conn, "errs", {1: -2}) == {1: (ErrorCode.offset_out_of_range, -1)}
    assert delete(conn, "nope", {0: 0}) == {0: (ErrorCode.unknown_topic_or_partition, -1)}
    assert delete(conn, "__consumer_offsets", {0: 0}) == {
        0: (ErrorCode.invalid_topic_exception, -1)
    }
    assert delete(conn, "compacted", {0: 0}) == {0: (ErrorCode.policy_violation, -1)}


def test_delete_records_v0(conn: Conn) -> None:
    create(conn, "old")
    produce(conn, "old", 5)
    answer = conn.request(
        DeleteRecordsRequestV0(
            topics=(
                DeleteRecordsTopicV0(
                    name=TopicName("old"),
                    partitions=(DeleteRecordsPartitionV0(partition_index=i32(0), offset=i64(2)),),
                ),
            ),
            timeout=REQUEST_TIMEOUT,
        )
    )
    partition = answer.topics[0].partitions[0]
    assert (partition.error_code, partition.low_watermark) == (ErrorCode.none, 2)
    assert earliest(conn, "old") == 2


def test_describe_log_dirs_lists_the_data_dir_and_its_partitions(
    samsa_broker: EmbeddedBroker, conn: Conn
) -> None:
    create(conn, "sized", partitions=2)
    produce(conn, "sized", 3, partition=1)
    answer = conn.request(DescribeLogDirsV4(topics=None))
    assert answer.error_code == ErrorCode.none
    (result,) = answer.results
    assert result.error_code == ErrorCode.none
    assert result.log_dir == os.path.abspath(samsa_broker.data_dir)
    assert 0 < result.usable_bytes <= result.total_bytes
    sizes = {
        (t.name, p.partition_index): (p.partition_size, p.offset_lag, p.is_future_key)
        for t in result.topics
        for p in t.partitions
    }
    assert sizes[("sized", 0)] == (0, 0, False)
    assert sizes[("sized", 1)][0] > 0
    assert ("__consumer_offsets", 0) in sizes
    # Asked for by name: those partitions only, unknown ones left out.
    answer = conn.request(
        DescribeLogDirsV1(
            topics=(
                DescribableLogDirTopicV1(topic=TopicName("sized"), partitions=(i32(1), i32(7))),
                DescribableLogDirTopicV1(topic=TopicName("nope"), partitions=(i32(0),)),
            )
        )
    )
    (result,) = answer.results
    assert [(t.name, [p.partition_index for p in t.partitions]) for t in result.topics] == [
        ("sized", [1])
    ]
    assert result.topics[0].partitions[0].partition_size == sizes[("sized", 1)][0]


def test_describe_log_dirs_v0(samsa_broker: EmbeddedBroker, conn: Conn) -> None:
    """v0, which Kafka 4.0 removed and 3.9 served: the same answer without the error code."""
    create(conn, "sized0", partitions=1)
    produce(conn, "sized0", 2, partition=0)
    answer = conn.request(
        DescribeLogDirsV0(
            topics=(DescribableLogDirTopicV0(topic=TopicName("sized0"), partitions=(i32(0),)),)
        )
    )
    (result,) = answer.results
    assert result.log_dir == os.path.abspath(samsa_broker.data_dir)
    ((name, sizes),) = [(t.name, [p.partition_size for p in t.partitions]) for t in result.topics]
    assert name == "sized0" and sizes[0] > 0


def test_every_new_version_is_served(conn: Conn) -> None:
    """v0-5 of DescribeLogDirs (v0 as Kafka 3.9) and v0-2 of DeleteRecords are advertised."""
    answer = conn.request(ApiVersionsRequest(client_software_name="t", client_software_version="1"))
    ranges = {k.api_key: (k.min_version, k.max_version) for k in answer.api_keys}
    assert ranges[i16(21)] == (0, 2)
    assert ranges[i16(35)] == (0, 5)
    assert ranges[i16(75)] == (0, 0)
    assert ranges[i16(16)] == (0, 5)
