"""Fsyncs run on the caller's own thread: how the simulation and the tests drive the contract.

The server runs its fsyncs on worker threads (`samsa.server.group_commit`); the simulation and
the tests run them here, one log after the other, and may make any of them fail. Either way the
steps are the same: `PartitionLog.sync_point()`, `SyncPoint.run()`, then `complete_sync` (or
`fail_sync`), then `Driver.synced`. `settle` repeats rounds and `Driver.run` until a result and
all background work are done.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Collection, Iterable
from typing import Any, TypeVar, overload

from samsa.durability.continuations import Durable
from samsa.durability.driver import Driver
from samsa.log.partition import PartitionLog, SyncPoint

T = TypeVar("T")
SETTLE_ROUNDS_MAX = 1000


def sync_log(log: PartitionLog, fail: bool = False) -> tuple[SyncPoint, bool]:
    """One fsync of everything `log` holds, now: True beside the point if it failed.

    `fail` injects a failed fsync (nothing is made durable); an `OSError` from the fsync itself
    fails it the same way, as a worker thread's does in the server's group commit."""
    point = log.sync_point()
    try:
        if fail:
            raise OSError(errno.EIO, "injected fsync failure")
        point.run()
    except OSError:
        log.fail_sync(point)
        return point, True
    log.complete_sync(point)
    return point, False


def sync_logs(
    driver: Driver[Any], logs: Iterable[PartitionLog], failing: Collection[PartitionLog] = ()
) -> set[PartitionLog]:
    """One round over `logs`, reported to `driver`; the fsyncs of `failing` fail. Returns the
    logs whose fsync failed."""
    failed = set()
    for log in logs:
        point, log_failed = sync_log(log, log in failing)
        if log_failed:
            failed.add(log)
        driver.synced(log, point, log_failed)
    return failed


# Two overloads: mypy cannot solve `T | Durable[T]` for T when given a `Durable[X]`.
@overload
def settle(
    driver: Driver[Any],
    result: Durable[T],
    logs: Callable[[], Iterable[PartitionLog]] | None = None,
) -> T: ...


@overload
def settle(
    driver: Driver[Any],
    result: T,
    logs: Callable[[], Iterable[PartitionLog]] | None = None,
) -> T: ...


def settle(
    driver: Driver[Any],
    result: T | Durable[T],
    logs: Callable[[], Iterable[PartitionLog]] | None = None,
) -> T:
    """The value of `result` once its writes are durable, after the driver's background work
    has finished too. Each round fsyncs `logs()` (default: only the logs something waits on).

    Raises RuntimeError if that takes more than `SETTLE_ROUNDS_MAX` rounds."""
    key = object()
    finished: dict[Any, Any] = {}
    if isinstance(result, Durable):
        driver.respond(key, result.waits, result.then)
    else:
        finished[key] = result
    finished.update(driver.run())
    for _ in range(SETTLE_ROUNDS_MAX):
        if key in finished and not driver.background:
            value: T = finished[key]
            return value
        sync_logs(driver, driver.take_dirty() if logs is None else logs())
        finished.update(driver.run())
    raise RuntimeError(f"not settled after {SETTLE_ROUNDS_MAX} fsync rounds")
