"""Listener, timers and the outcomes of requests.

Connections (`samsa.server.connection`) cut frames and hand them to the broker; the server turns
each outcome into a future of its response: at once for a reply, after the group commit for a
durable write, on new data for a long-polling fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any

from samsa.broker.core import Broker
from samsa.broker.outcomes import AwaitData, AwaitDurable, AwaitSlot, NoReply, Outcome, Reply
from samsa.broker.unsupported import RawFrame
from samsa.durability import Durable, Later
from samsa.log.scrub import Scrubber
from samsa.protocol import codec
from samsa.protocol.apis import SERVED, ApiKey
from samsa.protocol.frames import frame
from samsa.server.connection import Connection, Parts, Pending, stop_all
from samsa.server.group_commit import GroupCommit

log = logging.getLogger("samsa.server")

# The hot path's schemas, at the versions current clients use: built at start, not on the first
# produce or fetch.
PRELOADED_APIS = (ApiKey.PRODUCE, ApiKey.FETCH)
# How long a clean shutdown waits for background work (transaction markers) to finish.
SHUTDOWN_DRAIN_S = 5.0
# How often the group coordinator looks for expired sessions and overdue rebalances.
GROUP_TICK_MS = 100
# The scrubber's pace: a slice of its byte budget every tick.
SCRUB_TICK_MS = 100


def _encode(correlation_id: int, payload: Any) -> Parts:
    if isinstance(payload, RawFrame):
        return [frame(payload.data)]
    return codec.encode_response_parts(correlation_id, payload)


class BrokerServer:
    def __init__(self, broker: Broker, sock: socket.socket) -> None:
        self.broker = broker
        self._sock = sock
        self._server: asyncio.Server | None = None
        self.connections: set[Connection] = set()
        self._data_arrived = asyncio.Event()
        self.group_commit = GroupCommit(self.notify_data)
        self._timers: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._long_polls: set[Pending] = set()
        self._stopping = False
        self.connections_closed_for_errors = 0
        self.scrubber = Scrubber(
            broker.topics.logs, broker.clock_ms, broker.config.log_scrubber_interval_ms
        )

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    def notify_data(self) -> None:
        """Wake every long-polling fetch: some high watermark moved."""
        self._data_arrived.set()
        self._data_arrived = asyncio.Event()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Built once the broker is ready rather than before, so a start stays quick; the first
        # Produce or Fetch then does not pay for it.
        loop.call_soon(codec.preload, [(key, SERVED[key].max) for key in PRELOADED_APIS])
        self._server = await loop.create_server(lambda: Connection(self), sock=self._sock)
        config = self.broker.config
        self._timers.append(
            asyncio.create_task(
                self._every(config.log_retention_check_interval_ms, self._retention)
            )
        )
        self._timers.append(
            asyncio.create_task(
                self._every(config.producer_id_expiration_check_interval_ms, self._expire_producers)
            )
        )
        self._timers.append(
            asyncio.create_task(
                self._every(
                    config.transaction_abort_timed_out_transaction_cleanup_interval_ms,
                    self._abort_timed_out_transactions,
                )
            )
        )
        self._timers.append(
            asyncio.create_task(
                self._every(
                    config.transaction_remove_expired_transaction_cleanup_interval_ms,
                    self._expire_transactional_ids,
                )
            )
        )
        if not config.durable:
            self._timers.append(
                asyncio.create_task(self._every(config.log_flush_interval_ms, self._flush))
            )
        self._timers.append(asyncio.create_task(self._every(GROUP_TICK_MS, self._group_tick)))
        if config.log_scrubber_enable and config.log_scrubber_bytes_per_second > 0:
            self._timers.append(asyncio.create_task(self._every(SCRUB_TICK_MS, self._scrub)))
        self.run_background()  # transactions left prepared by the last run

    async def stop(self) -> None:
        """Stop accepting, drop connections, make everything durable, close the logs."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        await stop_all(self.connections)
        for timer in self._timers:
            timer.cancel()
        # Let background work finish (transaction markers and the CompleteCommit after them),
        # so a clean restart has nothing left to complete.
        deadline = asyncio.get_running_loop().time() + SHUTDOWN_DRAIN_S
        while self._background and asyncio.get_running_loop().time() < deadline:
            await asyncio.wait(list(self._background), timeout=SHUTDOWN_DRAIN_S)
        # Long polls too: their clients are gone, and left running they would read the logs
        # closed below.
        tasks: list[asyncio.Future[Any]] = [*self._timers, *self._background, *self._long_polls]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
        self.group_commit.close()
        self.broker.close()

    # ----------------------------------------------------------------- timers
    async def _every(self, interval_ms: int, action: Any) -> None:
        while True:
            await asyncio.sleep(max(interval_ms, 10) / 1000)
            try:
                await action()
            except Exception:
                log.exception("periodic task %s failed", action.__name__)

    async def _abort_timed_out_transactions(self) -> None:
        self.broker.txn.abort_timed_out()
        self.run_background()

    async def _group_tick(self) -> None:
        self.broker.groups.tick()
        self.run_background()

    async def _expire_transactional_ids(self) -> None:
        self.broker.txn.expire_ids()
        self.run_background()

    # ----------------------------------------------------------------- background work
    def run_background(self) -> None:
        """Start whatever the broker queued: work that continues once its writes are durable."""
        for later in self.broker.take_background():
            task = asyncio.create_task(self._later(later))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _later(self, later: Later | None) -> None:
        while later is not None:
            failed = await self.group_commit.wait(later.waits)
            try:
                later = later.then(failed)
            except Exception:
                log.exception("background work failed")
                return
            self.run_background()
            self.notify_data()

    async def _scrub(self) -> None:
        rate = self.broker.config.log_scrubber_bytes_per_second
        self.scrubber.step(max(rate * SCRUB_TICK_MS // 1000, 1))

    async def _retention(self) -> None:
        now_ms = self.broker.clock_ms()
        for partition_log in self.broker.topics.logs():
            deleted = partition_log.apply_retention(now_ms)
            if deleted:
                log.info(
                    "retention deleted %d segment(s) of %s-%d",
                    deleted,
                    partition_log.topic,
                    partition_log.partition,
                )

    async def _expire_producers(self) -> None:
        expired = self.broker.expire_producers()
        if expired:
            log.info("expired %d idle producer(s)", expired)

    async def _flush(self) -> None:
        waits = [(pl, pl.log_end_offset) for pl in self.broker.topics.logs()]
        await self.group_commit.wait(waits)

    # ----------------------------------------------------------------- connections
    def closing(self, peer: Any, reason: str) -> None:
        self.connections_closed_for_errors += 1
        log.warning("closing connection from %s: %s", peer, reason)

    def failed(self, peer: Any) -> None:
        self.connections_closed_for_errors += 1
        log.exception("request from %s failed; closing its connection", peer)

    def pending(self, outcome: Outcome) -> Pending | None:
        """A future of the response `outcome` asks for (None: no response)."""
        loop = asyncio.get_running_loop()
        if isinstance(outcome, Reply):
            done: Pending = loop.create_future()
            done.set_result(_encode(outcome.correlation_id, outcome.payload))
            return done
        if isinstance(outcome, NoReply):
            return None
        if isinstance(outcome, AwaitDurable):
            if not self.broker.config.durable:
                self.notify_data()
            synced = self.group_commit.wait(outcome.waits)
            if outcome.finish is None:
                return None
            return asyncio.ensure_future(self._after_sync(outcome, synced))
        if isinstance(outcome, AwaitData):
            arrived = self._data_arrived  # taken first: data arriving after the attempt wakes it
            payload = outcome.attempt(outcome.max_wait_ms <= 0)
            if payload is not None:  # enough data already: answer without a long-poll task
                ready: Pending = loop.create_future()
                ready.set_result(_encode(outcome.correlation_id, payload))
                return ready
            poll: Pending = asyncio.ensure_future(self._long_poll(outcome, arrived))
            self._long_polls.add(poll)
            poll.add_done_callback(self._long_polls.discard)
            return poll
        if isinstance(outcome, AwaitSlot):
            return asyncio.ensure_future(self._slot(outcome))
        raise TypeError(f"unexpected outcome {outcome!r}")

    async def _after_sync(
        self, outcome: AwaitDurable, synced: asyncio.Future[set[Any]]
    ) -> Parts | None:
        failed = await synced
        if outcome.finish is None:
            return None
        payload = outcome.finish(failed)
        self.run_background()
        while isinstance(payload, Durable):
            failed = await self.group_commit.wait(payload.waits)
            payload = payload.then(failed)
            self.run_background()
        return _encode(outcome.correlation_id, payload)

    async def _slot(self, outcome: AwaitSlot) -> Parts:
        resolved: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def settle(value: Any) -> None:
            if not resolved.done():
                resolved.set_result(value)

        outcome.slot.subscribe(settle)
        payload = await resolved
        while isinstance(payload, Durable):
            failed = await self.group_commit.wait(payload.waits)
            payload = payload.then(failed)
            self.run_background()
        return _encode(outcome.correlation_id, payload)

    async def _long_poll(self, outcome: AwaitData, arrived: asyncio.Event) -> Parts:
        """Attempt again each time data arrives, and finally at the deadline. `pending` made
        the first attempt, after taking `arrived`, and found too little."""
        deadline = time.monotonic() + outcome.max_wait_ms / 1000
        payload = None
        while payload is None:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), remaining)
            if self._stopping:  # Python 3.11's wait_for can swallow the cancel from `stop`
                raise asyncio.CancelledError
            arrived = self._data_arrived
            payload = outcome.attempt(time.monotonic() >= deadline)
        return _encode(outcome.correlation_id, payload)
