"""The one interpreter of "write, wait until durable, then continue".

Theory of operation
-------------------
Handlers and coordinators append records and hand back continuations (`Durable`, `Later`, a
`Slot`; see `samsa.durability.continuations`). `Driver` decides when each one runs. It is
sans-IO: it never fsyncs, sleeps or touches a socket. Its caller (the server's group commit on
worker threads, the simulation with the faults it chooses, a test on its own thread) runs the
fsyncs and reports them. Events in:

- `respond(key, waits, then)`: a response whose payload `then(failed)` builds once every
  `(log, offset)` in `waits` is durable; `then` may return a further `Durable` (a chain).
- `slot(key, slot)`: a response someone else produces; the slot may resolve with a `Durable`.
- `make_durable(waits)`: writes nobody waits on (acks=0, a periodic flush).
- background work: every `Later` the broker queues, taken with `take_background()` before
  `run` and after each continuation.
- `synced(log, point, failed)`: one fsync of `log` up to `point` ended. The caller has already
  called `log.complete_sync(point)` or, when it failed, `log.fail_sync(point)`.

States out:

- `take_dirty()`: the logs something started waiting on since the last call, which the next
  fsync round must cover.
- `run()`: runs every continuation whose writes are durable, in the order they became ready,
  each with the logs among its waits whose fsync failed; chains further `Durable`s and
  `Later`s; returns the finished `(key, payload)` pairs.
- `ready`, `waiting`, `background`: how much is ready to run, waiting for an fsync, and how
  many background chains are unfinished.

A wait is resolved: at once if the log's high watermark already covers it; failed at once
if it can never be met (the log is offline, or the offset is past the log end: a write the disk
refused and the log undid); failed when a sync of the log fails (the log is offline from then
on, and no later sync of it is trusted); done once the high watermark reaches it; otherwise it
waits for the round under way if that covers its offset (`PartitionLog.sync_taken_offset`),
or for the next.

A continuation that raises is dropped; `run` raises `ContinuationFailed` naming its key, and
keeps everything else for the next call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from samsa.durability.continuations import Durable, Failed, Later, Slot, Waits
from samsa.log.partition import PartitionLog, SyncPoint

K = TypeVar("K")


class ContinuationFailed(Exception):
    """Raised by `Driver.run` when a continuation raised (the exception is the `__cause__`).

    `key` is the key of the response it was computing, or None for background work. The driver
    has dropped that continuation and kept everything else: the caller fails that response (or
    logs the background failure) and calls `run` again."""

    def __init__(self, key: Any) -> None:
        super().__init__(f"a continuation of {'background work' if key is None else key!r} failed")
        self.key = key


class _Waiter(Generic[K]):
    """One continuation: a response's (`key`) or a background chain's (`background`)."""

    __slots__ = ("background", "failed", "key", "remaining", "then")

    def __init__(self, key: K | None, then: Callable[[Failed], Any], background: bool) -> None:
        self.key = key
        self.then = then
        self.background = background
        self.remaining = 0  # waits not resolved yet
        self.failed: Failed | None = None  # logs among its waits whose fsync failed


class Driver(Generic[K]):
    def __init__(self, take_background: Callable[[], list[Later]] | None = None) -> None:
        """`take_background` hands over the broker's queued `Later`s (None: there are none)."""
        self._take_background = take_background
        self._waiting: dict[PartitionLog, list[tuple[int, _Waiter[K]]]] = {}
        self._dirty: dict[PartitionLog, None] = {}  # a set that keeps the order logs came in
        self._ready: deque[_Waiter[K]] = deque()
        self._finished: list[tuple[K, Any]] = []
        self.background = 0  # background chains not finished
        self.background_runs = 0  # background continuations run, ever

    # ----------------------------------------------------------------- events in
    def respond(self, key: K, waits: Waits, then: Callable[[Failed], Any]) -> None:
        """Once `waits` are durable, `then(failed)` builds the payload of `key` (or a `Durable`
        of it)."""
        self._wait(_Waiter(key, then, background=False), waits)

    def slot(self, key: K, slot: Slot) -> None:
        """The payload of `key` is whatever `slot` resolves with (or, if a `Durable`, its end)."""
        slot.subscribe(lambda value: self._resolved(key, value))

    def make_durable(self, waits: Waits) -> None:
        """Have these writes fsynced although nobody waits for them."""
        for log, offset in waits:
            if log.high_watermark < offset:
                self._dirty[log] = None

    def synced(self, log: PartitionLog, point: SyncPoint, failed: bool = False) -> None:
        """An fsync of `log` up to `point` ended, and the log was told (`complete_sync`, or
        `fail_sync` when `failed`)."""
        waiting = self._waiting.pop(log, None)
        if not waiting:
            return
        failed = failed or log.sync_failed
        still = []
        for entry in waiting:
            offset, waiter = entry
            if failed:  # an offline log never becomes durable, whatever the offset
                if waiter.failed is None:
                    waiter.failed = set()
                waiter.failed.add(log)
            elif log.high_watermark < offset:
                still.append(entry)
                continue
            waiter.remaining -= 1
            if waiter.remaining == 0:
                self._ready.append(waiter)
        if still:
            self._waiting[log] = still

    # ----------------------------------------------------------------- states out
    def take_dirty(self) -> list[PartitionLog]:
        """The logs something started waiting on since the last call: the next round's work."""
        dirty = list(self._dirty)
        self._dirty.clear()
        return dirty

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    @property
    def ready(self) -> int:
        """Continuations whose writes are durable, not run yet."""
        return len(self._ready)

    @property
    def waiting(self) -> int:
        """Waits not resolved yet, over all continuations."""
        return sum(len(entries) for entries in self._waiting.values())

    def run(self) -> list[tuple[K, Any]]:
        """Run every continuation that is ready (and what becomes ready meanwhile); return the
        responses finished since the last call, as `(key, payload)`."""
        self._collect()
        ready = self._ready
        while ready:
            waiter = ready.popleft()
            try:
                result = waiter.then(waiter.failed if waiter.failed is not None else set())
            except Exception as exc:
                if waiter.background:
                    self.background -= 1
                self._collect()
                raise ContinuationFailed(None if waiter.background else waiter.key) from exc
            self._collect()
            if waiter.background:
                self.background_runs += 1
                self.background -= 1
                if result is not None:
                    self._later(result)
            elif isinstance(result, Durable):
                waiter.then, waiter.failed = result.then, None
                self._wait(waiter, result.waits)
            else:
                self._finished.append((cast(K, waiter.key), result))
        if not self._finished:
            return []
        finished, self._finished = self._finished, []
        return finished

    # ----------------------------------------------------------------- inside
    def _wait(self, waiter: _Waiter[K], waits: Waits) -> None:
        for entry in waits:
            log, offset = entry
            if log.never_durable(offset):
                waiter.failed = (waiter.failed or set()) | {log}  # never durable: fail now
                continue
            if log.high_watermark >= offset:
                continue
            waiter.remaining += 1
            self._waiting.setdefault(log, []).append((offset, waiter))
            if offset > log.sync_taken_offset:  # else the round under way covers it
                self._dirty[log] = None
        if waiter.remaining == 0:
            self._ready.append(waiter)

    def _later(self, later: Later) -> None:
        self.background += 1
        self._wait(_Waiter(None, later.then, background=True), later.waits)

    def _collect(self) -> None:
        if self._take_background is not None:
            for later in self._take_background():
                self._later(later)

    def _resolved(self, key: K, value: Any) -> None:
        if isinstance(value, Durable):
            self._wait(_Waiter(key, value.then, background=False), value.waits)
        else:
            self._finished.append((key, value))
