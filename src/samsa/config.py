"""Broker settings, named as Kafka names them, read from a properties file and `--set NAME=VALUE`.

Only settings samsa acts on are accepted; an unknown name is an error, so a typo is not silently
ignored.

Names: a `BrokerConfig` field is its Kafka setting's name with `_` for `.` (so
`max_connections`, `offset_metadata_max_bytes`); everywhere else a limit is named what, unit,
then `_max` or `_min` (`timeout_ms_max`, `offset_metadata_bytes_max`, `inflated_bytes_max`), as
STYLE.md asks. Every default is a `BrokerConfig` default; the settings derived from it
(`LogConfig`, `TxnSettings`, `GroupSettings`) take theirs from `DEFAULTS`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from samsa.configdef import (
    LONG_MAX,
    BadValue,
    ConfigKey,
    ConfigType,
    Validator,
    Value,
    at_least,
    one_of,
    valid_values,
)

HOUR_MS = 3600 * 1000
# LegacyRecord.RECORD_OVERHEAD_V0: the smallest segment Kafka 3.9 allows (Kafka 4.0: 1 MiB).
SEGMENT_BYTES_MIN = 14


class ConfigError(ValueError):
    """A setting that does not exist or has an invalid value; raised to the caller of `load`."""


TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
CLIENT_AUTH = ("none", "requested", "required")
# Kafka's authorizers' class names; samsa's authorizer (samsa.security.acl) stands for both.
AUTHORIZER_CLASS_NAMES = (
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
)


def _mechanisms(name: str, value: Value) -> None:
    unknown = [n for n in value if n not in MECHANISMS] if isinstance(value, list) else []
    if unknown:
        raise BadValue(
            name, value, f"samsa offers {', '.join(MECHANISMS)}; not {', '.join(unknown)}"
        )


def _pem(name: str, value: Value) -> None:
    if str(value).upper() != "PEM":
        raise BadValue(name, value, "samsa reads PEM files only")


def _client_auth(name: str, value: Value) -> None:
    if str(value).lower() not in CLIENT_AUTH:
        raise BadValue(name, value, f"String must be one of: {', '.join(CLIENT_AUTH)}")


def _authorizer(name: str, value: Value) -> None:
    if value not in ("", *AUTHORIZER_CLASS_NAMES):
        raise BadValue(
            name, value, f"Value must be empty or one of: {', '.join(AUTHORIZER_CLASS_NAMES)}"
        )


def _host_port(name: str, value: Value) -> None:
    _, sep, port = str(value).rpartition(":")
    if value and (not sep or not port.isdigit() or int(port) > 65535):
        raise BadValue(name, value, "Value must be HOST:PORT with a port from 0 to 65535, or empty")


def _retention(name: str, value: Value) -> None:
    """`KafkaConfig.validateValues`: a retention time is unlimited (negative) or at least 1."""
    if value == 0:
        raise BadValue(name, value, "Value must be -1 (unlimited) or at least 1")


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    node_id: int = 1
    log_dirs: str = ""
    """`log.dirs`: samsa keeps its data in one dir, so at most one; empty: `log.dir`."""
    log_dir: str = "data"
    """`log.dir`: Kafka's default is /tmp/kafka-logs; samsa's is `data` under the working dir."""
    num_partitions: int = 1
    auto_create_topics_enable: bool = True
    log_segment_bytes: int = 1 << 30
    log_roll_ms: int = 168 * HOUR_MS
    log_retention_ms: int = 168 * HOUR_MS
    log_retention_bytes: int = -1
    log_retention_check_interval_ms: int = 300_000
    log_index_interval_bytes: int = 4096
    # 1: every acknowledged batch is fsynced first (group-committed). Larger: acks do not wait
    # for the disk, which is flushed every log.flush.interval.ms instead.
    log_flush_interval_messages: int = 1
    log_flush_interval_ms: int = 1000
    message_max_bytes: int = 1_048_588
    # samsa's own: the most bytes one produced batch's records may inflate to (see
    # docs/security.md); past it the batch is refused with CORRUPT_MESSAGE.
    message_decompressed_max_bytes: int = 16 * 1024 * 1024
    # Kafka's: CreateTime or LogAppendTime, and KIP-937's bounds on record timestamps
    # (Kafka 4.0's defaults: any age in the past, at most one hour in the future).
    log_message_timestamp_type: str = "CreateTime"
    log_message_timestamp_before_max_ms: int = 2**63 - 1
    log_message_timestamp_after_max_ms: int = HOUR_MS
    # --- connections and memory: docs/security.md, "Connections and memory"
    socket_request_max_bytes: int = 104_857_600
    """`socket.request.max.bytes`: the largest request frame; a larger size prefix closes the
    connection. Its buffer grows with the bytes that arrive, never with the size announced."""
    queued_max_requests: int = 500
    """`queued.max.requests`: per connection in samsa (broker-wide in Kafka), requests read but
    not yet answered; at it, reading from that connection pauses."""
    queued_max_request_bytes: int = 256 * 1024 * 1024
    """`queued.max.request.bytes`: broker-wide, bytes of requests read and not yet handled
    (from a request's first byte until the broker takes it whole; partial requests count); at
    it, connections stop reading, except that one at a time may finish the request it is
    partway through. Kafka's default is -1, unbounded (<= 0 still means that here); samsa's
    bounds it: 256 MiB holds a maximal request twice over and is over half a second of samsa's
    measured produce rate (430 MB/s), so only an overload or slow senders meet it. At least
    `socket.request.max.bytes`, as Kafka requires."""
    queued_max_response_bytes_per_connection: int = 16 * 1024 * 1024
    """`queued.max.response.bytes.per.connection` (samsa's own; Kafka has no such bound): bytes
    of one connection's responses built and not yet taken by its socket. At it, samsa stops
    reading that connection's requests and building its long-poll answers until the client
    reads; the one response that crosses it is still sent."""
    connections_max_idle_ms: int = 600_000
    """`connections.max.idle.ms`: a connection with no bytes in or out for this long is closed;
    -1: never (Kafka's default, 10 minutes)."""
    max_connections: int = 2_147_483_647
    """`max.connections`: connections open at once; a new one over it is closed at once (Kafka
    makes it wait in the listen backlog), counted and logged at most once per 10 s."""
    max_connections_per_ip: int = 2_147_483_647
    """`max.connections.per.ip`: the same, per client IP address."""
    max_connections_per_ip_overrides: str = ""
    """`max.connections.per.ip.overrides`: `ip:count,ip:count` (IP addresses; Kafka also takes
    host names)."""
    max_broker_partitions: int = 20_000
    """`max.broker.partitions` (KIP-578's name; Kafka never shipped it): partitions this broker
    may hold, all topics together; a CreateTopics or CreatePartitions past it is refused with
    POLICY_VIOLATION. Each costs about 3 KB of memory while idle, and descriptors only while in
    use."""
    log_open_files_max: int = 0
    """`log.open.files.max` (samsa's own): descriptors log files may hold at once, the least
    recently used closed beyond it (fsynced first if written since their last fsync); 0: a
    quarter of the process's open-files limit. See `samsa.server.descriptors`."""
    # ---
    fetch_max_bytes: int = 57_671_680
    # --- listeners and their security: docs/security.md, "Listeners", "TLS", "SASL"
    listeners: str = ""
    """`listeners`: `NAME://host:port,...`; empty: one PLAINTEXT listener on `--host`/`--port`."""
    advertised_listeners: str = ""
    controller_listener_names: str = ""
    """`controller.listener.names`: listeners of a KRaft controller, which samsa, a single node
    without one, does not bind (a stock server.properties names CONTROLLER here)."""
    listener_security_protocol_map: str = (
        "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
    )
    sasl_server_max_receive_size: int = 524_288
    """`sasl.server.max.receive.size`: the largest frame a SASL listener takes before the
    client has authenticated (Kafka's default); larger closes the connection."""
    sasl_enabled_mechanisms: str = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    """`sasl.enabled.mechanisms`: Kafka's default is GSSAPI (Kerberos), which samsa does not
    offer; samsa's default is every mechanism it has."""
    ssl_keystore_type: str = "PEM"
    """Only PEM: samsa reads no Java keystores (Kafka's default is JKS)."""
    ssl_keystore_location: str = ""
    ssl_keystore_certificate_chain: str = ""
    ssl_keystore_key: str = ""
    ssl_key_password: str = ""
    ssl_truststore_type: str = "PEM"
    ssl_truststore_location: str = ""
    ssl_truststore_certificates: str = ""
    ssl_client_auth: str = "none"
    ssl_principal_mapping_rules: str = "DEFAULT"
    delete_topic_enable: bool = True
    producer_id_expiration_ms: int = 24 * HOUR_MS
    transaction_max_timeout_ms: int = 900_000
    transactional_id_expiration_ms: int = 7 * 24 * HOUR_MS
    # Kafka checks every 10 s; samsa every second, so a hung producer holds readers back for at
    # most its transaction.timeout.ms plus one second.
    transaction_abort_timed_out_transaction_cleanup_interval_ms: int = 1000
    transaction_remove_expired_transaction_cleanup_interval_ms: int = HOUR_MS
    group_min_session_timeout_ms: int = 6_000
    group_max_session_timeout_ms: int = 1_800_000
    # Kafka waits 3 s before the first rebalance of an empty group; samsa, mostly run in tests,
    # does not wait by default (Kafka's docs recommend 0 for tests).
    group_initial_rebalance_delay_ms: int = 0
    offset_metadata_max_bytes: int = 4096
    # The consumer group protocol (KIP-848), Kafka's defaults.
    group_consumer_session_timeout_ms: int = 45_000
    group_consumer_heartbeat_interval_ms: int = 5_000
    group_consumer_assignors: str = "uniform,range"
    producer_id_expiration_check_interval_ms: int = 600_000
    # The log cleaner (`samsa.log.cleaner`): Kafka's settings. Kafka looks for work every
    # 15 s (`log.cleaner.backoff.ms`); samsa, mostly run in tests, every second.
    log_cleaner_enable: bool = True
    log_cleaner_backoff_ms: int = 1000
    log_cleaner_io_max_bytes_per_second: float = 1.7976931348623157e308
    # The coordinators' logs' segment size (Kafka's names). Only a rolled segment is compacted,
    # so the active one is what a restart replays beyond the live groups and ids: samsa's
    # default is 8 MiB, not Kafka's 100 MiB, which samsa would take some 10 s to replay
    # (docs/compaction.md, docs/benchmarks.md).
    offsets_topic_segment_bytes: int = 8 * 1024 * 1024
    transaction_state_log_segment_bytes: int = 8 * 1024 * 1024
    # samsa's own: the background check of every stored batch's CRC (`samsa.log.scrub`). A
    # pass starts at start-up and then every interval; reads are paced to the rate.
    log_scrubber_enable: bool = True
    log_scrubber_bytes_per_second: int = 16 * 1024 * 1024
    log_scrubber_interval_ms: int = 24 * HOUR_MS
    # --- authorization: docs/security.md, "Authorization (ACLs)"
    authorizer_class_name: str = ""
    """`authorizer.class.name`: empty, no authorization (every request allowed); Kafka's
    StandardAuthorizer or AclAuthorizer class name: ACLs enforced (`samsa.security.acl`)."""
    super_users: str = ""
    """`super.users`: principals allowed everything, separated by `;` (`User:admin;User:ops`)."""
    allow_everyone_if_no_acl_found: bool = False
    """`allow.everyone.if.no.acl.found`: a resource no ACL names is open to everyone."""
    prometheus_listener: str = ""
    """`prometheus.listener` (samsa's own): `host:port` where the broker serves its Prometheus
    metrics at `/metrics` (docs/metrics.md); port 0 picks a free one. Empty: no endpoint."""

    @property
    def durable(self) -> bool:
        return self.log_flush_interval_messages <= 1

    @property
    def data_dir(self) -> str:
        """The one data dir: `log.dirs` if set, else `log.dir` (Kafka's precedence)."""
        return self.log_dirs.strip() or self.log_dir.strip()


# Every default in one place: the settings of the log, the coordinators and the connections
# take theirs from here (`LogConfig`, `TxnSettings`, `GroupSettings`).
DEFAULTS = BrokerConfig()

INT, LONG, SHORT, BOOLEAN = ConfigType.INT, ConfigType.LONG, ConfigType.SHORT, ConfigType.BOOLEAN
STRING, LIST, PASSWORD = ConfigType.STRING, ConfigType.LIST, ConfigType.PASSWORD
DOUBLE = ConfigType.DOUBLE
OWN = "samsa's own; Kafka has no such setting."
SMALL_INTERNAL_SEGMENTS = (
    "8 MiB (Kafka: 100 MiB): only rolled segments are compacted, and the active one is what a "
    "restart replays (docs/compaction.md)."
)


@dataclass(frozen=True, slots=True)
class Setting:
    """A broker setting samsa acts on: Kafka's type and valid values (`key`; its `default` is
    Kafka's, its `doc` where samsa differs from Kafka), and the `BrokerConfig` field it sets,
    through `scale` (hours to ms). Of synonyms (log.retention.hours, .minutes, .ms) the one with
    the highest `precedence` given wins, as in Kafka."""

    key: ConfigKey
    attribute: str
    scale: int = 1
    precedence: int = 0
    synonym: bool = False  # another name of a setting listed under its own name


def _text(value: object) -> str:
    """A value as a properties file or DescribeConfigs writes it."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _scaled(value: object, scale: int) -> str:
    """A default as its setting gives it: log.roll.hours' in hours."""
    return _text(value // scale if type(value) is int else value)


def _setting(
    name: str,
    kind: ConfigType,
    attribute: str,
    validator: Validator | None = None,
    differs: str = "",
    kafka_default: str | None = None,
    scale: int = 1,
    precedence: int = 0,
    synonym: bool = False,
) -> tuple[str, Setting]:
    if kafka_default is None:
        value = getattr(DEFAULTS, attribute)
        kafka_default = _scaled(value, scale)
    key = ConfigKey(name, kind, kafka_default, differs, validator)
    return name, Setting(key, attribute, scale, precedence, synonym)


_S = _setting
SETTINGS: dict[str, Setting] = dict(
    [
        _S(
            "node.id", INT, "node_id", at_least(0), "Kafka requires it; samsa's default is 1.", "-1"
        ),
        _S(
            "broker.id",
            INT,
            "node_id",
            at_least(0),
            "The older name of node.id.",
            "-1",
            synonym=True,
        ),
        _S(
            "log.dirs",
            STRING,
            "log_dirs",
            None,
            "One dir only: samsa is one node with one data dir.",
            "null",
        ),
        _S(
            "log.dir",
            STRING,
            "log_dir",
            None,
            "samsa's default is under the working dir.",
            "/tmp/kafka-logs",
        ),
        _S("num.partitions", INT, "num_partitions", at_least(1)),
        _S("auto.create.topics.enable", BOOLEAN, "auto_create_topics_enable"),
        _S("delete.topic.enable", BOOLEAN, "delete_topic_enable"),
        _S("log.segment.bytes", INT, "log_segment_bytes", at_least(SEGMENT_BYTES_MIN)),
        _S("log.roll.ms", LONG, "log_roll_ms", at_least(1), "", "null", precedence=1),
        _S("log.roll.hours", INT, "log_roll_ms", at_least(1), scale=HOUR_MS, synonym=True),
        _S("log.retention.ms", LONG, "log_retention_ms", _retention, "", "null", precedence=2),
        _S(
            "log.retention.minutes",
            INT,
            "log_retention_ms",
            _retention,
            "",
            "null",
            60_000,
            1,
            True,
        ),
        _S("log.retention.hours", INT, "log_retention_ms", _retention, scale=HOUR_MS, synonym=True),
        _S("log.retention.bytes", LONG, "log_retention_bytes"),
        _S("log.retention.check.interval.ms", LONG, "log_retention_check_interval_ms", at_least(1)),
        _S("log.index.interval.bytes", INT, "log_index_interval_bytes", at_least(0)),
        _S(
            "log.flush.interval.messages",
            LONG,
            "log_flush_interval_messages",
            at_least(1),
            "samsa's default, 1, fsyncs every acknowledged batch (group-committed) before the "
            "acknowledgement; more: acks do not wait for the disk, flushed every "
            "log.flush.interval.ms instead.",
            str(LONG_MAX),
        ),
        _S(
            "log.flush.interval.ms",
            LONG,
            "log_flush_interval_ms",
            at_least(0),
            "Kafka's default is null (log.flush.scheduler.interval.ms, never); samsa's 1000.",
            "null",
        ),
        _S("message.max.bytes", INT, "message_max_bytes", at_least(0)),
        _S(
            "message.decompressed.max.bytes",
            INT,
            "message_decompressed_max_bytes",
            at_least(1),
            OWN,
            "",
        ),
        _S(
            "log.message.timestamp.type",
            STRING,
            "log_message_timestamp_type",
            one_of(*TIMESTAMP_TYPES),
        ),
        _S(
            "log.message.timestamp.before.max.ms",
            LONG,
            "log_message_timestamp_before_max_ms",
            at_least(0),
        ),
        _S(
            "log.message.timestamp.after.max.ms",
            LONG,
            "log_message_timestamp_after_max_ms",
            at_least(0),
            "Kafka 4.0's default (one hour); Kafka 3.9's is unbounded.",
            str(LONG_MAX),
        ),
        _S("socket.request.max.bytes", INT, "socket_request_max_bytes", at_least(1)),
        _S(
            "queued.max.requests",
            INT,
            "queued_max_requests",
            at_least(1),
            "Per connection in samsa, broker-wide in Kafka.",
        ),
        _S(
            "queued.max.request.bytes",
            LONG,
            "queued_max_request_bytes",
            None,
            "Kafka's default is -1, unbounded (<= 0 still means that); samsa's is 256 MiB.",
            "-1",
        ),
        _S(
            "queued.max.response.bytes.per.connection",
            LONG,
            "queued_max_response_bytes_per_connection",
            at_least(1),
            OWN,
            "",
        ),
        _S("connections.max.idle.ms", LONG, "connections_max_idle_ms"),
        _S(
            "max.connections",
            INT,
            "max_connections",
            at_least(0),
            "A connection over it is closed at once (Kafka lets it wait).",
        ),
        _S("max.connections.per.ip", INT, "max_connections_per_ip", at_least(0)),
        _S(
            "max.connections.per.ip.overrides",
            STRING,
            "max_connections_per_ip_overrides",
            None,
            "IP addresses only; Kafka also takes host names.",
        ),
        _S("log.open.files.max", INT, "log_open_files_max", at_least(0), OWN, ""),
        _S(
            "max.broker.partitions",
            INT,
            "max_broker_partitions",
            at_least(1),
            "KIP-578's name; Kafka never shipped it.",
            "",
        ),
        _S("fetch.max.bytes", INT, "fetch_max_bytes", at_least(1024)),
        _S(
            "listeners",
            STRING,
            "listeners",
            None,
            "Empty: one PLAINTEXT listener on --host/--port (Kafka: PLAINTEXT://:9092).",
            "PLAINTEXT://:9092",
        ),
        _S("advertised.listeners", STRING, "advertised_listeners", None, "", "null"),
        _S("listener.security.protocol.map", STRING, "listener_security_protocol_map"),
        _S(
            "controller.listener.names",
            STRING,
            "controller_listener_names",
            None,
            "samsa has no controller: the listeners it names are not bound, and are left out "
            "of advertised.listeners.",
            "null",
        ),
        _S(
            "sasl.enabled.mechanisms",
            LIST,
            "sasl_enabled_mechanisms",
            _mechanisms,
            "Kafka's default is GSSAPI, which samsa lacks.",
            "GSSAPI",
        ),
        _S("sasl.server.max.receive.size", INT, "sasl_server_max_receive_size", at_least(1)),
        _S(
            "ssl.keystore.type",
            STRING,
            "ssl_keystore_type",
            _pem,
            "PEM only: samsa reads no Java keystores.",
            "JKS",
        ),
        _S("ssl.keystore.location", STRING, "ssl_keystore_location", None, "", "null"),
        _S(
            "ssl.keystore.certificate.chain",
            PASSWORD,
            "ssl_keystore_certificate_chain",
            None,
            "",
            "null",
        ),
        _S("ssl.keystore.key", PASSWORD, "ssl_keystore_key", None, "", "null"),
        _S("ssl.key.password", PASSWORD, "ssl_key_password", None, "", "null"),
        _S("ssl.truststore.type", STRING, "ssl_truststore_type", _pem, "PEM only.", "JKS"),
        _S("ssl.truststore.location", STRING, "ssl_truststore_location", None, "", "null"),
        _S(
            "ssl.truststore.certificates", PASSWORD, "ssl_truststore_certificates", None, "", "null"
        ),
        _S("ssl.client.auth", STRING, "ssl_client_auth", _client_auth),
        _S("ssl.principal.mapping.rules", STRING, "ssl_principal_mapping_rules"),
        _S("producer.id.expiration.ms", INT, "producer_id_expiration_ms", at_least(1)),
        _S(
            "producer.id.expiration.check.interval.ms",
            INT,
            "producer_id_expiration_check_interval_ms",
            at_least(1),
        ),
        _S("transaction.max.timeout.ms", INT, "transaction_max_timeout_ms", at_least(1)),
        _S("transactional.id.expiration.ms", INT, "transactional_id_expiration_ms", at_least(1)),
        _S(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            INT,
            "transaction_abort_timed_out_transaction_cleanup_interval_ms",
            at_least(1),
            "Kafka checks every 10 s; samsa every second.",
            "10000",
        ),
        _S(
            "transaction.remove.expired.transaction.cleanup.interval.ms",
            INT,
            "transaction_remove_expired_transaction_cleanup_interval_ms",
            at_least(1),
        ),
        _S("group.min.session.timeout.ms", INT, "group_min_session_timeout_ms"),
        _S("group.max.session.timeout.ms", INT, "group_max_session_timeout_ms"),
        _S(
            "group.initial.rebalance.delay.ms",
            INT,
            "group_initial_rebalance_delay_ms",
            None,
            "Kafka waits 3 s; samsa, mostly run in tests, does not (as Kafka advises for tests).",
            "3000",
        ),
        _S("offset.metadata.max.bytes", INT, "offset_metadata_max_bytes"),
        _S(
            "group.consumer.session.timeout.ms",
            INT,
            "group_consumer_session_timeout_ms",
            at_least(1),
        ),
        _S(
            "group.consumer.heartbeat.interval.ms",
            INT,
            "group_consumer_heartbeat_interval_ms",
            at_least(1),
        ),
        _S(
            "group.consumer.assignors",
            LIST,
            "group_consumer_assignors",
            None,
            "Short names (Kafka's default names the classes).",
            "uniform,range",
        ),
        _S("log.cleaner.enable", BOOLEAN, "log_cleaner_enable"),
        _S(
            "log.cleaner.backoff.ms",
            LONG,
            "log_cleaner_backoff_ms",
            at_least(0),
            "1 s (Kafka: 15 s): samsa runs mostly in tests, where compaction is awaited.",
            "15000",
        ),
        _S(
            "log.cleaner.io.max.bytes.per.second",
            DOUBLE,
            "log_cleaner_io_max_bytes_per_second",
        ),
        _S(
            "offsets.topic.segment.bytes",
            INT,
            "offsets_topic_segment_bytes",
            at_least(1),
            SMALL_INTERNAL_SEGMENTS,
            "104857600",
        ),
        _S(
            "transaction.state.log.segment.bytes",
            INT,
            "transaction_state_log_segment_bytes",
            at_least(1),
            SMALL_INTERNAL_SEGMENTS,
            "104857600",
        ),
        _S("log.scrubber.enable", BOOLEAN, "log_scrubber_enable", None, OWN, ""),
        _S(
            "log.scrubber.bytes.per.second",
            LONG,
            "log_scrubber_bytes_per_second",
            at_least(1),
            OWN,
            "",
        ),
        _S("log.scrubber.interval.ms", LONG, "log_scrubber_interval_ms", at_least(1), OWN, ""),
        _S(
            "authorizer.class.name",
            STRING,
            "authorizer_class_name",
            _authorizer,
            "Kafka's two authorizers' names only.",
            "",
        ),
        _S("super.users", STRING, "super_users", None, "", ""),
        _S("allow.everyone.if.no.acl.found", BOOLEAN, "allow_everyone_if_no_acl_found"),
        _S("prometheus.listener", STRING, "prometheus_listener", _host_port, OWN, ""),
    ]
)


def _na(
    name: str, kind: ConfigType, default: str, validator: Validator | None = None
) -> tuple[str, ConfigKey]:
    return name, ConfigKey(name, kind, default, "", validator)


# Kafka's settings that concern a cluster (controllers, replication, ISR) or a JVM broker's
# threads and socket buffers, which a single samsa node does not have: accepted (checked as
# Kafka checks them, so a stock server.properties starts samsa) and ignored, named in one
# warning at start. Other names Kafka has not are refused.
NOT_APPLICABLE: dict[str, ConfigKey] = dict(
    [
        _na("process.roles", LIST, "", one_of("broker", "controller")),
        _na("controller.quorum.voters", LIST, ""),
        _na("controller.quorum.bootstrap.servers", LIST, ""),
        _na("inter.broker.listener.name", STRING, "null"),
        _na(
            "security.inter.broker.protocol",
            STRING,
            "PLAINTEXT",
            one_of("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        ),
        _na("inter.broker.protocol.version", STRING, "3.9-IV0"),
        _na("sasl.mechanism.controller.protocol", STRING, "GSSAPI"),
        _na("sasl.mechanism.inter.broker.protocol", STRING, "GSSAPI"),
        _na("metadata.log.dir", STRING, "null"),
        _na("broker.rack", STRING, "null"),
        _na("default.replication.factor", INT, "1"),
        _na("min.insync.replicas", INT, "1", at_least(1)),
        _na("offsets.topic.replication.factor", SHORT, "3", at_least(1)),
        _na("offsets.topic.num.partitions", INT, "50", at_least(1)),
        _na("transaction.state.log.replication.factor", SHORT, "3", at_least(1)),
        _na("transaction.state.log.min.isr", INT, "2", at_least(1)),
        _na("transaction.state.log.num.partitions", INT, "50", at_least(1)),
        _na("share.coordinator.state.topic.replication.factor", SHORT, "3", at_least(1)),
        _na("share.coordinator.state.topic.min.isr", SHORT, "2", at_least(1)),
        _na("unclean.leader.election.enable", BOOLEAN, "false"),
        _na("auto.leader.rebalance.enable", BOOLEAN, "true"),
        _na("replica.lag.time.max.ms", LONG, "30000"),
        _na("num.replica.fetchers", INT, "1"),
        _na("num.network.threads", INT, "3", at_least(1)),
        _na("num.io.threads", INT, "8", at_least(1)),
        _na("background.threads", INT, "10", at_least(1)),
        _na("num.recovery.threads.per.data.dir", INT, "1", at_least(1)),
        _na("socket.send.buffer.bytes", INT, "102400"),
        _na("socket.receive.buffer.bytes", INT, "102400"),
        _na("zookeeper.connect", STRING, "null"),
        _na("zookeeper.connection.timeout.ms", INT, "null"),
    ]
)


def parse_properties(text: str) -> dict[str, str]:
    """Java properties, the subset Kafka's server.properties uses: `name=value` (or
    `name: value`), `#` and `!` comments."""
    result: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        # Java's rule: the name ends at the first '=' or ':' (listeners' values hold ':').
        cut = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if cut < 0:
            raise ConfigError(f"line {number}: expected name=value, got {raw!r}")
        name, value = line[:cut], line[cut + 1 :]
        result[name.strip()] = value.strip()
    return result


def parse_assignments(assignments: Iterable[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set takes NAME=VALUE, got {item!r}")
        result[name.strip()] = value.strip()
    return result


def not_applicable(settings: Mapping[str, str]) -> list[str]:
    """The names in `settings` that samsa accepts and ignores (`NOT_APPLICABLE`)."""
    return [name for name in settings if name in NOT_APPLICABLE]


def load(settings: Mapping[str, str], base: BrokerConfig | None = None) -> BrokerConfig:
    """`base` (the defaults) with `settings` laid over it, each checked as Kafka's ConfigDef
    checks it; `ConfigError` with Kafka's message ("Invalid value V for configuration N: ...")
    for the first bad one."""
    changes: dict[str, tuple[int, Any]] = {}
    for name, value in settings.items():
        try:
            if name in NOT_APPLICABLE:
                NOT_APPLICABLE[name].check(value)
                continue
            if name not in SETTINGS:
                raise ConfigError(f"unknown broker setting {name!r}")
            setting = SETTINGS[name]
            parsed = setting.key.check(value)
        except BadValue as exc:
            raise ConfigError(str(exc)) from None
        if isinstance(parsed, list):
            parsed = ",".join(parsed)
        elif isinstance(parsed, int) and not isinstance(parsed, bool):
            parsed = max(parsed, -1) if setting.key.validator is _retention else parsed
            parsed *= setting.scale
        earlier = changes.get(setting.attribute)
        if earlier is None or earlier[0] <= setting.precedence:
            changes[setting.attribute] = (setting.precedence, parsed)
    _same_node_id(settings)
    config = dataclasses.replace(
        base or BrokerConfig(), **{attribute: value for attribute, (_, value) in changes.items()}
    )
    _check(config)
    return config


def _same_node_id(settings: Mapping[str, str]) -> None:
    node_id, broker_id = settings.get("node.id"), settings.get("broker.id")
    if node_id is not None and broker_id is not None and node_id.strip() != broker_id.strip():
        raise ConfigError(
            f"node.id={settings['node.id']} and broker.id={settings['broker.id']} differ: "
            "give one, or the same value to both"
        )


def _check(config: BrokerConfig) -> None:
    """The rules between settings (Kafka's `KafkaConfig.validateValues`, for these ones)."""
    if 0 < config.queued_max_request_bytes < config.socket_request_max_bytes:
        raise ConfigError(
            f"queued.max.request.bytes={config.queued_max_request_bytes} must be at least "
            f"socket.request.max.bytes={config.socket_request_max_bytes} (or <= 0: unbounded)"
        )
    dirs = [d.strip() for d in config.log_dirs.split(",") if d.strip()]
    if len(dirs) > 1:
        raise ConfigError(
            f"log.dirs={config.log_dirs}: samsa keeps its data in one dir, {len(dirs)} are given"
        )
    if not config.data_dir:
        raise ConfigError("log.dir is empty: samsa needs a data dir (log.dirs or log.dir)")
    from samsa.security import listeners  # it reads this module's BrokerConfig

    listeners.check(config)
    overrides = connection_overrides(config)
    if config.max_connections_per_ip == 0 and not overrides:
        raise ConfigError(
            "max.connections.per.ip can be 0 only if max.connections.per.ip.overrides is set"
        )


def connection_overrides(config: BrokerConfig) -> dict[str, int]:
    """max.connections.per.ip.overrides as {normalised IP address: limit}."""
    overrides: dict[str, int] = {}
    for item in config.max_connections_per_ip_overrides.split(","):
        if not item.strip():
            continue
        host, _, count = item.strip().rpartition(":")
        try:
            address = ipaddress.ip_address(host.strip("[] "))
            limit = int(count)
        except ValueError:
            raise ConfigError(
                f"max.connections.per.ip.overrides: {item.strip()!r} is not IP:COUNT "
                "(samsa takes IP addresses here, not host names)"
            ) from None
        if limit < 0:
            raise ConfigError(f"max.connections.per.ip.overrides: {item.strip()!r}: count < 0")
        overrides[normalised_ip(str(address))] = limit
    return overrides


def normalised_ip(host: str) -> str:
    """One spelling per address: compressed, and IPv4-mapped IPv6 as plain IPv4."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


# Settings DescribeConfigs never shows (Kafka's PASSWORD type): null, marked sensitive.
SENSITIVE = frozenset({"ssl.keystore.key", "ssl.key.password"})


def broker_settings(config: BrokerConfig) -> dict[str, str]:
    """Every setting by its Kafka name, for DescribeConfigs."""
    values: dict[str, str] = {}
    for name, setting in SETTINGS.items():
        if setting.synonym:
            continue
        values[name] = _text(getattr(config, setting.attribute))
    return values


# What the valid values of samsa's own checks are, as docs/configuration.md writes them.
_VALID_TEXT: dict[object, str] = {
    _mechanisms: "list of " + ", ".join(MECHANISMS),
    _pem: "[PEM]",
    _client_auth: "[" + ", ".join(CLIENT_AUTH) + "]",
    _authorizer: "empty, or " + " or ".join(AUTHORIZER_CLASS_NAMES),
    _retention: "-1 (unlimited), [1,...]",
    _host_port: "empty, or HOST:PORT",
}


def _valid(key: ConfigKey) -> str:
    return _VALID_TEXT.get(key.validator) or valid_values(key.validator)


def reference() -> list[tuple[str, str, str, str, str, str]]:
    """docs/configuration.md's first table, a row per setting samsa acts on: name, type, valid
    values, samsa's default, Kafka's default, where samsa differs."""
    rows = []
    for name, setting in SETTINGS.items():
        key = setting.key
        samsa = _scaled(getattr(DEFAULTS, setting.attribute), setting.scale)
        rows.append((name, key.type.name.lower(), _valid(key), samsa, key.default, key.doc))
    return rows


def not_applicable_reference() -> list[tuple[str, str, str, str]]:
    """docs/configuration.md's second table: name, type, valid values, Kafka's default."""
    return [
        (name, key.type.name.lower(), _valid(key), key.default)
        for name, key in NOT_APPLICABLE.items()
    ]
