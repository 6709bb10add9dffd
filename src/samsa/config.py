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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

HOUR_MS = 3600 * 1000


class ConfigError(ValueError):
    """A setting that does not exist or has an invalid value; raised to the caller of `load`."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"expected true or false, got {value!r}")
    return lowered == "true"


def _str(value: str) -> str:
    return value.strip()


def _int(value: str) -> int:
    return int(value.strip())


def _non_negative(value: str) -> int:
    number = _int(value)
    if number < 0:
        raise ValueError(f"expected 0 or more, got {number}")
    return number


def _positive(value: str) -> int:
    number = _int(value)
    if number <= 0:
        raise ValueError(f"expected more than 0, got {number}")
    return number


TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")


def _rate(value: str) -> float:
    rate = float(value)
    if not rate > 0:
        raise ValueError("must be greater than 0")
    return rate


def _timestamp_type(value: str) -> str:
    if value.strip() not in TIMESTAMP_TYPES:
        raise ValueError(f"expected one of {', '.join(TIMESTAMP_TYPES)}")
    return value.strip()


MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
CLIENT_AUTH = ("none", "requested", "required")


def _mechanisms(value: str) -> str:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in MECHANISMS]
    if unknown:
        raise ValueError(f"samsa offers {', '.join(MECHANISMS)}; not {', '.join(unknown)}")
    return ",".join(names)


def _pem(value: str) -> str:
    if value.strip().upper() != "PEM":
        raise ValueError("samsa reads PEM files only (ssl.keystore.type=PEM)")
    return "PEM"


def _client_auth(value: str) -> str:
    if value.strip().lower() not in CLIENT_AUTH:
        raise ValueError(f"expected one of {', '.join(CLIENT_AUTH)}")
    return value.strip().lower()


# Kafka's authorizers' class names; samsa's authorizer (samsa.security.acl) stands for both.
AUTHORIZER_CLASS_NAMES = (
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
)


def _authorizer(value: str) -> str:
    if value.strip() not in ("", *AUTHORIZER_CLASS_NAMES):
        raise ValueError(f"expected empty or one of {', '.join(AUTHORIZER_CLASS_NAMES)}")
    return value.strip()


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    node_id: int = 1
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
    # samsa's own: the background check of every stored batch's CRC (`samsa.log.scrub`). A
    # pass starts at start-up and then every interval; reads are paced to the rate.
    # The log cleaner (`samsa.log.cleaner`): Kafka's settings. Kafka looks for work every
    # 15 s (`log.cleaner.backoff.ms`); samsa, mostly run in tests, every second.
    log_cleaner_enable: bool = True
    # The coordinators' logs' segment size (Kafka's names). Only a rolled segment is compacted,
    # so the active one is what a restart replays beyond the live groups and ids: samsa's
    # default is 8 MiB, not Kafka's 100 MiB, which samsa would take some 10 s to replay
    # (docs/compaction.md, docs/benchmarks.md).
    offsets_topic_segment_bytes: int = 8 * 1024 * 1024
    transaction_state_log_segment_bytes: int = 8 * 1024 * 1024
    log_cleaner_backoff_ms: int = 1000
    log_cleaner_io_max_bytes_per_second: float = 1.7976931348623157e308
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

    @property
    def durable(self) -> bool:
        return self.log_flush_interval_messages <= 1


# Every default in one place: the settings of the log, the coordinators and the connections
# take theirs from here (`LogConfig`, `TxnSettings`, `GroupSettings`).
DEFAULTS = BrokerConfig()

_PARSERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "node.id": ("node_id", _int),
    "broker.id": ("node_id", _int),
    "num.partitions": ("num_partitions", _int),
    "auto.create.topics.enable": ("auto_create_topics_enable", _bool),
    "log.segment.bytes": ("log_segment_bytes", _int),
    "log.roll.ms": ("log_roll_ms", _int),
    "log.roll.hours": ("log_roll_ms", lambda v: _int(v) * HOUR_MS),
    "log.retention.ms": ("log_retention_ms", _int),
    "log.retention.minutes": ("log_retention_ms", lambda v: _int(v) * 60_000),
    "log.retention.hours": ("log_retention_ms", lambda v: _int(v) * HOUR_MS),
    "log.retention.bytes": ("log_retention_bytes", _int),
    "log.retention.check.interval.ms": ("log_retention_check_interval_ms", _int),
    "log.index.interval.bytes": ("log_index_interval_bytes", _int),
    "log.flush.interval.messages": ("log_flush_interval_messages", _int),
    "log.flush.interval.ms": ("log_flush_interval_ms", _int),
    "message.max.bytes": ("message_max_bytes", _int),
    "message.decompressed.max.bytes": ("message_decompressed_max_bytes", _positive),
    "log.message.timestamp.type": ("log_message_timestamp_type", _timestamp_type),
    "log.message.timestamp.before.max.ms": ("log_message_timestamp_before_max_ms", _non_negative),
    "log.message.timestamp.after.max.ms": ("log_message_timestamp_after_max_ms", _non_negative),
    "socket.request.max.bytes": ("socket_request_max_bytes", _int),
    "queued.max.requests": ("queued_max_requests", _int),
    "queued.max.request.bytes": ("queued_max_request_bytes", _int),
    "queued.max.response.bytes.per.connection": ("queued_max_response_bytes_per_connection", _int),
    "connections.max.idle.ms": ("connections_max_idle_ms", _int),
    "max.connections": ("max_connections", _int),
    "max.connections.per.ip": ("max_connections_per_ip", _int),
    "max.connections.per.ip.overrides": ("max_connections_per_ip_overrides", _str),
    "log.open.files.max": ("log_open_files_max", _non_negative),
    "max.broker.partitions": ("max_broker_partitions", _positive),
    "fetch.max.bytes": ("fetch_max_bytes", _int),
    "listeners": ("listeners", _str),
    "advertised.listeners": ("advertised_listeners", _str),
    "listener.security.protocol.map": ("listener_security_protocol_map", _str),
    "sasl.enabled.mechanisms": ("sasl_enabled_mechanisms", _mechanisms),
    "sasl.server.max.receive.size": ("sasl_server_max_receive_size", _positive),
    "ssl.keystore.type": ("ssl_keystore_type", _pem),
    "ssl.keystore.location": ("ssl_keystore_location", _str),
    "ssl.keystore.certificate.chain": ("ssl_keystore_certificate_chain", _str),
    "ssl.keystore.key": ("ssl_keystore_key", _str),
    "ssl.key.password": ("ssl_key_password", _str),
    "ssl.truststore.type": ("ssl_truststore_type", _pem),
    "ssl.truststore.location": ("ssl_truststore_location", _str),
    "ssl.truststore.certificates": ("ssl_truststore_certificates", _str),
    "ssl.client.auth": ("ssl_client_auth", _client_auth),
    "ssl.principal.mapping.rules": ("ssl_principal_mapping_rules", _str),
    "delete.topic.enable": ("delete_topic_enable", _bool),
    "producer.id.expiration.ms": ("producer_id_expiration_ms", _int),
    "transaction.max.timeout.ms": ("transaction_max_timeout_ms", _int),
    "group.min.session.timeout.ms": ("group_min_session_timeout_ms", _int),
    "group.max.session.timeout.ms": ("group_max_session_timeout_ms", _int),
    "group.initial.rebalance.delay.ms": ("group_initial_rebalance_delay_ms", _int),
    "offset.metadata.max.bytes": ("offset_metadata_max_bytes", _int),
    "group.consumer.session.timeout.ms": ("group_consumer_session_timeout_ms", _positive),
    "group.consumer.heartbeat.interval.ms": ("group_consumer_heartbeat_interval_ms", _positive),
    "group.consumer.assignors": ("group_consumer_assignors", _str),
    "transactional.id.expiration.ms": ("transactional_id_expiration_ms", _int),
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": (
        "transaction_abort_timed_out_transaction_cleanup_interval_ms",
        _int,
    ),
    "transaction.remove.expired.transaction.cleanup.interval.ms": (
        "transaction_remove_expired_transaction_cleanup_interval_ms",
        _int,
    ),
    "producer.id.expiration.check.interval.ms": (
        "producer_id_expiration_check_interval_ms",
        _int,
    ),
    "log.cleaner.enable": ("log_cleaner_enable", _bool),
    "offsets.topic.segment.bytes": ("offsets_topic_segment_bytes", _positive),
    "transaction.state.log.segment.bytes": ("transaction_state_log_segment_bytes", _positive),
    "log.cleaner.backoff.ms": ("log_cleaner_backoff_ms", _non_negative),
    "log.cleaner.io.max.bytes.per.second": ("log_cleaner_io_max_bytes_per_second", _rate),
    "log.scrubber.enable": ("log_scrubber_enable", _bool),
    "log.scrubber.bytes.per.second": ("log_scrubber_bytes_per_second", _int),
    "log.scrubber.interval.ms": ("log_scrubber_interval_ms", _int),
    "authorizer.class.name": ("authorizer_class_name", _authorizer),
    "super.users": ("super_users", _str),
    "allow.everyone.if.no.acl.found": ("allow_everyone_if_no_acl_found", _bool),
}


def parse_properties(text: str) -> dict[str, str]:
    """Java properties, the subset Kafka's server.properties uses: `name=value`, `#` comments."""
    result: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"line {number}: expected name=value, got {raw!r}")
        result[name.strip()] = value.strip()
    return result


