"""The versions Kafka 4.0 removed and Kafka 3.9 served (KIP-896, issue 15): samsa's generated
classes for them, and each one over the wire against a running broker, checked against what
Kafka 3.9's KafkaApis answers."""

from __future__ import annotations

import dataclasses
import datetime
import typing
from pathlib import Path

import pytest
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.types import BrokerId, GroupId, ProducerId, TopicName
from kio.static.primitive import i8, i16, i32, i32Timedelta, i64
from kio.static.protocol import Entity

from samsa.protocol import codec, versions
from samsa.protocol.legacy import generate
from samsa.protocol.legacy.create_topics.v0 import request as create_topics_v0
from samsa.protocol.legacy.create_topics.v1 import request as create_topics_v1
from samsa.protocol.legacy.delete_topics.v0.request import DeleteTopicsRequest as DeleteTopicsV0
from samsa.protocol.legacy.describe_configs.v0 import request as describe_configs_v0
from samsa.protocol.legacy.index import INDEX
from samsa.protocol.legacy.list_offsets.v0 import request as list_offsets_v0
from samsa.protocol.legacy.offset_commit.v0 import request as offset_commit_v0
from samsa.protocol.legacy.offset_commit.v1 import request as offset_commit_v1
from samsa.protocol.legacy.offset_fetch.v0 import request as offset_fetch_v0
from samsa.protocol.legacy.offset_for_leader_epoch.v0 import request as epoch_v0
from samsa.protocol.legacy.offset_for_leader_epoch.v1 import request as epoch_v1
from samsa.protocol.legacy.write_txn_markers.v0 import request as markers_v0
from samsa.testing import EmbeddedBroker

from .wire import Conn, create_topics_request, make_batch, produce_request

TOPIC = "legacy"
SCHEMAS = Path(__file__).resolve().parents[2].parent / "shared/reference/kafka-3.9-messages"
RESOURCE_TOPIC = 2
TIMEOUT = i32Timedelta.parse(datetime.timedelta(seconds=5))


@pytest.fixture(scope="module", autouse=True)
def topic(broker: EmbeddedBroker) -> None:
    with Conn(broker.bootstrap) as conn:
        assert conn.request(create_topics_request(TOPIC, 2)).topics[0].error_code == 0
        produced = conn.request(produce_request(TOPIC, {0: make_batch([b"a", b"b", b"c"])}))
        assert produced.responses[0].partition_responses[0].error_code == 0


# ------------------------------------------------------------------------- the classes
@pytest.mark.skipif(not SCHEMAS.is_dir(), reason=f"no copy of Kafka 3.9's schemas at {SCHEMAS}")
def test_the_committed_classes_are_what_the_generator_writes(tmp_path: Path) -> None:
    written = generate.generate(SCHEMAS, tmp_path)
    generate.format_files(written)
    for path in written:
        committed = generate.PACKAGE / path.relative_to(tmp_path)
        assert committed.read_text() == path.read_text(), f"{committed} is stale: regenerate"


def _lowest_kio(api_key: int, response: bool) -> type[Entity]:
    load = load_response_schema if response else load_request_schema
    for version in range(20):
        try:
            found: type[Entity] = load(api_key, version)
        except Exception:
            continue
        return found
    raise AssertionError(f"kio has no version of api {api_key}")


def _agree(legacy: type[Entity], kio: type[Entity], where: str) -> int:
    """Each field both classes have is the same field: type, wire type, default. The count."""
    ours, theirs = typing.get_type_hints(legacy), typing.get_type_hints(kio)
    by_name = {f.name: f for f in dataclasses.fields(kio)}
    count = 0
    for mine in dataclasses.fields(legacy):
        other = by_name.get(mine.name)
        if other is None:
            continue
        assert dict(mine.metadata) == dict(other.metadata), f"{where}.{mine.name}"
        assert mine.default == other.default, f"{where}.{mine.name}"
        inner = versions.nested_entity(ours[mine.name])
        other_inner = versions.nested_entity(theirs[other.name])
        if inner is not None and other_inner is not None:
            count += _agree(inner, other_inner, f"{where}.{mine.name}")
        else:
            assert str(ours[mine.name]) == str(theirs[other.name]), f"{where}.{mine.name}"
        count += 1
    return count


