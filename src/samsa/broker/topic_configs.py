"""Every topic config Kafka 3.9 defines (`LogConfig`, `TopicConfig`), with Kafka's types, valid
values and broker synonyms; which of them samsa acts on.

A topic accepts each of these, checked as Kafka checks it, and refuses any other name as Kafka
does ("Unknown topic config name: N", INVALID_CONFIG). The ones in `ACTING` change what samsa
does; the others are stored, described and kept across restarts, and change nothing (their
subject, replication, compaction, tiered storage or index sizing, is not samsa's; see
docs/compatibility.md, "Topic configs").

A topic config a topic does not set takes its value from its first broker synonym
(`ServerTopicConfigSynonyms`): a broker setting samsa has (`samsa.config.DEFAULTS`), one set
dynamically (AlterConfigs on the broker), or else Kafka's default, `ConfigKey.default`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from samsa.config import SEGMENT_BYTES_MIN
from samsa.configdef import (
    LONG_MAX,
    BadValue,
    ConfigKey,
    ConfigType,
    Validator,
    Value,
    at_least,
    between,
    one_of,
)

COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")
# Kafka's CompressionType levels (Deflater's for gzip, lz4-java's, zstd's).
GZIP_LEVELS, GZIP_DEFAULT_LEVEL = (1, 9), -1
_THROTTLED = "[partitionId]:[brokerId],[partitionId]:[brokerId],..."
# MetadataVersion's releases before 4.0, each with its "-IVn" sub-versions.
_RELEASES: dict[str, int] = {
    **{v: 0 for v in ("0.8.0", "0.8.1", "0.8.2", "0.9.0")},
    **{"0.10.0": 2, "0.10.1": 3, "0.10.2": 1, "0.11.0": 3, "1.0": 1, "1.1": 1, "2.0": 2},
    **{"2.1": 3, "2.2": 2, "2.3": 2, "2.4": 2, "2.5": 1, "2.6": 1, "2.7": 3, "2.8": 2},
    **{"3.0": 2, "3.1": 1, "3.2": 1, "3.3": 4, "3.4": 1, "3.5": 3, "3.6": 3, "3.7": 5},
    **{"3.8": 1, "3.9": 1},
}


def _gzip_level(name: str, value: Value) -> None:
    low, high = GZIP_LEVELS
    if isinstance(value, int) and (value > high or (value < low and value != GZIP_DEFAULT_LEVEL)):
        raise BadValue(
            name, value, f"Value must be between {low} and {high} or equal to {GZIP_DEFAULT_LEVEL}"
        )


def _throttled_replicas(name: str, value: Value) -> None:
    """`ThrottledReplicaListValidator`: `*`, or partition:broker pairs."""
    items = [each.strip() for each in value] if isinstance(value, list) else []
    if "".join(items) != "*" and not all(
        each == "" or (p.isdigit() and b.isdigit())
        for each in items
        for p, _, b in [each.partition(":")]
    ):
        raise BadValue(
            name,
            value,
            f"{name} must be the literal '*' or a list of replicas in the following format: "
            + _THROTTLED,
        )


def _metadata_version(name: str, value: Value) -> None:
    """`MetadataVersionValidator`: a release ("2.8", "0.10.2"; more parts are ignored) or a
    release with its sub-version ("3.0-IV1")."""
    text = str(value)
    parts = text.split(".")
    key = ".".join(parts[: 3 if text.startswith("0.") else 2])
    release, _, sub = key.partition("-IV")
    count = _RELEASES.get(release)
    valid = count is not None and (sub == "" or (sub.isdigit() and int(sub) < max(count, 1)))
    if not valid or (count == 0 and sub):
        raise BadValue(name, text, f"Version {text} is not a valid version")


@dataclass(frozen=True, slots=True)
class TopicConfig:
    key: ConfigKey
    # The broker configs it defaults to, first first (`ServerTopicConfigSynonyms`).
    synonyms: tuple[str, ...]


def _config(
    name: str,
    kind: ConfigType,
    default: object,
    doc: str,
    validator: Validator | None = None,
    synonyms: tuple[str, ...] = (),
) -> tuple[str, TopicConfig]:
    text = str(default).lower() if isinstance(default, bool) else str(default)
    return name, TopicConfig(ConfigKey(name, kind, text, doc, validator), synonyms)


INT, LONG, BOOLEAN = ConfigType.INT, ConfigType.LONG, ConfigType.BOOLEAN
STRING, LIST, DOUBLE = ConfigType.STRING, ConfigType.LIST, ConfigType.DOUBLE
WEEK_MS = 7 * 24 * 3600 * 1000

TOPIC_CONFIGS: dict[str, TopicConfig] = dict(
    [
        _config(
            "cleanup.policy",
            LIST,
            "delete",
            "delete: old segments are removed by retention; compact: every record needs a key.",
            one_of("compact", "delete"),
            ("log.cleanup.policy",),
        ),
        _config(
            "compression.type",
            STRING,
            "producer",
            "The codec stored batches should have (samsa stores batches as produced).",
            one_of(*COMPRESSION_TYPES),
            ("compression.type",),
        ),
        _config(
            "compression.gzip.level",
            INT,
            GZIP_DEFAULT_LEVEL,
            "The gzip level when compression.type is gzip.",
            _gzip_level,
            ("compression.gzip.level",),
        ),
        _config(
            "compression.lz4.level",
            INT,
            9,
            "The lz4 level when compression.type is lz4.",
            between(1, 17),
            ("compression.lz4.level",),
        ),
        _config(
            "compression.zstd.level",
            INT,
            3,
            "The zstd level when compression.type is zstd.",
            between(-131072, 22),
            ("compression.zstd.level",),
        ),
        _config(
            "delete.retention.ms",
            LONG,
            24 * 3600 * 1000,
            "How long tombstones are kept on a compacted topic.",
            at_least(0),
            ("log.cleaner.delete.retention.ms",),
        ),
        _config(
            "file.delete.delay.ms",
            LONG,
            60_000,
            "How long a deleted segment's files are kept before they are removed.",
            at_least(0),
            ("log.segment.delete.delay.ms",),
        ),
        _config(
            "flush.messages",
            LONG,
            LONG_MAX,
            "Messages written between two fsyncs of the log.",
            at_least(1),
            ("log.flush.interval.messages",),
        ),
        _config(
            "flush.ms",
            LONG,
            LONG_MAX,
            "Milliseconds between two fsyncs of the log.",
            at_least(0),
            ("log.flush.interval.ms", "log.flush.scheduler.interval.ms"),
        ),
        _config(
            "follower.replication.throttled.replicas",
            LIST,
            "",
            "Replicas whose follower replication is throttled.",
            _throttled_replicas,
        ),
        _config(
            "index.interval.bytes",
            INT,
            4096,
            "Bytes of batches between two entries of the offset index.",
            at_least(0),
            ("log.index.interval.bytes",),
        ),
        _config(
            "leader.replication.throttled.replicas",
            LIST,
            "",
            "Replicas whose leader replication is throttled.",
            _throttled_replicas,
        ),
        _config(
            "local.retention.bytes",
            LONG,
            -2,
            "With tiered storage, the bytes kept locally (-2: retention.bytes).",
            at_least(-2),
            ("log.local.retention.bytes",),
        ),
        _config(
            "local.retention.ms",
            LONG,
            -2,
            "With tiered storage, how long segments are kept locally (-2: retention.ms).",
            at_least(-2),
            ("log.local.retention.ms",),
        ),
        _config(
            "max.compaction.lag.ms",
            LONG,
            LONG_MAX,
            "The longest a record stays uncompacted.",
            at_least(1),
            ("log.cleaner.max.compaction.lag.ms",),
        ),
        _config(
            "max.message.bytes",
            INT,
            1_048_588,
            "The largest record batch the topic accepts, in bytes; a larger one is refused "
            "with MESSAGE_TOO_LARGE.",
            at_least(0),
            ("message.max.bytes",),
        ),
        _config(
            "message.downconversion.enable",
            BOOLEAN,
            True,
            "Whether old fetch versions may have batches down-converted.",
            None,
            ("log.message.downconversion.enable",),
        ),
        _config(
            "message.format.version",
            STRING,
            "3.0-IV1",
            "Deprecated; ignored since inter-broker protocol 3.0.",
            _metadata_version,
            ("log.message.format.version",),
        ),
        _config(
            "message.timestamp.after.max.ms",
            LONG,
            LONG_MAX,
            "How far in the future a CreateTime timestamp may be, in ms.",
            at_least(0),
            ("log.message.timestamp.after.max.ms",),
        ),
        _config(
            "message.timestamp.before.max.ms",
            LONG,
            LONG_MAX,
            "How far in the past a CreateTime timestamp may be, in ms.",
            at_least(0),
            ("log.message.timestamp.before.max.ms",),
        ),
        _config(
            "message.timestamp.difference.max.ms",
            LONG,
            LONG_MAX,
            "Deprecated: see message.timestamp.before.max.ms and after.max.ms.",
            at_least(0),
            ("log.message.timestamp.difference.max.ms",),
        ),
        _config(
            "message.timestamp.type",
            STRING,
            "CreateTime",
            "CreateTime: the producer's timestamps; LogAppendTime: the broker's.",
            one_of("CreateTime", "LogAppendTime"),
            ("log.message.timestamp.type",),
        ),
        _config(
            "min.cleanable.dirty.ratio",
            DOUBLE,
            0.5,
            "How dirty a log must be before it is compacted.",
            between(0, 1),
            ("log.cleaner.min.cleanable.ratio",),
        ),
        _config(
            "min.compaction.lag.ms",
            LONG,
            0,
            "The shortest a record stays uncompacted.",
            at_least(0),
            ("log.cleaner.min.compaction.lag.ms",),
        ),
        _config(
            "min.insync.replicas",
            INT,
            1,
            "Replicas that must have a write for acks=all.",
            at_least(1),
            ("min.insync.replicas",),
        ),
        _config(
            "preallocate",
            BOOLEAN,
            False,
            "Whether a new segment's file is allocated whole.",
            None,
            ("log.preallocate",),
        ),
        _config(
            "remote.log.copy.disable",
            BOOLEAN,
            False,
            "With tiered storage, stop copying segments to remote storage.",
        ),
        _config(
            "remote.log.delete.on.disable",
            BOOLEAN,
            False,
            "With tiered storage, delete remote data when it is disabled.",
        ),
        _config(
            "remote.storage.enable",
            BOOLEAN,
            False,
            "Tiered storage for this topic.",
        ),
        _config(
            "retention.bytes",
            LONG,
            -1,
            "The most bytes a partition keeps; older segments are removed (-1: no limit).",
            None,
            ("log.retention.bytes",),
        ),
        _config(
            "retention.ms",
            LONG,
            WEEK_MS,
            "How long a segment is kept after its newest record (-1: forever).",
            at_least(-1),
            ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
        ),
        _config(
            "segment.bytes",
            INT,
            1 << 30,
            "The size at which a partition's active segment is rolled.",
            at_least(SEGMENT_BYTES_MIN),
            ("log.segment.bytes",),
        ),
        _config(
            "segment.index.bytes",
            INT,
            10 * 1024 * 1024,
            "The largest an offset index file may grow.",
            at_least(4),
            ("log.index.size.max.bytes",),
        ),
        _config(
            "segment.jitter.ms",
            LONG,
            0,
            "A random delay subtracted from segment.ms.",
            at_least(0),
            ("log.roll.jitter.ms", "log.roll.jitter.hours"),
        ),
        _config(
            "segment.ms",
            LONG,
            WEEK_MS,
            "The age at which a partition's active segment is rolled.",
            at_least(1),
            ("log.roll.ms", "log.roll.hours"),
        ),
        _config(
            "unclean.leader.election.enable",
            BOOLEAN,
            False,
            "Whether a replica out of sync may become leader.",
            None,
            ("unclean.leader.election.enable",),
        ),
    ]
)

# The ones samsa acts on; the rest are stored and described only.
ACTING = frozenset(
    {
        "cleanup.policy",
        "delete.retention.ms",
        "max.compaction.lag.ms",
        "min.cleanable.dirty.ratio",
        "min.compaction.lag.ms",
        "index.interval.bytes",
        "max.message.bytes",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "message.timestamp.type",
        "retention.bytes",
        "retention.ms",
        "segment.bytes",
        "segment.ms",
    }
)

TIERED_STORAGE_DISABLED = (
    "Tiered Storage functionality is disabled in the broker. "
    "Topic cannot be configured with remote log storage."
)


class InvalidConfig(ValueError):
    """A topic config Kafka refuses with INVALID_CONFIG; the message is Kafka's."""


