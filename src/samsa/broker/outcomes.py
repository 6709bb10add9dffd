"""What a handler asks the server to do with a request: the only contract between the two."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from samsa.log.partition import PartitionLog


@dataclass(frozen=True, slots=True)
class Reply:
    """Send `payload` now (in request order)."""

    correlation_id: int
    payload: Any


@dataclass(frozen=True, slots=True)
class NoReply:
    """acks=0 produce: nothing goes back."""


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection; the stream can no longer be trusted or the client must notice."""

    reason: str


@dataclass(frozen=True, slots=True)
class AwaitDurable:
    """Reply once each log's high watermark reaches its offset (fsync group commit).

    `finish` builds the payload (or a `Durable` payload, to wait again); it gets the logs whose
    sync failed.
    """

    correlation_id: int
    waits: list[tuple[PartitionLog, int]]
    finish: Callable[[set[PartitionLog]], Any] | None  # None: acks=0, nothing to send


@dataclass(frozen=True, slots=True)
class AwaitData:
    """Long poll: call `attempt(final)` now and whenever data arrives; it returns the payload,
    or None while `min_bytes` are not there. At `max_wait_ms`, it is called with final=True."""

    correlation_id: int
    max_wait_ms: int
    attempt: Callable[[bool], Any | None]


class Slot:
    """A response someone else will produce: a JoinGroup or SyncGroup waiting for the rest of
    its group. The coordinator calls `resolve` (with a payload, or a `Durable` of one)."""

    def __init__(self) -> None:
        self.value: Any = None
        self.done = False
        self._callbacks: list[Callable[[Any], None]] = []

    def resolve(self, value: Any) -> None:
        if self.done:
            return
        self.value, self.done = value, True
        for callback in self._callbacks:
            callback(value)
        self._callbacks.clear()

    def subscribe(self, callback: Callable[[Any], None]) -> None:
        if self.done:
            callback(self.value)
        else:
            self._callbacks.append(callback)


@dataclass(frozen=True, slots=True)
class AwaitSlot:
    """Reply with whatever the slot is resolved with (in request order)."""

    correlation_id: int
    slot: Slot


Outcome = Reply | NoReply | Close | AwaitDurable | AwaitData | AwaitSlot

T = TypeVar("T")
Waits = list[tuple[PartitionLog, int]]


@dataclass(frozen=True, slots=True)
class Durable(Generic[T]):
    """A result that exists once every (log, offset) in `waits` is durable: `then(failed)`
    computes it, given the logs whose fsync failed (write to the log, then change state)."""

    waits: Waits
    then: Callable[[set[PartitionLog]], T | Durable[T]]


@dataclass(frozen=True, slots=True)
class Later:
    """Background work not tied to a reply (transaction markers, timeouts): once `waits` are
    durable, `then(failed)` runs and may ask for more."""

    waits: Waits
    then: Callable[[set[PartitionLog]], Later | None]