@pytest.mark.parametrize(("api_key", "version"), sorted(INDEX))
def test_a_generated_class_agrees_with_kio_on_every_field_they_share(
    api_key: int, version: int
) -> None:
    """What makes converting by field name work: the same name means the same field."""
    for response in (False, True):
        legacy = (codec.response_type if response else codec.request_type)(api_key, version)
        assert legacy is not None
        assert legacy.__version__ == version and legacy.__api_key__ == api_key
        assert not legacy.__flexible__
        assert _agree(legacy, _lowest_kio(api_key, response), legacy.__name__) > 0


def test_kio_is_asked_first() -> None:
    assert codec.request_type(32, 1) is load_request_schema(32, 1)
    assert codec.request_type(32, 0) is describe_configs_v0.DescribeConfigsRequest
    assert codec.request_type(0, 2) is None  # Produce v0-2 stay out: old message formats
    assert codec.request_type(1, 3) is None  # and so do Fetch v0-3


# ------------------------------------------------------------------------ over the wire
def _describe_configs(conn: Conn, version: int, name: str) -> typing.Any:
    request = describe_configs_v0.DescribeConfigsRequest(
        resources=(
            describe_configs_v0.DescribeConfigsResource(
                resource_type=i8(RESOURCE_TOPIC), resource_name=name, configuration_keys=None
            ),
        ),
    )
    payload = versions.convert(request, codec.request_type(32, version) or type(request))
    return conn.request(payload).results[0]


def test_describe_configs_v0_lists_what_v1_lists_and_is_default_is_false(
    broker: EmbeddedBroker,
) -> None:
    """Kafka 3.9 never sets IsDefault (nothing in its broker calls setIsDefault): a v0 client
    sees every config as not default, as Sarama 1.22 and kafka-python's (1, 0) mode do."""
    with Conn(broker.bootstrap) as conn:
        old = _describe_configs(conn, 0, TOPIC)
        new = _describe_configs(conn, 1, TOPIC)
        missing = _describe_configs(conn, 0, "no-such-topic")
    assert old.error_code == ErrorCode.none
    assert [(c.name, c.value, c.read_only) for c in old.configs] == [
        (c.name, c.value, c.read_only) for c in new.configs
    ]
    assert {c.name for c in old.configs} >= {"cleanup.policy", "retention.ms"}
    assert not any(c.is_default for c in old.configs)
    assert missing.error_code == ErrorCode.unknown_topic_or_partition


def _commit_v1(group: str, offset: int, topic: str = TOPIC) -> offset_commit_v1.OffsetCommitRequest:
    return offset_commit_v1.OffsetCommitRequest(
        group_id=GroupId(group),
        generation_id_or_member_epoch=i32(-1),
        member_id="",
        topics=(
            offset_commit_v1.OffsetCommitRequestTopic(
                name=TopicName(topic),
                partitions=(
                    offset_commit_v1.OffsetCommitRequestPartition(
                        partition_index=i32(0),
                        committed_offset=i64(offset),
                        commit_timestamp=i64(1_600_000_000_000),
                        committed_metadata="v1",
                    ),
                ),
            ),
        ),
    )


def _fetch(group: str, version: int) -> typing.Any:
    request = offset_fetch_v0.OffsetFetchRequest(
        group_id=GroupId(group),
        topics=(
            offset_fetch_v0.OffsetFetchRequestTopic(
                name=TopicName(TOPIC), partition_indexes=(i32(0), i32(1))
            ),
        ),
    )
    return versions.convert(request, codec.request_type(9, version) or type(request))


def test_offset_commit_v1_stores_what_offset_fetch_v1_reads(broker: EmbeddedBroker) -> None:
    """A commit outside any generation (-1, no member) to a group no member has joined: Kafka's
    coordinator stores it ("simple" consumers); the commit timestamp only decides expiry."""
    with Conn(broker.bootstrap) as conn:
        committed = conn.request(_commit_v1("old-group", 2))
        fetched = conn.request(_fetch("old-group", 1))
    assert committed.topics[0].partitions[0].error_code == ErrorCode.none
    partitions = fetched.topics[0].partitions
    assert [(p.partition_index, p.committed_offset, p.metadata) for p in partitions] == [
        (0, 2, "v1"),
        (1, -1, ""),
    ]
    assert all(p.error_code == ErrorCode.none for p in partitions)


