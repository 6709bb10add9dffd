"""What runs once writes are durable: the vocabulary of "write, wait until durable, continue".

A coordinator (or a handler) appends records and returns a continuation instead of a result:
- `Durable(waits, then)`: a result that exists once every `(log, offset)` in `waits` is durable;
  `then(failed)` computes it (or a further `Durable`, to wait again).
- `Later(waits, then)`: background work not tied to a reply (transaction markers, timeouts);
  `then(failed)` may return the next `Later`.
- `Slot`: a result someone else will produce (a JoinGroup waiting for the rest of its group);
  it is resolved with a value, or a `Durable` of one.
- `gather(steps)`: one `Durable` for several (a request whose partitions each wait on their own
  writes), whose result maps each key to its step's result.

`failed` is the set of logs among `waits` whose fsync failed. Nothing here waits or does I/O:
`samsa.durability.driver` decides when a continuation runs; the server, the simulation and the
tests feed it the fsync results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from samsa.log.partition import PartitionLog

K = TypeVar("K")
T = TypeVar("T")
Waits = list[tuple[PartitionLog, int]]
Failed = set[PartitionLog]


@dataclass(frozen=True, slots=True)
class Durable(Generic[T]):
    """A result that exists once every (log, offset) in `waits` is durable: `then(failed)`
    computes it, given the logs whose fsync failed (write to the log, then change state)."""

    waits: Waits
    then: Callable[[Failed], T | Durable[T]]


def gather(steps: dict[K, Durable[T]]) -> Durable[dict[K, T]]:
    """One continuation for several (one request's partitions, say): its result maps each key
    to its step's result, once every step, and every further `Durable` it chains, is done.
    Each step is given only the failed logs among its own waits."""
    done: dict[K, T] = {}

    def chain(pending: dict[K, Durable[T]]) -> Durable[dict[K, T]]:
        def then(failed: Failed) -> dict[K, T] | Durable[dict[K, T]]:
            still: dict[K, Durable[T]] = {}
            for key, step in pending.items():
                result = step.then(failed.intersection(log for log, _ in step.waits))
                if isinstance(result, Durable):
                    still[key] = result
                else:
                    done[key] = result
            return chain(still) if still else dict(done)

        return Durable([wait for step in pending.values() for wait in step.waits], then)

    return chain(dict(steps))


@dataclass(frozen=True, slots=True)
class Later:
    """Background work not tied to a reply (transaction markers, timeouts): once `waits` are
    durable, `then(failed)` runs and may ask for more."""

    waits: Waits
    then: Callable[[Failed], Later | None]


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
