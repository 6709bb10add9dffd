"""Topic and broker configs through real clients (issue 15): every Kafka topic config accepted
at creation and checked as Kafka checks it, AlterConfigs and IncrementalAlterConfigs on topics
and on the broker, DescribeConfigs with Kafka's sources and synonyms, persistence across a
restart, and configs that act at once."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)
from kafka.admin import ConfigResource as KafkaPythonResource
from kafka.admin import ConfigResourceType, KafkaAdminClient
from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest
from kio.schema.describe_configs.v4.request import DescribeConfigsRequest, DescribeConfigsResource
from kio.schema.errors import ErrorCode
from kio.schema.incremental_alter_configs.v1.request import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
)
from kio.schema.types import GroupId, TopicName
from kio.static.primitive import i8, i32, i32Timedelta

from samsa.testing import EmbeddedBroker
from samsa.testing.wire import Conn

from .support import DEADLINE_S, create_topic
from .test_admin import produce_one

pytestmark = pytest.mark.interop

# Every topic config Kafka 3.9 defines that samsa only stores, with a valid non-default value.
STORED_ONLY = {
    "compression.type": "zstd",
    "compression.gzip.level": "5",
    "compression.lz4.level": "12",
    "compression.zstd.level": "-5",
    "delete.retention.ms": "3600000",
    "file.delete.delay.ms": "1000",
    "flush.messages": "100",
    "flush.ms": "2000",
    "follower.replication.throttled.replicas": "0:1,1:1",
    "leader.replication.throttled.replicas": "*",
    "local.retention.bytes": "-2",
    "local.retention.ms": "-2",
    "max.compaction.lag.ms": "86400000",
    "message.downconversion.enable": "false",
    "message.format.version": "2.8",
    "message.timestamp.difference.max.ms": "5000",
    "min.cleanable.dirty.ratio": "0.25",
    "min.compaction.lag.ms": "1000",
    "min.insync.replicas": "1",
    "preallocate": "true",
    "remote.log.copy.disable": "false",
    "remote.log.delete.on.disable": "false",
    "remote.storage.enable": "false",
    "segment.index.bytes": "4096",
    "segment.jitter.ms": "100",
    "unclean.leader.election.enable": "true",
}
ACTING = {
    "cleanup.policy": "compact,delete",
    "index.interval.bytes": "8192",
    "max.message.bytes": "500000",
    "message.timestamp.after.max.ms": "60000",
    "message.timestamp.before.max.ms": "60000",
    "message.timestamp.type": "LogAppendTime",
    "retention.bytes": "1000000",
    "retention.ms": "3600000",
    "segment.bytes": "1048576",
    "segment.ms": "3600000",
}


@pytest.fixture
def broker(tmp_path: Any) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(data_dir=str(tmp_path / "data")) as running:
        yield running


@pytest.fixture
def admin(broker: EmbeddedBroker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def describe(admin: AdminClient, kind: ResourceType, name: str, **options: Any) -> dict[str, Any]:
    resource = ConfigResource(kind, name)
    futures = admin.describe_configs([resource], request_timeout=DEADLINE_S, **options)
    result: dict[str, Any] = futures[resource].result(timeout=DEADLINE_S)
    return result


def failure(future: Any) -> KafkaError:
    """The error an admin future failed with (the test fails if it succeeded)."""
    try:
        future.result(timeout=DEADLINE_S)
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        return error
    raise AssertionError("the admin request succeeded; an error was expected")


def incremental(
    admin: AdminClient,
    kind: ResourceType,
    name: str,
    changes: list[tuple[str, str | None, AlterConfigOpType]],
    validate_only: bool = False,
) -> Any:
    entries = [ConfigEntry(n, v, incremental_operation=op) for n, v, op in changes]
    resource = ConfigResource(kind, name, incremental_configs=entries)
    futures = admin.incremental_alter_configs(
        [resource], validate_only=validate_only, request_timeout=DEADLINE_S
    )
    return futures[resource]


def alter_on_wire(
    broker: EmbeddedBroker, kind: int, name: str, changes: list[tuple[str, str | None, int]]
) -> tuple[ErrorCode, str | None]:
    """IncrementalAlterConfigs sent as is: for what librdkafka will not send (the BROKER
    resource "", the cluster-wide default, or another broker's id)."""
    resource = AlterConfigsResource(
        resource_type=i8(kind),
        resource_name=name,
        configs=tuple(
            AlterableConfig(name=n, config_operation=i8(op), value=v) for n, v, op in changes
        ),
    )
    with Conn(broker.bootstrap) as conn:
        response = conn.request(
            IncrementalAlterConfigsRequest(resources=(resource,), validate_only=False)
        )
    result = response.responses[0]
    return result.error_code, result.error_message


def set_cluster_default(broker: EmbeddedBroker, name: str, value: str) -> None:
    assert alter_on_wire(broker, 4, "", [(name, value, 0)]) == (ErrorCode.none, None)


SET, DELETE = AlterConfigOpType.SET, AlterConfigOpType.DELETE
APPEND, SUBTRACT = AlterConfigOpType.APPEND, AlterConfigOpType.SUBTRACT
TOPIC, BROKER = ResourceType.TOPIC, ResourceType.BROKER


# ----------------------------------------------------------------- CreateTopics
def test_create_topic_with_every_kafka_topic_config(
    broker: EmbeddedBroker, admin: AdminClient
) -> None:
    create_topic(broker.bootstrap, "all-configs", 1, config={**STORED_ONLY, **ACTING})
    described = describe(admin, TOPIC, "all-configs")
    for name, value in {**STORED_ONLY, **ACTING}.items():
        assert described[name].value == value, name
        assert described[name].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, name
    # The deprecated message.format.version accepts any Kafka release, with or without a
    # sub-version, and more parts than the release has.
    for version in ("0.10.2", "0.10.2.1", "3.0-IV1", "3.9", "2.8.2"):
        create_topic(broker.bootstrap, f"format-{version}", 1, {"message.format.version": version})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("delete.retention.mss", "1", "Unknown topic config name: delete.retention.mss"),
        (
            "retention.ms",
            "soon",
            "Invalid value soon for configuration retention.ms: Not a number of type LONG",
        ),
        (
            "retention.ms",
            "-2",
            "Invalid value -2 for configuration retention.ms: Value must be at least -1",
        ),
        (
            "segment.bytes",
            "13",
            "Invalid value 13 for configuration segment.bytes: Value must be at least 14",
        ),
        (
            "max.message.bytes",
            "2147483648",
            "Invalid value 2147483648 for configuration max.message.bytes: "
            "Not a number of type INT",
        ),
        (
            "min.cleanable.dirty.ratio",
            "1.5",
            "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: "
            "Value must be no more than 1",
        ),
        (
            "cleanup.policy",
            "compact,forever",
            "Invalid value forever for configuration cleanup.policy: "
            "String must be one of: compact, delete",
        ),
        (
            "preallocate",
            "yes",
            "Invalid value yes for configuration preallocate: "
            "Expected value to be either true or false",
        ),
        (
            "compression.type",
            "brotli",
            "Invalid value brotli for configuration compression.type: String must be one "
            "of: uncompressed, zstd, lz4, snappy, gzip, producer",
        ),
        (
            "compression.gzip.level",
            "0",
            "Invalid value 0 for configuration compression.gzip.level: "
            "Value must be between 1 and 9 or equal to -1",
        ),
        (
            "message.format.version",
            "9.9",
            "Invalid value 9.9 for configuration message.format.version: "
            "Version 9.9 is not a valid version",
        ),
        (
            "leader.replication.throttled.replicas",
            "0-1",
            "Invalid value [0-1] for configuration leader.replication.throttled.replicas: "
            "leader.replication.throttled.replicas must be the literal '*' or a list of "
            "replicas in the following format: [partitionId]:[brokerId],[partitionId]:"
            "[brokerId],...",
        ),
        (
            "remote.storage.enable",
            "true",
            "Tiered Storage functionality is disabled in the broker. "
            "Topic cannot be configured with remote log storage.",
        ),
    ],
)
def test_create_topic_refuses_what_kafka_refuses(
    admin: AdminClient, name: str, value: str, message: str
) -> None:
    futures = admin.create_topics(
        [NewTopic("refused", 1, 1, config={name: value})], request_timeout=DEADLINE_S
    )
    error = failure(futures["refused"])
    assert error.code() == KafkaError.INVALID_CONFIG
    assert error.str() == message
    assert "refused" not in admin.list_topics(timeout=DEADLINE_S).topics


