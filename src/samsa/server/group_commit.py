"""Group commit: one fsync round serves every request that started waiting while the last ran.

The durability driver (`samsa.durability.Driver`) knows which logs something waits on; `kick`
starts a task that takes them, fsyncs them on worker threads, completes (or fails) each log's
sync point, reports it to the driver and calls `on_round` (where the server runs what became
ready), then starts the next round if more writes arrived meanwhile. Throughput holds because
concurrent writers share each fsync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from samsa.durability import Driver
from samsa.ratelog import RateLimitedLog

log = logging.getLogger("samsa.server")
# A failing disk fails every round: one line per interval.
_limited = RateLimitedLog(log)

SYNC_THREADS = 4


class GroupCommit:
    def __init__(
        self,
        driver: Driver[Any],
        on_round: Callable[[bool], None],
        timed: Callable[[Callable[[], None]], Callable[[], None]] | None = None,
    ) -> None:
        """`on_round(advanced)` runs after each round; `advanced`: some high watermark moved.
        `timed` wraps each fsync to measure it (metrics)."""
        self._timed = timed
        self._executor = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="samsa-fsync")
        self._driver = driver
        self._on_round = on_round
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    def kick(self) -> None:
        """Start rounds if the driver has logs to sync and none is running."""
        if self._driver.dirty and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def idle(self) -> None:
        """Return once no round is running."""
        if self._task is not None:
            await asyncio.wait([self._task])

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        driver = self._driver
        while logs := driver.take_dirty():
            points = [(partition_log, partition_log.sync_point()) for partition_log in logs]
            results = await asyncio.gather(
                *(
                    loop.run_in_executor(self._executor, self._sync(point.run))
                    for _, point in points
                ),
                return_exceptions=True,
            )
            self.rounds += 1
            advanced = False
            for (partition_log, point), result in zip(points, results, strict=True):
                failed = isinstance(result, BaseException)
                if failed:
                    _limited.error(
                        "fsync of %s-%d failed: %r",
                        partition_log.topic,
                        partition_log.partition,
                        result,
                    )
                    partition_log.fail_sync(point)
                elif partition_log.complete_sync(point):
                    advanced = True
                driver.synced(partition_log, point, failed)
            self._on_round(advanced)

    def _sync(self, run: Callable[[], None]) -> Callable[[], None]:
        return run if self._timed is None else self._timed(run)

    def close(self) -> None:
        """Stop starting rounds (one under way is dropped) and wait for the worker threads."""
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=True)
