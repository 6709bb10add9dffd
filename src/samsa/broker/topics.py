"""Topics: their partitions' logs, ids and config overrides, persisted in `topics.json`.

Creating a topic makes its partition directories first and records it in `topics.json` (written
atomically) last, so a crash in between leaves directories without data and without an entry,
which the next start removes. Deleting one renames its directories to `<dir>.<id>-delete`
(Kafka's convention) first, then drops the entry, then removes them: a crash at any point
leaves either the whole topic or a deletion the next start finishes.

A partition directory is never ignored: one with data but no entry (a lost or damaged
`topics.json`) gets its entry rebuilt, with default configs and a WARNING, when the directory
names say unambiguously which partitions the topic has; otherwise the broker refuses to start.
A partition whose files are damaged (`CorruptLog`) is offline; every other one serves.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from samsa.broker import topic_configs
from samsa.broker.topic_configs import TOPIC_CONFIGS
from samsa.config import BrokerConfig, broker_settings
from samsa.log.compaction import CompactionConfig
from samsa.log.partition import CorruptLog, LogConfig, PartitionLog, partition_directory
from samsa.log.storage import Storage
from samsa.protocol.validation import RecordPolicy

log = logging.getLogger("samsa.broker")

_LEGAL_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
_PARTITION_DIR = re.compile(r"^(?P<topic>[a-zA-Z0-9._-]+)-(?P<partition>0|[1-9][0-9]*)$")
DELETE_SUFFIX = "-delete"
METADATA_FILE = "topics.json"


# Coordinator logs are kept whole: their state is their replay.
INTERNAL_TOPIC_CONFIGS = {
    "retention.ms": "-1",
    "cleanup.policy": "compact",
    "segment.bytes": str(100 * 1024 * 1024),
}

# topics.json: topic name -> {"id": str, "partitions": int, "configs": {name: value}}
Entries = dict[str, dict[str, Any]]


class DataDirError(Exception):
    """The data dir cannot be served as it is; the broker refuses to start and says why."""


TOPIC_NAME_LENGTH_MAX = 249
# Kafka's controller refuses a request that would write more than 10,000 records
# (`MAX_RECORDS_PER_USER_OP`, one per new partition) with POLICY_VIOLATION and this message,
# for every topic in the request. No one topic can have more partitions either.
PARTITIONS_PER_REQUEST_MAX = 10_000
PARTITIONS_MAX = PARTITIONS_PER_REQUEST_MAX
EXCESSIVE_BATCH = "Unable to perform excessively large batch operation."


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


def collision_key(name: str) -> str:
    """Kafka's metric names turn '.' into '_': two topics whose names then match collide."""
    return name.replace(".", "_")


@dataclass(slots=True)
class Topic:
    name: str
    topic_id: uuid.UUID
    configs: dict[str, str]
    partitions: list[PartitionLog] = field(default_factory=list)
    # What a produced batch must satisfy, resolved from the configs at first use and again
    # after they change (`Topics.reconfigure`, `Topics.alter`).
    record_policy: RecordPolicy | None = None

    @property
    def is_internal(self) -> bool:
        return self.name.startswith("__")


