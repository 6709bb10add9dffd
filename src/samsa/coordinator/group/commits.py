"""Offset commits, plain and transactional, and offset fetches: records in the offsets log.

A commit is decided from the request alone (`commit_records`: the records and the response) and
answered once its records are durable; the runtime then replays the log into the store
(`OffsetStore.catch_up`). A transactional commit is a transactional batch of the producer, so
the producer's COMMIT or ABORT marker in the offsets log settles it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from samsa.coordinator.group.consumer_machine import OFFSET_COMMIT_MEMBER_EPOCH_VERSION
from samsa.coordinator.group.coordinator import GroupCoordinator
from samsa.coordinator.group.offsets import offset_key, offset_value
from samsa.coordinator.runtime import CoordinatorResult, KeyValue, Producer
from samsa.durability import Durable
from samsa.protocol.batch import BatchHeader
from samsa.state.producers import ProducerStateError

TopicPartition = tuple[str, int]
Results = dict[TopicPartition, ErrorCode]
Commit = CoordinatorResult[KeyValue, Results]


@dataclass(frozen=True, slots=True)
class OffsetToCommit:
    topic: str
    partition: int
    offset: int
    leader_epoch: int
    metadata: str | None


@dataclass(frozen=True, slots=True)
class FetchedOffset:
    offset: int
    leader_epoch: int
    metadata: str
    error: ErrorCode


def commit_records(
    group_id: str,
    offsets: list[OffsetToCommit],
    partition_exists: Callable[[str, int], bool],
    metadata_bytes_max: int,
    now: int,
) -> Results | Commit:
    """The records of an OffsetCommit or TxnOffsetCommit whose member checks passed, and its
    answer: per partition, none, or why that partition's offset is not committed. Without any
    record to write, the answer at once."""
    results: Results = {}
    records: list[KeyValue] = []
    for item in offsets:
        key = (item.topic, item.partition)
        if not partition_exists(item.topic, item.partition):
            results[key] = ErrorCode.unknown_topic_or_partition
        elif item.metadata is not None and len(item.metadata.encode()) > metadata_bytes_max:
            results[key] = ErrorCode.offset_metadata_too_large
        else:
            results[key] = ErrorCode.none
            records.append(
                (
                    offset_key(group_id, item.topic, item.partition),
                    offset_value(item.offset, item.leader_epoch, item.metadata or "", now),
                )
            )
    if not records:
        return results
    return CoordinatorResult(
        tuple(records), results, _instead(results, ErrorCode.kafka_storage_error)
    )


def _instead(results: Results, error: ErrorCode) -> Results:
    """`results` with `error` for every partition that was to be committed."""
    return {key: error if found == ErrorCode.none else found for key, found in results.items()}


def _write(
    coordinator: GroupCoordinator, decided: Results | Commit, producer: Producer | None = None
) -> Results | Durable[Results]:
    """Append a commit's records as one batch (the producer's transactional one, if given)."""
    if not isinstance(decided, CoordinatorResult):
        return decided
    try:
        return coordinator.runtime.run(decided, producer)
    except ProducerStateError as exc:
        return _instead(decided.response, exc.error)


def commit(
    coordinator: GroupCoordinator,
    group_id: str,
    generation_id: int,
    member_id: str,
    instance_id: str | None,
    offsets: list[OffsetToCommit],
    partition_exists: Callable[[str, int], bool],
    api_version: int = OFFSET_COMMIT_MEMBER_EPOCH_VERSION,
) -> Results | Durable[Results]:
    """OffsetCommit (of the request's version: v9 is the consumer group protocol's)."""
    coordinator.catch_up()
    error = coordinator.check_commit(group_id, generation_id, member_id, instance_id, api_version)
    if error != ErrorCode.none:
        return {(o.topic, o.partition): error for o in offsets}
    coordinator.group_for_offsets(group_id)
    limit = coordinator.settings.offset_metadata_bytes_max
    decided = commit_records(group_id, offsets, partition_exists, limit, coordinator.clock_ms())
    return _write(coordinator, decided)


def txn_commit(
    coordinator: GroupCoordinator,
    group_id: str,
    producer_id: int,
    producer_epoch: int,
    generation_id: int,
    member_id: str,
    instance_id: str | None,
    offsets: list[OffsetToCommit],
    partition_exists: Callable[[str, int], bool],
    verify_txn: Callable[[BatchHeader], ErrorCode],
) -> Results | Durable[Results]:
    """TxnOffsetCommit: KIP-447 checks of member and generation, then a transactional batch."""
    coordinator.catch_up()
    error = coordinator.check_txn_commit(group_id, generation_id, member_id, instance_id)
    if error != ErrorCode.none:
        return {(o.topic, o.partition): error for o in offsets}
    coordinator.group_for_offsets(group_id)  # as Kafka's handleTxnCommitOffsets: Empty
    limit = coordinator.settings.offset_metadata_bytes_max
    decided = commit_records(group_id, offsets, partition_exists, limit, coordinator.clock_ms())
    return _write(coordinator, decided, Producer(producer_id, producer_epoch, verify_txn))


def fetch(
    coordinator: GroupCoordinator,
    group_id: str,
    wanted: list[TopicPartition] | None,
    require_stable: bool,
) -> dict[TopicPartition, FetchedOffset]:
    """OffsetFetch; `wanted` None means every partition the group has an offset for."""
    coordinator.catch_up()
    committed = coordinator.offsets.group_offsets(group_id)
    keys = sorted(committed) if wanted is None else wanted
    found = {}
    for topic, partition in keys:
        if require_stable and coordinator.offsets.is_pending((group_id, topic, partition)):
            found[topic, partition] = FetchedOffset(-1, -1, "", ErrorCode.unstable_offset_commit)
            continue
        value = committed.get((topic, partition))
        found[topic, partition] = (
            FetchedOffset(-1, -1, "", ErrorCode.none)
            if value is None
            else FetchedOffset(value.offset, value.leader_epoch, value.metadata, ErrorCode.none)
        )
    return found


def delete(
    coordinator: GroupCoordinator,
    group_id: str,
    partitions: list[TopicPartition],
    subscribed: Callable[[str], bool],
) -> ErrorCode | Durable[Results]:
    """OffsetDelete: only for topics the group's members are not subscribed to."""
    coordinator.catch_up()
    if coordinator.group_type(group_id) is None and not coordinator.offsets.has_offsets(group_id):
        return ErrorCode.group_id_not_found
    results: Results = {}
    records: list[KeyValue] = []
    for topic, partition in partitions:
        if subscribed(topic):
            results[topic, partition] = ErrorCode.group_subscribed_to_topic
            continue
        results[topic, partition] = ErrorCode.none
        records.append((offset_key(group_id, topic, partition), None))
    if not records:
        return Durable([], lambda failed: results)
    return coordinator.runtime.run(CoordinatorResult(tuple(records), results, results))
