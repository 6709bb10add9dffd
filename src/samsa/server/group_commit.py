"""Group commit: one fsync round serves every request that started waiting while the last ran.

The durability driver (`samsa.durability.Driver`) knows which logs something waits on; `kick`
starts a round if none is under way: it takes those logs' sync points and hands them to the
round thread, which fsyncs them (one log on itself, several in parallel on helper threads) and
calls back into the event loop once, with every result. There each log's sync point is
completed (or failed) and reported to the driver, `on_round` runs (where the server runs what
became ready), and the next round starts if more writes arrived meanwhile. Throughput holds
because concurrent writers share each fsync.

The hand-off is one queue put to a waiting thread and one `call_soon_threadsafe` back: a
one-record transaction waits for three or four rounds one after the other, and the executor,
future and task machinery a round took before cost about 0.05 ms of each
(docs/benchmarks.md, "One-record transactions").
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from samsa.durability import Driver
from samsa.log.partition import PartitionLog, SyncPoint
from samsa.ratelog import RateLimitedLog

log = logging.getLogger("samsa.server")
# A failing disk fails every round: one line per interval.
_limited = RateLimitedLog(log)

# Helper threads for the logs of a round beyond its first (fsyncs of different files overlap).
SYNC_THREADS = 4

Points = list[tuple[PartitionLog, SyncPoint]]
Results = list[BaseException | None]


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
        self._driver = driver
        self._on_round = on_round
        self._helpers = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="samsa-fsync")
        self._rounds: queue.SimpleQueue[Points | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._idle = asyncio.Event()  # set while no round is under way
        self._idle.set()
        self.rounds = 0

    def kick(self) -> None:
        """Start a round if the driver has logs to sync and none is under way."""
        if self._driver.dirty and not self.running:
            self._start()

    @property
    def running(self) -> bool:
        return not self._idle.is_set()

    async def idle(self) -> None:
        """Return once no round is under way."""
        await self._idle.wait()

    def close(self) -> None:
        """Stop starting rounds (one under way ends, unreported) and wait for the threads."""
        self._closed = True
        if self._thread is not None:
            self._rounds.put(None)
            self._thread.join()
        self._helpers.shutdown(wait=True)

    # ----------------------------------------------------------------- on the event loop
    def _start(self) -> bool:
        """Start a round over the logs the driver has for one; whether it did."""
        if self._closed:
            return False
        logs = self._driver.take_dirty()
        if not logs:
            return False
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._serve_rounds,
                args=(asyncio.get_running_loop(),),
                name="samsa-fsync-rounds",
                daemon=True,
            )
            self._thread.start()
        self._idle.clear()
        self._rounds.put([(partition_log, partition_log.sync_point()) for partition_log in logs])
        return True

    def _finish(self, points: Points, results: Results) -> None:
        """A round's fsyncs ended: report them, run what became ready, start the next."""
        if self._closed:
            return
        try:
            self.rounds += 1
            advanced = False
            for (partition_log, point), result in zip(points, results, strict=True):
                if result is not None:
                    _limited.error(
                        "fsync of %s-%d failed: %r",
                        partition_log.topic,
                        partition_log.partition,
                        result,
                    )
                    partition_log.fail_sync(point)
                elif partition_log.complete_sync(point):
                    advanced = True
                self._driver.synced(partition_log, point, result is not None)
            self._on_round(advanced)
        finally:
            if not self._start():  # the next round, if writes arrived meanwhile
                self._idle.set()

    # ----------------------------------------------------------------- on the round thread
    def _serve_rounds(self, loop: asyncio.AbstractEventLoop) -> None:
        while (points := self._rounds.get()) is not None:
            results = self._sync_all(points)
            try:
                loop.call_soon_threadsafe(self._finish, points, results)
            except RuntimeError:  # the loop is closed: nobody waits any more
                return

    def _sync_all(self, points: Points) -> Results:
        first, *rest = [self._sync(point.run) for _, point in points]
        others = [self._helpers.submit(run) for run in rest]
        results: Results = [_attempt(first)]
        results += [future.exception() for future in others]
        return results

    def _sync(self, run: Callable[[], None]) -> Callable[[], None]:
        return run if self._timed is None else self._timed(run)


def _attempt(run: Callable[[], None]) -> BaseException | None:
    try:
        run()
    except Exception as exc:
        return exc
    return None