def check(configs: Mapping[str, str | None]) -> dict[str, str]:
    """A topic's whole set of configs, checked as Kafka's controller does (`LogConfig.validate`
    and the controller's null check); `InvalidConfig` if it would refuse them."""
    nulls = [name for name, value in configs.items() if value is None]
    if nulls:
        raise InvalidConfig(f"Null value not supported for topic configs: {','.join(nulls)}")
    checked = {name: value for name, value in configs.items() if value is not None}
    for name in checked:
        if name not in TOPIC_CONFIGS:
            raise InvalidConfig(f"Unknown topic config name: {name}")
    parsed: dict[str, Value] = {}
    for name, value in checked.items():
        try:
            parsed[name] = TOPIC_CONFIGS[name].key.check(value)
        except BadValue as exc:
            raise InvalidConfig(str(exc)) from None
    lag_min = parsed.get("min.compaction.lag.ms", 0)
    lag_max = parsed.get("max.compaction.lag.ms", LONG_MAX)
    if isinstance(lag_min, int) and isinstance(lag_max, int) and lag_min > lag_max:
        raise InvalidConfig(
            "conflict topic config setting min.compaction.lag.ms "
            f"({lag_min}) > max.compaction.lag.ms ({lag_max})"
        )
    if parsed.get("remote.storage.enable") is True:
        raise InvalidConfig(TIERED_STORAGE_DISABLED)
    return checked
