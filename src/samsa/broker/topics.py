"""Topics: their partitions' logs, ids and config overrides, persisted in `topics.json`.

Creating a topic makes its partition directories first and records it in `topics.json` (written
atomically) last, so a crash in between leaves only empty directories, which are removed on start.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from samsa.config import BrokerConfig
from samsa.log.partition import LogConfig, PartitionLog, partition_directory
from samsa.log.storage import Storage

_LEGAL_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
TOPIC_NAME_LENGTH_MAX = 249
PARTITIONS_MAX = 10_000

# Topic-level settings samsa honours, with the broker setting each one defaults to.
TOPIC_SETTINGS: dict[str, str] = {
    "cleanup.policy": "delete",
    "retention.ms": "log.retention.ms",
    "retention.bytes": "log.retention.bytes",
    "segment.bytes": "log.segment.bytes",
    "segment.ms": "log.roll.ms",
    "max.message.bytes": "message.max.bytes",
    "index.interval.bytes": "log.index.interval.bytes",
    "message.timestamp.type": "CreateTime",
    "min.insync.replicas": "1",
    "compression.type": "producer",
}


class TopicError(Exception):
    """A topic request that Kafka refuses with `error`; handlers put it in the response."""

    def __init__(self, error: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error = error


def check_topic_name(name: str) -> None:
    if not name or name in (".", ".."):
        raise TopicError(ErrorCode.invalid_topic_exception, f"illegal topic name {name!r}")
    if len(name) > TOPIC_NAME_LENGTH_MAX:
        raise TopicError(
            ErrorCode.invalid_topic_exception,
            f"topic name is {len(name)} characters, limit {TOPIC_NAME_LENGTH_MAX}",
        )
    if not _LEGAL_NAME.match(name):
        raise TopicError(
            ErrorCode.invalid_topic_exception,
            f"topic name {name!r} may contain only ASCII letters, digits, '.', '_' and '-'",
        )


@dataclass(slots=True)
class Topic:
    name: str
    topic_id: uuid.UUID
    configs: dict[str, str]
    partitions: list[PartitionLog] = field(default_factory=list)

    @property
    def is_internal(self) -> bool:
        return self.name.startswith("__")


class Topics:
    def __init__(self, storage: Storage, data_dir: str, config: BrokerConfig) -> None:
        self.storage = storage
        self.data_dir = data_dir
        self.config = config
        self.topics: dict[str, Topic] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.topics

    def __iter__(self) -> Iterator[Topic]:
        return iter(list(self.topics.values()))

    def get(self, name: str) -> Topic | None:
        return self.topics.get(name)

    def partition(self, name: str, index: int) -> PartitionLog | None:
        topic = self.topics.get(name)
        if topic is None or not 0 <= index < len(topic.partitions):
            return None
        return topic.partitions[index]

    def logs(self) -> Iterator[PartitionLog]:
        for topic in list(self.topics.values()):
            yield from topic.partitions

    # ----------------------------------------------------------------- settings
    def setting(self, topic: Topic, name: str) -> str:
        if name in topic.configs:
            return topic.configs[name]
        return self.default_setting(name)

    def default_setting(self, name: str) -> str:
        from samsa.config import broker_settings

        fallback = TOPIC_SETTINGS[name]
        return broker_settings(self.config).get(fallback, fallback)

    def log_config(self, topic: Topic) -> LogConfig:
        return LogConfig(
            segment_bytes=int(self.setting(topic, "segment.bytes")),
            segment_ms=int(self.setting(topic, "segment.ms")),
            retention_ms=int(self.setting(topic, "retention.ms")),
            retention_bytes=int(self.setting(topic, "retention.bytes")),
            index_interval_bytes=int(self.setting(topic, "index.interval.bytes")),
            durable=self.config.durable,
            producer_id_expiration_ms=self.config.producer_id_expiration_ms,
        )

    def check_configs(self, configs: Mapping[str, str | None]) -> dict[str, str]:
        checked: dict[str, str] = {}
        for name, value in configs.items():
            if name not in TOPIC_SETTINGS:
                raise TopicError(ErrorCode.invalid_config, f"unknown topic config {name!r}")
            if value is None:
                continue
            if name in (
                "retention.ms",
                "retention.bytes",
                "segment.bytes",
                "segment.ms",
                "max.message.bytes",
                "index.interval.bytes",
                "min.insync.replicas",
            ):
                try:
                    int(value)
                except ValueError:
                    raise TopicError(
                        ErrorCode.invalid_config, f"{name}={value!r} is not a number"
                    ) from None
            checked[name] = value
        return checked

    # ----------------------------------------------------------------- lifecycle
    def load(self, now_ms: int, recover: bool) -> None:
        raw = self.storage.read_all(self._metadata_path())
        entries = json.loads(raw) if raw else {}
        for name, entry in entries.items():
            topic = Topic(name, uuid.UUID(entry["id"]), dict(entry["configs"]))
            log_config = self.log_config(topic)
            for index in range(entry["partitions"]):
                directory = partition_directory(self.data_dir, name, index)
                topic.partitions.append(
                    PartitionLog.open(
                        self.storage, directory, name, index, log_config, now_ms, recover
                    )
                )
            self.topics[name] = topic

    def close(self) -> None:
        for log in self.logs():
            log.close()

    def create(
        self,
        name: str,
        partitions: int,
        configs: Mapping[str, str | None],
        now_ms: int,
        validate_only: bool = False,
    ) -> Topic:
        check_topic_name(name)
        if name in self.topics:
            raise TopicError(ErrorCode.topic_already_exists, f"topic {name!r} already exists")
        if partitions == -1:
            partitions = self.config.num_partitions
        if not 1 <= partitions <= PARTITIONS_MAX:
            raise TopicError(
                ErrorCode.invalid_partitions,
                f"{partitions} partitions; expected 1 to {PARTITIONS_MAX}",
            )
        topic = Topic(name, uuid.uuid4(), self.check_configs(configs))
        if validate_only:
            return topic
        self._add_partitions(topic, partitions, now_ms)
        self.topics[name] = topic
        self._save()
        return topic

    def create_partitions(self, name: str, count: int, now_ms: int, validate_only: bool) -> None:
        topic = self.topics.get(name)
        if topic is None:
            raise TopicError(ErrorCode.unknown_topic_or_partition, f"no topic {name!r}")
        if count <= len(topic.partitions):
            raise TopicError(
                ErrorCode.invalid_partitions,
                f"topic {name!r} has {len(topic.partitions)} partitions; {count} is not more",
            )
        if count > PARTITIONS_MAX:
            raise TopicError(ErrorCode.invalid_partitions, f"limit is {PARTITIONS_MAX}")
        if validate_only:
            return
        self._add_partitions(topic, count - len(topic.partitions), now_ms)
        self._save()

    def delete(self, name: str) -> Topic:
        topic = self.topics.pop(name, None)
        if topic is None:
            raise TopicError(ErrorCode.unknown_topic_or_partition, f"no topic {name!r}")
        self._save()
        for log in topic.partitions:
            log.delete()
        return topic

    def _add_partitions(self, topic: Topic, count: int, now_ms: int) -> None:
        log_config = self.log_config(topic)
        first = len(topic.partitions)
        for index in range(first, first + count):
            directory = partition_directory(self.data_dir, topic.name, index)
            self.storage.rmtree(directory)  # left over from a create that never completed
            topic.partitions.append(
                PartitionLog.open(
                    self.storage, directory, topic.name, index, log_config, now_ms, recover=False
                )
            )
        self.storage.sync_dir(self.data_dir)

    def _metadata_path(self) -> str:
        return os.path.join(self.data_dir, "topics.json")

    def _save(self) -> None:
        entries = {
            topic.name: {
                "id": str(topic.topic_id),
                "partitions": len(topic.partitions),
                "configs": topic.configs,
            }
            for topic in self.topics.values()
        }
        self.storage.write_atomic(self._metadata_path(), json.dumps(entries, indent=1).encode())