def parse_assignments(assignments: Iterable[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set takes NAME=VALUE, got {item!r}")
        result[name.strip()] = value.strip()
    return result


def load(settings: Mapping[str, str], base: BrokerConfig | None = None) -> BrokerConfig:
    changes: dict[str, Any] = {}
    for name, value in settings.items():
        if name not in _PARSERS:
            raise ConfigError(f"unknown broker setting {name!r}")
        attribute, parser = _PARSERS[name]
        try:
            changes[attribute] = parser(value)
        except ValueError as exc:
            raise ConfigError(f"{name}={value!r}: {exc}") from None
    config = dataclasses.replace(base or BrokerConfig(), **changes)
    _check(config)
    return config


def _check(config: BrokerConfig) -> None:
    """The rules between settings (Kafka's `KafkaConfig.validateValues`, for these ones)."""
    if 0 < config.queued_max_request_bytes < config.socket_request_max_bytes:
        raise ConfigError(
            f"queued.max.request.bytes={config.queued_max_request_bytes} must be at least "
            f"socket.request.max.bytes={config.socket_request_max_bytes} (or <= 0: unbounded)"
        )
    for name, value in (
        ("socket.request.max.bytes", config.socket_request_max_bytes),
        ("queued.max.requests", config.queued_max_requests),
        (
            "queued.max.response.bytes.per.connection",
            config.queued_max_response_bytes_per_connection,
        ),
    ):
        if value < 1:
            raise ConfigError(f"{name}={value} must be at least 1")
    if config.max_connections < 0 or config.max_connections_per_ip < 0:
        raise ConfigError("max.connections and max.connections.per.ip must be >= 0")
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
    for name, (attribute, _) in _PARSERS.items():
        if name in ("broker.id", "log.roll.hours", "log.retention.minutes", "log.retention.hours"):
            continue
        value = getattr(config, attribute)
        values[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return values