class Topics:
    def __init__(
        self,
        storage: Storage,
        data_dir: str,
        config: BrokerConfig,
        new_uuid: Callable[[], uuid.UUID],
    ) -> None:
        self.storage = storage
        self._new_uuid = new_uuid  # topic ids
        self.data_dir = data_dir
        self.config = config
        self.topics: dict[str, Topic] = {}
        # The broker's dynamic configs (`samsa.broker.dynamic`), for the topic defaults samsa
        # has no setting of its own for.
        self.dynamic: dict[str, str] = {}
        # Partitions being made off the loop (`build`), by topic: reserved against the limits
        # and against a second creation of the same name until `commit` or `release`.
        self.pending: dict[str, int] = {}

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
        """Every partition log that serves (offline ones are left alone by periodic work)."""
        for topic in list(self.topics.values()):
            yield from (log for log in topic.partitions if log.offline is None)

    def offline(self) -> list[PartitionLog]:
        return [p for topic in self.topics.values() for p in topic.partitions if p.offline]

    # ----------------------------------------------------------------- settings
    def setting(self, topic: Topic, name: str) -> str:
        if name in topic.configs:
            return topic.configs[name]
        return self.default_setting(name)

    def default_setting(self, name: str) -> str:
        """What topic config `name` is for a topic that does not set it: its first broker
        synonym's value, else Kafka's default."""
        spec = TOPIC_CONFIGS[name]
        synonym = spec.synonyms[0] if spec.synonyms else ""
        settings = broker_settings(self.config)
        if synonym in settings:
            return settings[synonym]
        return self.dynamic.get(synonym, spec.key.default)

    def policy(self, topic: Topic) -> RecordPolicy:
        """The produce-time rules of `topic` (LogValidator's inputs), resolved once."""
        if topic.record_policy is None:
            topic.record_policy = RecordPolicy(
                message_bytes_max=int(self.setting(topic, "max.message.bytes")),
                inflated_bytes_max=self.config.message_decompressed_max_bytes,
                log_append_time=self.setting(topic, "message.timestamp.type") == "LogAppendTime",
                timestamp_before_max_ms=int(self.setting(topic, "message.timestamp.before.max.ms")),
                timestamp_after_max_ms=int(self.setting(topic, "message.timestamp.after.max.ms")),
                compacted="compact" in _listed(self.setting(topic, "cleanup.policy")),
            )
        return topic.record_policy

    def log_config(self, topic: Topic) -> LogConfig:
        # The coordinators' logs are kept whole whatever the broker's retention defaults
        # (which a client can change with AlterConfigs): their state is their replay.
        keep_all = topic.is_internal
        policy = _listed(self.setting(topic, "cleanup.policy"))
        segment_bytes = int(self.setting(topic, "segment.bytes"))
        if topic.name == "__consumer_offsets":
            segment_bytes = self.config.offsets_topic_segment_bytes
        elif topic.name == "__transaction_state":
            segment_bytes = self.config.transaction_state_log_segment_bytes
        return LogConfig(
            segment_bytes=segment_bytes,
            segment_ms=int(self.setting(topic, "segment.ms")),
            retention_ms=-1 if keep_all else int(self.setting(topic, "retention.ms")),
            retention_bytes=-1 if keep_all else int(self.setting(topic, "retention.bytes")),
            index_interval_bytes=int(self.setting(topic, "index.interval.bytes")),
            durable=self.config.durable,
            producer_id_expiration_ms=self.config.producer_id_expiration_ms,
            inflated_bytes_max=self.config.message_decompressed_max_bytes,
            cleanup_delete="delete" in policy,
            compaction=CompactionConfig(
                compact="compact" in policy,
                delete_retention_ms=int(self.setting(topic, "delete.retention.ms")),
                min_compaction_lag_ms=int(self.setting(topic, "min.compaction.lag.ms")),
                max_compaction_lag_ms=int(self.setting(topic, "max.compaction.lag.ms")),
                min_cleanable_dirty_ratio=float(self.setting(topic, "min.cleanable.dirty.ratio")),
                segment_bytes=segment_bytes,
            ),
        )

    def check_configs(self, configs: Mapping[str, str | None]) -> dict[str, str]:
        try:
            return topic_configs.check(configs)
        except topic_configs.InvalidConfig as exc:
            raise TopicError(ErrorCode.invalid_config, str(exc)) from None

    def reconfigure(self, config: BrokerConfig, dynamic: Mapping[str, str]) -> None:
        """The broker's config changed (AlterConfigs on the broker): every topic follows."""
        self.config, self.dynamic = config, dict(dynamic)
        for topic in self.topics.values():
            self._refresh(topic)

    def alter(self, topic: Topic, configs: dict[str, str]) -> None:
        """Give `topic` these configs (checked by `check_configs`), in effect at once and
        recorded in topics.json; `TopicError` if that fails (the old ones stay)."""
        before, topic.configs = topic.configs, configs
        try:
            self._save()
        except OSError as exc:
            topic.configs = before
            raise TopicError(
                ErrorCode.kafka_storage_error, f"recording {topic.name!r}: {exc}"
            ) from exc
        self._refresh(topic)

    def _refresh(self, topic: Topic) -> None:
        topic.record_policy = None
        log_config = self.log_config(topic)
        for partition_log in topic.partitions:
            partition_log.config = log_config

    # ----------------------------------------------------------------- lifecycle
    def load(self, now_ms: int, recover: bool) -> None:
        raw = self.storage.read_all(self._metadata_path())
        try:
            entries = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise DataDirError(f"{self._metadata_path()} is not valid JSON ({exc})") from None
        entries = self._reconcile(entries)
        for name, entry in entries.items():
            topic = Topic(name, uuid.UUID(entry["id"]), dict(entry["configs"]))
            log_config = self.log_config(topic)
            for index in range(entry["partitions"]):
                topic.partitions.append(self._open(topic, index, log_config, now_ms, recover))
            self.topics[name] = topic

    def _open(
        self, topic: Topic, index: int, log_config: LogConfig, now_ms: int, recover: bool
    ) -> PartitionLog:
        directory = partition_directory(self.data_dir, topic.name, index)
        try:
            return PartitionLog.open(
                self.storage, directory, topic.name, index, log_config, now_ms, recover, False
            )
        except (CorruptLog, OSError) as exc:  # OSError: the disk failed the recovery itself
            log.error(
                "%s-%d is offline: %s; with the broker stopped, `samsa log repair --data-dir %s "
                "--topic %s --partition %d` keeps every intact batch",
                topic.name,
                index,
                exc,
                self.data_dir,
                topic.name,
                index,
            )
            return PartitionLog.offline_placeholder(
                self.storage, directory, topic.name, index, log_config, str(exc)
            )

    def _reconcile(self, entries: Entries) -> Entries:
        """Match the directories in the data dir with `topics.json`: finish interrupted
        deletions, remove what an interrupted creation left, rebuild lost entries."""
        found: dict[str, set[int]] = {}
        for name in self.storage.listdir(self.data_dir):
            path = os.path.join(self.data_dir, name)
            if name.endswith(DELETE_SUFFIX):
                entries = self._finish_delete(entries, name)
                self.storage.rmtree(path)
                continue
            match = _PARTITION_DIR.match(name)
            if match is None:
                continue
            if not self._holds_segments(path):
                continue  # not a partition directory (a file, or a stranger's directory)
            topic, index = match["topic"], int(match["partition"])
            listed = entries.get(topic)
            if listed is not None and index < int(listed["partitions"]):
                continue
            if not self._holds_data(path):
                log.warning("removing %s: left empty by a creation that never completed", path)
                self.storage.rmtree(path)
                continue
            found.setdefault(topic, set()).add(index)
        if not found:
            return entries
        return self._rebuild(entries, found)

    def _finish_delete(self, entries: Entries, name: str) -> Entries:
        """`<topic>-<p>.<id hex>-delete`: drop the topic's entry if it is still the same topic."""
        stem = name[: -len(DELETE_SUFFIX)]
        partition_dir, _, id_hex = stem.rpartition(".")
        match = _PARTITION_DIR.match(partition_dir)
        if match is None:
            return entries
        entry = entries.get(match["topic"])
        if entry is not None and uuid.UUID(entry["id"]).hex == id_hex:
            log.warning("finishing the interrupted deletion of topic %s", match["topic"])
            entries = {k: v for k, v in entries.items() if k != match["topic"]}
            self._save_entries(entries)
        return entries

    def _rebuild(self, entries: Entries, found: dict[str, set[int]]) -> Entries:
        rebuilt = dict(entries)
        for topic, indexes in sorted(found.items()):
            listed = entries.get(topic)
            first = 0 if listed is None else int(listed["partitions"])
            expected = set(range(first, max(indexes) + 1))
            if indexes != expected or check_name_quietly(topic) is not None:
                missing = sorted(expected - indexes)
                raise DataDirError(
                    f"{self._metadata_path()} does not list topic {topic!r}, and its partition "
                    f"directories cannot be matched to it (missing partitions {missing}); "
                    "restore topics.json or move the directories away"
                )
            if listed is None:
                rebuilt[topic] = {
                    "id": str(self._new_uuid()),
                    "partitions": max(indexes) + 1,
                    "configs": dict(INTERNAL_TOPIC_CONFIGS) if topic.startswith("__") else {},
                }
                log.warning(
                    "topic %s was missing from %s: rebuilt from its %d partition "
                    "director%s, with default configs (its own configs were lost)",
                    topic,
                    METADATA_FILE,
                    len(indexes),
                    "y" if len(indexes) == 1 else "ies",
                )
            else:
                rebuilt[topic] = {**listed, "partitions": max(indexes) + 1}
                log.warning(
                    "topic %s: partitions %s were missing from %s and are restored",
                    topic,
                    sorted(indexes),
                    METADATA_FILE,
                )
        self._save_entries(rebuilt)
        return rebuilt

    def _holds_segments(self, path: str) -> bool:
        try:
            return any(name.endswith(".log") for name in self.storage.listdir(path))
        except OSError:
            return False

    def _holds_data(self, path: str) -> bool:
        for name in self.storage.listdir(path):
            if name.endswith(".log"):
                data = self.storage.read_all(os.path.join(path, name))
                if data:
                    return True
        return False

    def close_files(self) -> None:
        for topic in list(self.topics.values()):
            for partition_log in topic.partitions:
                partition_log.close_files()

    def close(self) -> bool:
        """Close every log; False if one could not make its data durable."""
        durable = True
        for topic in list(self.topics.values()):
            for partition_log in topic.partitions:
                durable = partition_log.close() and durable
        return durable

    @property
    def partition_count(self) -> int:
        """Partitions on this broker, with those being made."""
        return sum(len(t.partitions) for t in self.topics.values()) + sum(self.pending.values())

    def create(
        self, name: str, partitions: int, configs: Mapping[str, str | None], now_ms: int
    ) -> Topic:
        """Create a topic here and now (auto-creation, internal topics): `plan`, `build` and
        `commit` in one step. CreateTopics builds off the event loop instead."""
        topic, count = self.plan(name, partitions, configs)
        self.reserve(name, count)
        built = self.build(topic, 0, count, now_ms)
        return self.commit(topic, 0, built)

    def plan(
        self, name: str, partitions: int, configs: Mapping[str, str | None]
    ) -> tuple[Topic, int]:
        """The topic a creation would make, and its partition count; `TopicError` if Kafka
        would refuse it. Nothing is reserved or written."""
        check_topic_name(name)
        if name in self.topics or name in self.pending:
            raise TopicError(ErrorCode.topic_already_exists, f"topic {name!r} already exists")
        key = collision_key(name)
        for other in (*self.topics, *self.pending):
            if collision_key(other) == key:
                raise TopicError(
                    ErrorCode.invalid_topic_exception,
                    f"topic {name!r} collides with existing topic {other!r} ('.' and '_' "
                    "are the same in metric names)",
                )
        if partitions == -1:
            partitions = self.config.num_partitions
        if not 1 <= partitions <= PARTITIONS_MAX:
            raise TopicError(
                ErrorCode.invalid_partitions,
                f"{partitions} partitions; expected 1 to {PARTITIONS_MAX}",
            )
        topic = Topic(name, self._new_uuid(), self.check_configs(configs))
        self.check_broker_room(partitions)
        return topic, partitions

    def plan_growth(self, name: str, count: int) -> tuple[Topic, int]:
        """The topic CreatePartitions would grow to `count`, and how many partitions it adds."""
        topic = self.topics.get(name)
        if topic is None:
            raise TopicError(ErrorCode.unknown_topic_or_partition, f"no topic {name!r}")
        if name in self.pending:
            raise TopicError(
                ErrorCode.reassignment_in_progress, f"partitions are being added to {name!r}"
            )
        if count <= len(topic.partitions):
            raise TopicError(
                ErrorCode.invalid_partitions,
                f"topic {name!r} has {len(topic.partitions)} partitions; {count} is not more",
            )
        if count > PARTITIONS_MAX:
            raise TopicError(ErrorCode.invalid_partitions, f"limit is {PARTITIONS_MAX}")
        _refuse_internal(topic, "add partitions to")
        added = count - len(topic.partitions)
        self.check_broker_room(added)
        return topic, added

    def check_broker_room(self, added: int) -> None:
        limit = self.config.max_broker_partitions
        if self.partition_count + added > limit:
            raise TopicError(
                ErrorCode.policy_violation,
                f"{added} more partitions would exceed max.broker.partitions={limit} "
                f"(this broker has {self.partition_count})",
            )

    def reserve(self, name: str, count: int) -> None:
        self.pending[name] = count

    def release(self, name: str) -> None:
        self.pending.pop(name, None)

    def build(self, topic: Topic, first: int, count: int, now_ms: int) -> list[PartitionLog]:
        """Make partitions `first` .. `first + count - 1` of `topic` on disk: the slow part of a
        creation, safe off the event loop (it touches storage only). On an OSError, what it
        made is removed again and the error propagates."""
        log_config = self.log_config(topic)
        built: list[PartitionLog] = []
        try:
            for index in range(first, first + count):
                directory = partition_directory(self.data_dir, topic.name, index)
                self.storage.rmtree(directory)  # left over from a create that never completed
                built.append(
                    PartitionLog.open(
                        self.storage,
                        directory,
                        topic.name,
                        index,
                        log_config,
                        now_ms,
                        recover=False,
                    )
                )
            self.storage.sync_dir(self.data_dir)
        except OSError:
            _remove(built)
            raise
        return built

    def commit(self, topic: Topic, first: int, built: list[PartitionLog]) -> Topic:
        """Make built partitions part of `topic` (a new topic, or one grown from `first`
        partitions) and record it in topics.json; `TopicError` if that fails, or if a grown
        topic was deleted meanwhile (then the built partitions are removed)."""
        self.release(topic.name)
        grown = first > 0
        if grown and self.topics.get(topic.name) is not topic:
            _remove(built)
            raise TopicError(
                ErrorCode.unknown_topic_or_partition, f"topic {topic.name!r} was deleted"
            )
        topic.partitions.extend(built)
        self.topics[topic.name] = topic
        self._refresh(topic)  # the configs may have changed while the partitions were made
        try:
            self._save()
        except OSError as exc:
            del topic.partitions[first:]
            if not grown:
                del self.topics[topic.name]
            _remove(built)
            raise TopicError(
                ErrorCode.kafka_storage_error, f"recording {topic.name!r}: {exc}"
            ) from exc
        return topic

    def delete(self, name: str) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            raise TopicError(ErrorCode.unknown_topic_or_partition, f"no topic {name!r}")
        _refuse_internal(topic, "delete")
        for partition_log in topic.partitions:
            partition_log.close_files()
            partition_log.deleted = True
            if self.storage.exists(partition_log.directory):
                doomed = f"{partition_log.directory}.{topic.topic_id.hex}{DELETE_SUFFIX}"
                self.storage.rename(partition_log.directory, doomed)
                partition_log.directory = doomed
        self.storage.sync_dir(self.data_dir)
        del self.topics[name]
        self._save()
        for partition_log in topic.partitions:
            self.storage.rmtree(partition_log.directory)
        return topic

    def _metadata_path(self) -> str:
        return os.path.join(self.data_dir, METADATA_FILE)

    def _save(self) -> None:
        self._save_entries(
            {
                topic.name: {
                    "id": str(topic.topic_id),
                    "partitions": len(topic.partitions),
                    "configs": topic.configs,
                }
                for topic in self.topics.values()
            }
        )

    def _save_entries(self, entries: Mapping[str, object]) -> None:
        self.storage.write_atomic(self._metadata_path(), json.dumps(entries, indent=1).encode())


def _remove(built: list[PartitionLog]) -> None:
    for partition_log in built:
        partition_log.delete()


def _refuse_internal(topic: Topic, action: str) -> None:
    """The coordinators' logs are the broker's: a client that deleted one would lose every
    committed offset or transaction state at the next restart."""
    if topic.is_internal:
        raise TopicError(
            ErrorCode.invalid_topic_exception,
            f"cannot {action} internal topic {topic.name}: only the broker manages it",
        )


def _listed(value: str) -> list[str]:
    return [item.strip() for item in value.split(",")]


def check_name_quietly(name: str) -> str | None:
    try:
        check_topic_name(name)
    except TopicError as exc:
        return str(exc)
    return None