def test_offset_commit_v1_to_an_unknown_topic(broker: EmbeddedBroker) -> None:
    with Conn(broker.bootstrap) as conn:
        committed = conn.request(_commit_v1("old-group", 2, topic="no-such-topic"))
    assert committed.topics[0].partitions[0].error_code == ErrorCode.unknown_topic_or_partition


def _commit_v0(group: str, topics: list[str]) -> offset_commit_v0.OffsetCommitRequest:
    return offset_commit_v0.OffsetCommitRequest(
        group_id=GroupId(group),
        topics=tuple(
            offset_commit_v0.OffsetCommitRequestTopic(
                name=TopicName(topic),
                partitions=(
                    offset_commit_v0.OffsetCommitRequestPartition(
                        partition_index=i32(0), committed_offset=i64(1), committed_metadata=None
                    ),
                ),
            )
            for topic in topics
        ),
    )


def test_offset_commit_and_fetch_v0_are_zookeeper_offsets_kraft_does_not_keep(
    broker: EmbeddedBroker,
) -> None:
    """KafkaApis (3.9) sends v0 to ZooKeeper; without one (KRaft, as samsa) every partition
    gets UNSUPPORTED_VERSION, unless no partition named exists. Nothing is stored."""
    with Conn(broker.bootstrap) as conn:
        assert conn.request(_commit_v1("zk-group", 3)).topics[0].partitions[0].error_code == 0
        committed = conn.request(_commit_v0("zk-group", [TOPIC, "no-such-topic"]))
        unknown = conn.request(_commit_v0("zk-group", ["no-such-topic"]))
        fetched_v0 = conn.request(_fetch("zk-group", 0))
        fetched_v1 = conn.request(_fetch("zk-group", 1))
    assert [(t.name, t.partitions[0].error_code) for t in committed.topics] == [
        (TOPIC, ErrorCode.unsupported_version),
        ("no-such-topic", ErrorCode.unsupported_version),
    ]
    assert unknown.topics[0].partitions[0].error_code == ErrorCode.unknown_topic_or_partition
    assert [
        (p.partition_index, p.committed_offset, p.metadata, p.error_code)
        for p in fetched_v0.topics[0].partitions
    ] == [(0, -1, "", ErrorCode.unsupported_version), (1, -1, "", ErrorCode.unsupported_version)]
    assert fetched_v1.topics[0].partitions[0].committed_offset == 3


def test_create_topics_v0_v1_and_delete_topics_v0(broker: EmbeddedBroker) -> None:
    def creatable(module: typing.Any, name: str) -> typing.Any:
        return module.CreatableTopic(
            name=TopicName(name),
            num_partitions=i32(3),
            replication_factor=i16(1),
            assignments=(),
            configs=(module.CreatableTopicConfig(name="retention.ms", value="1000"),),
        )

    with Conn(broker.bootstrap) as conn:
        made = conn.request(
            create_topics_v0.CreateTopicsRequest(
                topics=(creatable(create_topics_v0, "made-v0"),), timeout=TIMEOUT
            )
        )
        checked = conn.request(
            create_topics_v1.CreateTopicsRequest(
                topics=(creatable(create_topics_v1, "checked-v1"),),
                timeout=TIMEOUT,
                validate_only=True,
            )
        )
        again = conn.request(
            create_topics_v1.CreateTopicsRequest(
                topics=(creatable(create_topics_v1, "made-v0"),), timeout=TIMEOUT
            )
        )
        configs = _describe_configs(conn, 0, "made-v0").configs
        deleted = conn.request(
            DeleteTopicsV0(
                topic_names=(TopicName("made-v0"), TopicName("checked-v1")), timeout=TIMEOUT
            )
        )
    assert [(t.name, t.error_code) for t in made.topics] == [("made-v0", 0)]
    assert [(t.name, t.error_code, t.error_message) for t in checked.topics] == [
        ("checked-v1", 0, None)
    ]
    assert again.topics[0].error_code == ErrorCode.topic_already_exists
    assert again.topics[0].error_message is not None  # v1 carries the message
    assert ("retention.ms", "1000") in [(c.name, c.value) for c in configs]
    assert [(t.name, t.error_code) for t in deleted.responses] == [
        ("made-v0", ErrorCode.none),
        ("checked-v1", ErrorCode.unknown_topic_or_partition),  # validate_only made nothing
    ]


