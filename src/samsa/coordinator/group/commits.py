"""Offset commits, plain and transactional, and offset fetches: records in the offsets log.

A commit is answered once its records are durable; the store applies them by replaying the log
(`OffsetStore.catch_up`). A transactional commit is a transactional batch of the producer, so
the producer's COMMIT or ABORT marker in the offsets log settles it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from samsa.coordinator.group.coordinator import GroupCoordinator
from samsa.coordinator.group.offsets import offset_key, offset_value
from samsa.coordinator.group.states import GroupState
from samsa.coordinator.records import append_records
from samsa.durability import Durable
from samsa.log.partition import PartitionLog
from samsa.protocol.batch import BatchHeader
from samsa.state.producers import ProducerStateError

TopicPartition = tuple[str, int]
Results = dict[TopicPartition, ErrorCode]


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


def _screen(
    coordinator: GroupCoordinator,
    offsets: list[OffsetToCommit],
    partition_exists: Callable[[str, int], bool],
) -> tuple[Results, list[OffsetToCommit]]:
    results: Results = {}
    accepted = []
    limit = coordinator.settings.offset_metadata_max_bytes
    for item in offsets:
        key = (item.topic, item.partition)
        if not partition_exists(item.topic, item.partition):
            results[key] = ErrorCode.unknown_topic_or_partition
        elif item.metadata is not None and len(item.metadata.encode()) > limit:
            results[key] = ErrorCode.offset_metadata_too_large
        else:
            results[key] = ErrorCode.none
            accepted.append(item)
    return results, accepted


def _write(
    coordinator: GroupCoordinator,
    group_id: str,
    accepted: list[OffsetToCommit],
    results: Results,
    now: int,
    producer_id: int = -1,
    producer_epoch: int = -1,
    verify_txn: Callable[[BatchHeader], ErrorCode] | None = None,
) -> Results | Durable[Results]:
    """Append the accepted offsets as one batch (transactional when `verify_txn` is given)."""
    if not accepted:
        return results
    records = [
        (
            offset_key(group_id, o.topic, o.partition),
            offset_value(o.offset, o.leader_epoch, o.metadata or "", now),
        )
        for o in accepted
    ]
    try:
        end = append_records(
            coordinator.log,
            records,
            now,
            producer_id,
            producer_epoch,
            transactional=verify_txn is not None,
            verify_txn=verify_txn,
        )
    except ProducerStateError as exc:
        return {
            key: exc.error if error == ErrorCode.none else error for key, error in results.items()
        }

    def then(failed: set[PartitionLog]) -> Results:
        coordinator.catch_up()
        if failed:
            return {
                key: ErrorCode.kafka_storage_error if error == ErrorCode.none else error
                for key, error in results.items()
            }
        return results

    return Durable([(coordinator.log, end)], then)


def commit(
    coordinator: GroupCoordinator,
    group_id: str,
    generation_id: int,
    member_id: str,
    instance_id: str | None,
    offsets: list[OffsetToCommit],
    partition_exists: Callable[[str, int], bool],
) -> Results | Durable[Results]:
    """OffsetCommit."""
    coordinator.catch_up()
    error = coordinator.check_commit(group_id, generation_id, member_id, instance_id)
    if error != ErrorCode.none:
        return {(o.topic, o.partition): error for o in offsets}
    coordinator.group_for_offsets(group_id)
    results, accepted = _screen(coordinator, offsets, partition_exists)
    return _write(coordinator, group_id, accepted, results, coordinator._clock_ms())


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
    error = _check_txn_member(coordinator, group_id, generation_id, member_id, instance_id)
    if error != ErrorCode.none:
        return {(o.topic, o.partition): error for o in offsets}
    results, accepted = _screen(coordinator, offsets, partition_exists)
    return _write(
        coordinator,
        group_id,
        accepted,
        results,
        coordinator._clock_ms(),
        producer_id,
        producer_epoch,
        verify_txn,
    )


def _check_txn_member(
    coordinator: GroupCoordinator,
    group_id: str,
    generation_id: int,
    member_id: str,
    instance_id: str | None,
) -> ErrorCode:
    group = coordinator.groups.get(group_id)
    if group is None or group.state is GroupState.DEAD:
        return ErrorCode.none if generation_id < 0 else ErrorCode.illegal_generation
    if instance_id is not None:
        static = group.static_member(instance_id)
        if static is not None and static.member_id != member_id:
            return ErrorCode.fenced_instance_id
    if member_id and member_id not in group.members:
        return ErrorCode.unknown_member_id
    if generation_id >= 0 and generation_id != group.generation_id:
        return ErrorCode.illegal_generation
    return ErrorCode.none


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
    if group_id not in coordinator.groups and not coordinator.offsets.has_offsets(group_id):
        return ErrorCode.group_id_not_found
    results: Results = {}
    records: list[tuple[bytes, bytes | None]] = []
    for topic, partition in partitions:
        if subscribed(topic):
            results[topic, partition] = ErrorCode.group_subscribed_to_topic
            continue
        results[topic, partition] = ErrorCode.none
        records.append((offset_key(group_id, topic, partition), None))
    if not records:
        return Durable([], lambda failed: results)
    end = append_records(coordinator.log, records, coordinator._clock_ms())

    def then(failed: set[PartitionLog]) -> Results:
        coordinator.catch_up()
        return results

    return Durable([(coordinator.log, end)], then)