def test_compaction_lags_must_be_ordered(admin: AdminClient) -> None:
    config = {"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"}
    futures = admin.create_topics([NewTopic("lags", 1, 1, config=config)])
    error = failure(futures["lags"])
    assert error.code() == KafkaError.INVALID_CONFIG
    assert error.str() == (
        "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)"
    )


# ----------------------------------------------------------------- altering topics
def test_alter_configs_replaces_a_topics_whole_set(
    broker: EmbeddedBroker, admin: AdminClient
) -> None:
    create_topic(broker.bootstrap, "legacy", 1, {"retention.ms": "1000", "preallocate": "true"})
    resource = ConfigResource(TOPIC, "legacy", set_config={"segment.ms": "60000"})
    admin.alter_configs([resource], request_timeout=DEADLINE_S)[resource].result(DEADLINE_S)
    described = describe(admin, TOPIC, "legacy")
    assert described["segment.ms"].value == "60000"
    assert described["segment.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # Not named: removed, back to the broker's value.
    assert described["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert described["preallocate"].value == "false"

    bad = ConfigResource(TOPIC, "legacy", set_config={"segment.ms": "0"})
    error = failure(admin.alter_configs([bad], request_timeout=DEADLINE_S)[bad])
    assert error.code() == KafkaError.INVALID_CONFIG
    assert error.str() == "Invalid value 0 for configuration segment.ms: Value must be at least 1"
    assert describe(admin, TOPIC, "legacy")["segment.ms"].value == "60000"


def test_incremental_alter_configs_on_a_topic(broker: EmbeddedBroker, admin: AdminClient) -> None:
    create_topic(broker.bootstrap, "incremental", 1, {"retention.ms": "1000"})
    changes = [("segment.ms", "60000", SET), ("retention.ms", None, DELETE)]
    # validate_only: checked, answered, and nothing changes.
    assert incremental(admin, TOPIC, "incremental", changes, validate_only=True).result() is None
    described = describe(admin, TOPIC, "incremental")
    assert described["retention.ms"].value == "1000"
    assert described["segment.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    incremental(admin, TOPIC, "incremental", changes).result(DEADLINE_S)
    described = describe(admin, TOPIC, "incremental")
    assert described["segment.ms"].value == "60000"
    assert described["retention.ms"].value == str(7 * 24 * 3600 * 1000)
    assert described["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    # LIST configs take APPEND and SUBTRACT, starting from the default.
    incremental(admin, TOPIC, "incremental", [("cleanup.policy", "compact", APPEND)]).result()
    assert describe(admin, TOPIC, "incremental")["cleanup.policy"].value == "delete,compact"
    incremental(admin, TOPIC, "incremental", [("cleanup.policy", "delete", SUBTRACT)]).result()
    assert describe(admin, TOPIC, "incremental")["cleanup.policy"].value == "compact"

    error = failure(incremental(admin, TOPIC, "incremental", [("retention.ms", "5", APPEND)]))
    assert error.code() == KafkaError.INVALID_CONFIG
    assert error.str() == "Can't APPEND to key retention.ms because its type is not LIST."
    # One bad config refuses the resource's every change.
    error = failure(
        incremental(admin, TOPIC, "incremental", [("segment.ms", "1", SET), ("no.such", "1", SET)])
    )
    assert error.code() == KafkaError.INVALID_CONFIG
    assert error.str() == "Unknown topic config name: no.such"
    assert describe(admin, TOPIC, "incremental")["segment.ms"].value == "60000"
    # The validation of validate_only is the same.
    error = failure(
        incremental(admin, TOPIC, "incremental", [("retention.ms", "x", SET)], validate_only=True)
    )
    assert error.code() == KafkaError.INVALID_CONFIG

    missing = failure(incremental(admin, TOPIC, "no-such-topic", [("retention.ms", "1", SET)]))
    assert missing.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_lowering_max_message_bytes_acts_at_once(
    broker: EmbeddedBroker, admin: AdminClient
) -> None:
    create_topic(broker.bootstrap, "shrinking", 1)
    value = b"x" * 20_000
    error, _, offset = produce_one(broker.bootstrap, "shrinking", value)
    assert error is None and offset == 0
    incremental(admin, TOPIC, "shrinking", [("max.message.bytes", "10000", SET)]).result()
    error, _, offset = produce_one(broker.bootstrap, "shrinking", value, **{"linger.ms": 0})
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE
    # The broker's message.max.bytes, changed dynamically, acts on the topics that do not set
    # their own.
    create_topic(broker.bootstrap, "inheriting", 1)
    incremental(admin, BROKER, "1", [("message.max.bytes", "10000", SET)]).result()
    error, _, _ = produce_one(broker.bootstrap, "inheriting", value)
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE
    incremental(admin, BROKER, "1", [("message.max.bytes", None, DELETE)]).result()
    error, _, offset = produce_one(broker.bootstrap, "inheriting", value)
    assert error is None and offset == 0


# ----------------------------------------------------------------- the broker
def test_broker_dynamic_configs_and_their_sources(
    broker: EmbeddedBroker, admin: AdminClient
) -> None:
    create_topic(broker.bootstrap, "follows", 1)
    set_cluster_default(broker, "log.retention.ms", "7000")
    topic = describe(admin, TOPIC, "follows")
    assert topic["retention.ms"].value == "7000"
    assert topic["retention.ms"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    incremental(admin, BROKER, "1", [("log.retention.ms", "8000", SET)]).result()
    topic = describe(admin, TOPIC, "follows")
    entry = topic["retention.ms"]
    assert entry.value == "8000"
    assert entry.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    # librdkafka keys synonyms by name, so of log.retention.ms's three layers it keeps one;
    # test_describe_configs_on_the_wire reads them all.
    assert set(entry.synonyms) == {"log.retention.ms"}

    configs = describe(admin, BROKER, "1")
    assert configs["log.retention.ms"].value == "8000"
    assert configs["log.retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert not configs["log.retention.ms"].is_read_only
    assert configs["num.partitions"].is_read_only
    assert configs["num.partitions"].source == ConfigSource.DEFAULT_CONFIG.value
    request = DescribeConfigsRequest(
        resources=(
            DescribeConfigsResource(resource_type=i8(4), resource_name="", configuration_keys=None),
        ),
        include_synonyms=False,
        include_documentation=False,
    )
    with Conn(broker.bootstrap) as conn:
        defaults = conn.request(request).results[0].configs
    assert [(e.name, e.value, e.config_source) for e in defaults] == [
        ("log.retention.ms", "7000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
    ]

    # A topic default samsa has no setting of its own for is stored and inherited too.
    incremental(admin, BROKER, "1", [("log.cleaner.delete.retention.ms", "5000", SET)]).result()
    assert describe(admin, TOPIC, "follows")["delete.retention.ms"].value == "5000"

    error = failure(incremental(admin, BROKER, "1", [("num.partitions", "3", SET)]))
    assert error.code() == KafkaError.INVALID_REQUEST
    assert error.str() == "Cannot update these configs dynamically: Set(num.partitions)"
    error = failure(incremental(admin, BROKER, "1", [("log.retention.ms", "x", SET)]))
    assert error.code() == KafkaError.INVALID_REQUEST
    assert error.str() == (
        "Invalid value x for configuration log.retention.ms: Not a number of type LONG"
    )
    assert alter_on_wire(broker, 4, "7", [("log.retention.ms", "1", 0)]) == (
        ErrorCode.invalid_request,
        "Unexpected broker id, expected 1, but received 7",
    )
    # validate_only leaves the broker as it was.
    incremental(admin, BROKER, "1", [("log.retention.ms", "1", SET)], validate_only=True).result()
    assert describe(admin, BROKER, "1")["log.retention.ms"].value == "8000"


def test_configs_survive_a_restart(broker: EmbeddedBroker, admin: AdminClient) -> None:
    create_topic(broker.bootstrap, "kept", 1, {"delete.retention.ms": "1234"})
    incremental(admin, TOPIC, "kept", [("max.message.bytes", "10000", SET)]).result()
    incremental(admin, BROKER, "1", [("log.segment.bytes", "2000000", SET)]).result()
    set_cluster_default(broker, "compression.type", "lz4")
    broker.restart()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = describe(admin, TOPIC, "kept")
    assert topic["delete.retention.ms"].value == "1234"
    assert topic["max.message.bytes"].value == "10000"
    assert topic["segment.bytes"].value == "2000000"
    assert topic["segment.bytes"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert topic["compression.type"].value == "lz4"
    assert topic["compression.type"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    # ... and still act.
    error, _, _ = produce_one(broker.bootstrap, "kept", b"x" * 20_000)
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_describe_configs_on_the_wire(broker: EmbeddedBroker, admin: AdminClient) -> None:
    """What librdkafka does not show: every synonym, config types, documentation."""
    create_topic(broker.bootstrap, "typed", 1, {"retention.ms": "1000"})
    set_cluster_default(broker, "log.retention.ms", "7000")
    request = DescribeConfigsRequest(
        resources=(
            DescribeConfigsResource(
                resource_type=i8(2),
                resource_name="typed",
                configuration_keys=("retention.ms", "cleanup.policy", "preallocate"),
            ),
        ),
        include_synonyms=True,
        include_documentation=True,
    )
    with Conn(broker.bootstrap) as conn:
        response = conn.request(request)
    entries = {entry.name: entry for entry in response.results[0].configs}
    assert set(entries) == {"retention.ms", "cleanup.policy", "preallocate"}
    retention = entries["retention.ms"]
    assert [(s.name, s.value, s.source) for s in retention.synonyms] == [
        ("retention.ms", "1000", 1),
        ("log.retention.ms", "7000", 3),
        ("log.retention.ms", str(7 * 24 * 3600 * 1000), 5),
    ]
    # ConfigType: LONG 5, LIST 7, BOOLEAN 1.
    assert [entries[n].config_type for n in ("retention.ms", "cleanup.policy", "preallocate")] == [
        5,
        7,
        1,
    ]
    assert all(entry.documentation for entry in entries.values())
    assert not any(entry.read_only or entry.is_sensitive for entry in entries.values())


def test_kafka_python_alter_and_describe(broker: EmbeddedBroker) -> None:
    create_topic(broker.bootstrap, "kp", 1)
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        topic = KafkaPythonResource(ConfigResourceType.TOPIC, "kp", {"segment.ms": "5000"})
        client.alter_configs([topic])
        described = client.describe_configs([KafkaPythonResource(ConfigResourceType.TOPIC, "kp")])
    finally:
        client.close()
    assert described["topic"]["kp"]["segment.ms"]["value"] == "5000"


# ----------------------------------------------------------------- librdkafka's own tests
def test_librdkafka_0081_alter_configs(broker: EmbeddedBroker, admin: AdminClient) -> None:
    """The resources librdkafka's 0081-admin AlterConfigs and IncrementalAlterConfigs tests
    send, with the outcomes they expect of Kafka."""
    create_topic(broker.bootstrap, "t0081", 1)
    topic = {"compression.type": "gzip", "flush.ms": "12345678"}
    relogin = {"sasl.kerberos.min.time.before.relogin": "58000"}
    missing = {"compression.type": "lz4", "max.compaction.lag.ms": "3600000"}
    resources = [
        ConfigResource(TOPIC, "t0081", set_config=topic),
        ConfigResource(BROKER, "1", set_config=relogin),
        ConfigResource(TOPIC, "t0081-missing", set_config=missing),
    ]
    futures = admin.alter_configs(resources, request_timeout=DEADLINE_S)
    futures[resources[0]].result(DEADLINE_S)
    futures[resources[1]].result(DEADLINE_S)
    assert failure(futures[resources[2]]).code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    incremental_resources = [
        ConfigResource(
            kind,
            name,
            incremental_configs=[
                ConfigEntry(n, v, incremental_operation=SET) for n, v in c.items()
            ],
        )
        for kind, name, c in (
            (TOPIC, "t0081", topic),
            (BROKER, "1", relogin),
            (TOPIC, "t0081-missing", missing),
            (ResourceType.GROUP, "my-group", {"consumer.session.timeout.ms": "50000"}),
        )
    ]
    futures = admin.incremental_alter_configs(incremental_resources, request_timeout=DEADLINE_S)
    codes = [
        None if futures[r].exception() is None else failure(futures[r]).code()
        for r in incremental_resources
    ]
    assert codes == [
        None,
        None,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        None,  # a group need not exist to be given configs (KIP-848's group configs)
    ]
    # The test helper's calls: SET and APPEND, then DELETE and SUBTRACT, on a topic and on
    # the broker.
    for kind, name, first, second in (
        (TOPIC, "t0081", ("compression.type", "lz4"), ("cleanup.policy", "compact")),
        (BROKER, "1", ("background.threads", "9"), ("log.cleanup.policy", "compact")),
    ):
        incremental(admin, kind, name, [(*first, SET), (*second, APPEND)]).result(DEADLINE_S)
        described = describe(admin, kind, name)
        assert described[first[0]].value == first[1]
        assert described[second[0]].value == "delete,compact"
        incremental(admin, kind, name, [(*first, DELETE), (*second, SUBTRACT)]).result(DEADLINE_S)
        described = describe(admin, kind, name)
        assert described[second[0]].value == "delete"
    assert describe(admin, BROKER, "1")["sasl.kerberos.min.time.before.relogin"].value == "58000"


def test_group_configs_are_kept_described_and_given_to_the_members(
    broker: EmbeddedBroker, admin: AdminClient
) -> None:
    """KIP-848's group configs: set per group, described with their source, refused outside
    Kafka's bounds or by an unknown name, kept across a restart, and handed to the group's
    members in their next heartbeat."""
    group, interval = ResourceType.GROUP, "consumer.heartbeat.interval.ms"
    incremental(admin, group, "g-configs", [(interval, "6000", SET)]).result(DEADLINE_S)
    described = describe(admin, group, "g-configs")
    assert (described[interval].value, described[interval].source) == (
        "6000",
        ConfigSource.GROUP_CONFIG.value,
    )
    assert described["consumer.session.timeout.ms"].value == "45000"
    assert described["consumer.session.timeout.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    for name, value in ((interval, "4999"), ("consumer.session.timeout.ms", "60001"), ("x", "1")):
        refused = incremental(admin, group, "g-configs", [(name, value, SET)])
        assert failure(refused).code() == KafkaError.INVALID_CONFIG
    broker.restart()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert describe(admin, group, "g-configs")[interval].value == "6000"
    create_topic(broker.bootstrap, "g-configs-topic", 1)
    with Conn(broker.bootstrap) as conn:
        answer = conn.request(
            ConsumerGroupHeartbeatRequest(
                group_id=GroupId("g-configs"),
                member_id="member-1",
                member_epoch=i32(0),
                rebalance_timeout=i32Timedelta.parse(datetime.timedelta(seconds=30)),
                subscribed_topic_names=(TopicName("g-configs-topic"),),
                topic_partitions=(),
            )
        )
    assert answer.error_code == ErrorCode.none
    assert answer.heartbeat_interval == datetime.timedelta(milliseconds=6000)


def test_librdkafka_0011_compaction_appended_acts_at_once(
    broker: EmbeddedBroker, admin: AdminClient
) -> None:
    """0011-produce_batch: APPEND cleanup.policy=compact, and records without a key are
    refused (INVALID_RECORD); SUBTRACT it, and they are taken again."""
    create_topic(broker.bootstrap, "t0011", 1)
    incremental(admin, TOPIC, "t0011", [("cleanup.policy", "compact", APPEND)]).result()
    error, _, _ = produce_one(broker.bootstrap, "t0011", b"no key")
    assert error is not None and error.code() == KafkaError.INVALID_RECORD
    incremental(admin, TOPIC, "t0011", [("cleanup.policy", "compact", SUBTRACT)]).result()
    error, _, offset = produce_one(broker.bootstrap, "t0011", b"no key")
    assert error is None and offset == 0
