"""Where `samsa groups reset-offsets` moves each partition, as kafka-consumer-groups.sh's
ResetOffsets computes it (pure: the offsets come in, the plan goes out).

- to-earliest: the log start offset; to-latest: the log end offset;
- to-datetime: the first offset whose timestamp is at or after the time, or the log end offset
  when there is none (ListOffsets answers -1);
- shift-by N: the committed offset plus N; a partition without a committed offset cannot be
  shifted (Kafka refuses too);
- to-offset N: N.
Shift-by and to-offset are then held within [log start, log end], as Kafka's checkOffsetRange
does, so a reset never points a consumer at an offset that is not there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from samsa.usage import UsageError

Kind = Literal["earliest", "latest", "datetime", "shift", "offset"]
Partition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Target:
    kind: Kind
    value: int = 0  # the time in ms for datetime, N for shift and offset


@dataclass(frozen=True, slots=True)
class Move:
    topic: str
    partition: int
    current: int | None  # the committed offset, if any
    new: int


@dataclass(frozen=True, slots=True)
class Offsets:
    """What the cluster said about one partition."""

    log_start: int
    log_end: int
    at_time: int | None = None  # ListOffsets by timestamp: -1 when no record is that late


def plan(
    target: Target,
    partitions: list[Partition],
    committed: Mapping[Partition, int],
    offsets: Mapping[Partition, Offsets],
) -> list[Move]:
    moves: list[Move] = []
    for tp in sorted(partitions):
        known = offsets[tp]
        current = committed.get(tp)
        if target.kind == "earliest":
            new = known.log_start
        elif target.kind == "latest":
            new = known.log_end
        elif target.kind == "datetime":
            at = known.at_time
            new = known.log_end if at is None or at < 0 else at
        elif target.kind == "shift":
            if current is None:
                raise UsageError(
                    f"cannot shift {tp[0]}-{tp[1]}: the group has no committed offset there"
                )
            new = _within(current + target.value, known)
        else:
            new = _within(target.value, known)
        moves.append(Move(tp[0], tp[1], current, new))
    return moves


def _within(offset: int, known: Offsets) -> int:
    return max(known.log_start, min(offset, known.log_end))


def parse_topic(text: str) -> tuple[str, list[int] | None]:
    """`T` (every partition) or `T:0,2` (those partitions), as kafka-consumer-groups --topic."""
    name, sep, rest = text.partition(":")
    if not name:
        raise UsageError(f"--topic takes TOPIC or TOPIC:P,P, not {text!r}")
    if not sep:
        return name, None
    try:
        numbers = [int(p) for p in rest.split(",")]
    except ValueError:
        raise UsageError(f"--topic {text!r}: partitions are numbers, as orders:0,2") from None
    if any(p < 0 for p in numbers):
        raise UsageError(f"--topic {text!r}: a partition number is 0 or more")
    return name, sorted(set(numbers))
