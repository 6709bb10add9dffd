"""Group commit: one fsync round serves every produce request that arrived while the last ran.

Requests wait on `wait(waits)`; a single task takes all dirty logs, fsyncs them on worker
threads, moves their high watermarks and wakes the waiters, then starts the next round if more
writes arrived meanwhile. Throughput holds because concurrent writers share each fsync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from samsa.log.partition import PartitionLog, SyncPoint

log = logging.getLogger("samsa.server")

SYNC_THREADS = 4


class GroupCommit:
    def __init__(self, on_advance: Callable[[], None]) -> None:
        self._executor = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="samsa-fsync")
        self._on_advance = on_advance
        self._dirty: set[PartitionLog] = set()
        self._waiters: dict[PartitionLog, list[tuple[int, asyncio.Future[set[PartitionLog]]]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    def wait(self, waits: list[tuple[PartitionLog, int]]) -> asyncio.Future[set[PartitionLog]]:
        """A future of the logs whose sync failed, done once every (log, offset) is durable."""
        loop = asyncio.get_running_loop()
        futures = []
        failed: set[PartitionLog] = set()
        for partition_log, offset in waits:
            if partition_log.offline is not None or offset > partition_log.log_end_offset:
                # It will never be durable (an offline log, a write that failed and was
                # undone, a deleted log): fail at once.
                failed.add(partition_log)
                continue
            if partition_log.high_watermark >= offset:
                continue
            future: asyncio.Future[set[PartitionLog]] = loop.create_future()
            self._waiters.setdefault(partition_log, []).append((offset, future))
            self._dirty.add(partition_log)
            futures.append(future)
        if self._dirty and (self._task is None or self._task.done()):
            self._task = loop.create_task(self._run())
        return _merge(loop, futures, failed)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty:
            logs = list(self._dirty)
            self._dirty.clear()
            points = [(partition_log, partition_log.sync_point()) for partition_log in logs]
            results = await asyncio.gather(
                *(loop.run_in_executor(self._executor, point.run) for _, point in points),
                return_exceptions=True,
            )
            self.rounds += 1
            advanced = False
            for (partition_log, point), result in zip(points, results, strict=True):
                failed = isinstance(result, BaseException)
                if failed:
                    log.error(
                        "fsync of %s-%d failed: %r",
                        partition_log.topic,
                        partition_log.partition,
                        result,
                    )
                    partition_log.fail_sync(point)
                elif partition_log.complete_sync(point):
                    advanced = True
                self._wake(partition_log, point, failed or partition_log.sync_failed)
            if advanced:
                self._on_advance()

    def _wake(self, partition_log: PartitionLog, point: SyncPoint, failed: bool) -> None:
        waiting = self._waiters.get(partition_log, [])
        still = []
        for offset, future in waiting:
            if future.done():
                continue
            if failed:  # an offline log never becomes durable, whatever the offset
                future.set_result({partition_log})
            elif partition_log.high_watermark >= offset:
                future.set_result(set())
            else:
                still.append((offset, future))
        if still:
            self._waiters[partition_log] = still
        else:
            self._waiters.pop(partition_log, None)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _merge(
    loop: asyncio.AbstractEventLoop,
    futures: list[asyncio.Future[set[PartitionLog]]],
    failed: set[PartitionLog],
) -> asyncio.Future[set[PartitionLog]]:
    merged: asyncio.Future[set[PartitionLog]] = loop.create_future()
    if not futures:
        merged.set_result(failed)
        return merged
    remaining = [len(futures)]

    def done(future: asyncio.Future[set[PartitionLog]]) -> None:
        failed.update(future.result())
        remaining[0] -= 1
        if remaining[0] == 0 and not merged.done():
            merged.set_result(failed)

    for future in futures:
        future.add_done_callback(done)
    return merged
