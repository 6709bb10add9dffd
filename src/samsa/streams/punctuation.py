"""Punctuation: a function called per task (input partition) at regular intervals of wall-clock
time or of stream time (the largest record timestamp the task has seen), with the task's
stores, as Kafka Streams' `ProcessorContext.schedule`. Its outputs go to a topic inside the
open transaction, and its store writes are committed with it, as a record's are.

Calls fall on multiples of `every_ms` (the first once time reaches the next multiple); a jump
over several intervals makes one call, as in Kafka Streams. Stream time is kept in memory: a
restarted task's stream time starts again at its first record.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from samsa.streams.store import StoreSpec
from samsa.streams.topology import KeyValue, Topic


class PunctuationType(enum.Enum):
    WALL_CLOCK_TIME = "wall_clock_time"
    STREAM_TIME = "stream_time"


@dataclass(frozen=True, slots=True)
class Punctuator:
    """fn(time_ms, *stores) -> the (key, value) records for `to` (or None)."""

    fn: Callable[..., Iterable[KeyValue] | None]
    every_ms: int
    kind: PunctuationType
    stores: tuple[StoreSpec, ...]
    to: Topic | None

    def __post_init__(self) -> None:
        if self.every_ms <= 0:
            raise ValueError(f"every_ms must be positive, got {self.every_ms}")

    def next_due(self, time_ms: int) -> int:
        return (time_ms // self.every_ms + 1) * self.every_ms

    def name(self) -> str:
        return getattr(self.fn, "__qualname__", repr(self.fn))


def parse_kind(value: PunctuationType | str) -> PunctuationType:
    if isinstance(value, PunctuationType):
        return value
    names = {"wall": "wall_clock_time", "wall_clock": "wall_clock_time", "stream": "stream_time"}
    normalised = value.strip().lower().replace("-", "_")
    try:
        return PunctuationType(names.get(normalised, normalised))
    except ValueError:
        raise ValueError(
            f"unknown punctuation type {value!r}; expected wall_clock_time or stream_time"
        ) from None


__all__ = ["PunctuationType", "Punctuator", "parse_kind"]
