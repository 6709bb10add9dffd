"""Server-side assignors of the consumer group protocol (KIP-848): `uniform` and `range`.

An assignor maps each member to the partitions it should own (the *target assignment*), from
the members' subscriptions, the partitions of the subscribed topics, and the previous target
(for stickiness). It is a pure function: the group coordinator calls it when the group epoch
moves past the target assignment epoch.

- `uniform` (Kafka's default, `group.consumer.assignors`): every member gets a share within one
  partition of every other member subscribed to the same topics, and a partition stays with its
  previous owner when balance allows (sticky). samsa's algorithm is simpler than Kafka's
  Optimized/GeneralUniformAssignmentBuilder, with the same guarantees for homogeneous
  subscriptions (balanced to within one, sticky); for heterogeneous subscriptions it balances
  greedily (a partition goes to the least loaded member subscribed to its topic).
- `range`: per topic, the members subscribed to it, sorted by member id, each get a contiguous
  range of partitions; the first `partitions % members` get one more (Kafka's RangeAssignor, so
  co-partitioned topics are assigned alike). It is not sticky.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass

TopicId = str  # a topic's uuid, as text
Partitions = dict[TopicId, frozenset[int]]


@dataclass(frozen=True, slots=True)
class AssignmentSpec:
    """What an assignor decides from: each member's subscribed topic ids, the partition count
    of every subscribed topic, and each member's previous target."""

    subscriptions: Mapping[str, Set[TopicId]]
    partition_counts: Mapping[TopicId, int]
    previous: Mapping[str, Partitions]


Assignor = Callable[[AssignmentSpec], dict[str, Partitions]]


def _as_partitions(owned: Mapping[TopicId, set[int]]) -> Partitions:
    return {topic: frozenset(parts) for topic, parts in owned.items() if parts}


def uniform(spec: AssignmentSpec) -> dict[str, Partitions]:
    members = sorted(spec.subscriptions)
    owned: dict[str, dict[TopicId, set[int]]] = {m: {} for m in members}
    count = dict.fromkeys(members, 0)
    taken: set[tuple[TopicId, int]] = set()
    # Sticky: keep what each member had, as far as it still subscribes and the partition exists.
    for member in members:
        for topic, parts in sorted(spec.previous.get(member, {}).items()):
            if topic not in spec.subscriptions[member]:
                continue
            for partition in sorted(parts):
                key = (topic, partition)
                if partition < spec.partition_counts.get(topic, 0) and key not in taken:
                    taken.add(key)
                    owned[member].setdefault(topic, set()).add(partition)
                    count[member] += 1
    eligible = {
        topic: [m for m in members if topic in spec.subscriptions[m]]
        for topic in sorted(spec.partition_counts)
    }
    # Unowned partitions go to the least loaded member subscribed to the topic.
    for topic, candidates in eligible.items():
        for partition in range(spec.partition_counts[topic]):
            if candidates and (topic, partition) not in taken:
                member = min(candidates, key=lambda m: (count[m], m))
                owned[member].setdefault(topic, set()).add(partition)
                count[member] += 1
    _balance(owned, count, eligible)
    return {m: _as_partitions(owned[m]) for m in members}


def _balance(
    owned: dict[str, dict[TopicId, set[int]]],
    count: dict[str, int],
    eligible: Mapping[TopicId, list[str]],
) -> None:
    """Move partitions from the most to the least loaded member that may take them, until no
    move narrows the gap (bounded: every move lowers the sum of squared loads)."""
    moved = True
    while moved:
        moved = False
        for giver in sorted(count, key=lambda m: (-count[m], m)):
            for topic in sorted(owned[giver]):
                takers = [m for m in eligible.get(topic, []) if count[m] + 1 < count[giver]]
                if not takers or not owned[giver][topic]:
                    continue
                taker = min(takers, key=lambda m: (count[m], m))
                partition = max(owned[giver][topic])
                owned[giver][topic].discard(partition)
                owned[taker].setdefault(topic, set()).add(partition)
                count[giver] -= 1
                count[taker] += 1
                moved = True
                break
            if moved:
                break


def range_(spec: AssignmentSpec) -> dict[str, Partitions]:
    owned: dict[str, dict[TopicId, set[int]]] = {m: {} for m in spec.subscriptions}
    for topic, partitions in spec.partition_counts.items():
        members = sorted(m for m, topics in spec.subscriptions.items() if topic in topics)
        if not members:
            continue
        share, extra = divmod(partitions, len(members))
        start = 0
        for index, member in enumerate(members):
            size = share + (1 if index < extra else 0)
            if size:
                owned[member][topic] = set(range(start, start + size))
            start += size
    return {m: _as_partitions(parts) for m, parts in owned.items()}


ASSIGNORS: dict[str, Assignor] = {"uniform": uniform, "range": range_}
DEFAULT_ASSIGNOR = "uniform"  # the first of Kafka's group.consumer.assignors