def _epoch_request(module: typing.Any, *partitions: int) -> typing.Any:
    return module.OffsetForLeaderEpochRequest(
        topics=(
            module.OffsetForLeaderTopic(
                topic=TopicName(TOPIC),
                partitions=tuple(
                    module.OffsetForLeaderPartition(partition=i32(p), leader_epoch=i32(0))
                    for p in partitions
                ),
            ),
        )
    )


@pytest.mark.parametrize("version", [0, 1])
def test_offset_for_leader_epoch_v0_v1(broker: EmbeddedBroker, version: int) -> None:
    """samsa's one leader epoch (0) ends at the log end; v0 answers without the epoch."""
    module = epoch_v0 if version == 0 else epoch_v1
    with Conn(broker.bootstrap) as conn:
        response = conn.request(_epoch_request(module, 0, 9))
    first, missing = response.topics[0].partitions
    assert (first.error_code, first.end_offset) == (ErrorCode.none, 3)
    assert missing.error_code == ErrorCode.unknown_topic_or_partition
    has_epoch = "leader_epoch" in {f.name for f in dataclasses.fields(type(first))}
    assert has_epoch == (version == 1)


def test_write_txn_markers_v0_answers_like_v1(broker: EmbeddedBroker) -> None:
    """Abort markers for a producer with no open transaction: v0 is v1 before flexible
    versions, and gets v1's answer."""
    request = markers_v0.WriteTxnMarkersRequest(
        markers=(
            markers_v0.WritableTxnMarker(
                producer_id=ProducerId(4242),
                producer_epoch=i16(0),
                transaction_result=False,
                topics=(
                    markers_v0.WritableTxnMarkerTopic(
                        name=TopicName(TOPIC), partition_indexes=(i32(1),)
                    ),
                ),
                coordinator_epoch=i32(0),
            ),
        )
    )
    newer = codec.request_type(27, 1)
    assert newer is not None
    with Conn(broker.bootstrap) as conn:
        old = conn.request(request)
        new = conn.request(versions.convert(request, newer))
    assert old.markers[0].topics[0].partitions[0].error_code == ErrorCode.none
    assert versions.convert(new, type(old)) == old


def _list_offsets_v0(*partitions: tuple[int, int, int], replica_id: int = -1) -> typing.Any:
    """(partition, timestamp, max_num_offsets) each."""
    return list_offsets_v0.ListOffsetsRequest(
        replica_id=BrokerId(replica_id),
        topics=(
            list_offsets_v0.ListOffsetsTopic(
                name=TopicName(TOPIC),
                partitions=tuple(
                    list_offsets_v0.ListOffsetsPartition(
                        partition_index=i32(p), timestamp=i64(t), max_num_offsets=i32(n)
                    )
                    for p, t, n in partitions
                ),
            ),
        ),
    )


def test_list_offsets_v0_lists_segment_starts_and_the_log_end_newest_first(
    broker: EmbeddedBroker,
) -> None:
    """Kafka 3.9's legacyFetchOffsetsBefore: each segment's start and, when the active segment
    holds records, the log end; from the newest at or before the timestamp, backwards."""
    later = 2**62
    with Conn(broker.bootstrap) as conn:
        response = conn.request(
            _list_offsets_v0(
                (0, -1, 5),  # latest: the log end, then the one segment's start
                (0, -1, 1),
                (0, -2, 5),  # earliest: the log start alone
                (0, later, 5),  # a time after every write: as latest
                (0, 0, 5),  # before anything was written: nothing
                (1, -1, 5),  # an empty partition: its active segment's start only
                (0, -3, 1),  # max timestamp: not a v0 timestamp
                (9, -1, 1),
                (0, -1, -1),
            )
        )
    assert [
        (p.partition_index, p.error_code, list(p.old_style_offsets))
        for p in response.topics[0].partitions
    ] == [
        (0, ErrorCode.none, [3, 0]),
        (0, ErrorCode.none, [3]),
        (0, ErrorCode.none, [0]),
        (0, ErrorCode.none, [3, 0]),
        (0, ErrorCode.none, []),
        (1, ErrorCode.none, [0]),
        (0, ErrorCode.unsupported_version, []),
        (9, ErrorCode.unknown_topic_or_partition, []),
        (0, ErrorCode.unknown_server_error, []),
    ]
