"""Listener, timers and the outcomes of requests.

Connections (`samsa.server.connection`) cut frames and hand them to the broker; the server turns
each outcome into a future of its response: at once for a reply, on new data for a long-polling
fetch (once its connection has room for another response), and, for a durable write or a
group's slot, when the durability driver (`samsa.durability.Driver`) finishes it. The group
commit runs the driver's fsync rounds on worker threads; `drive` runs whatever they made ready
and answers the responses it finished. The listener (`samsa.server.listener`) admits
connections within their limits; a sweep closes connections idle past
`connections.max.idle.ms` and lets quiet ones' read buffers go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from samsa.broker.core import Broker
from samsa.broker.outcomes import (
    AwaitData,
    AwaitDurable,
    AwaitSlot,
    AwaitWork,
    NoReply,
    Outcome,
    RawFrame,
    Reply,
)
from samsa.durability import ContinuationFailed, Driver
from samsa.log.cleaner import LogCleaner
from samsa.log.scrub import Scrubber
from samsa.protocol import codec
from samsa.protocol.apis import SERVED, ApiKey
from samsa.protocol.frames import frame
from samsa.ratelog import RateLimitedLog, flush_all
from samsa.server.budget import RequestBudget, ResponseBytes
from samsa.server.connection import Connection, Parts, Pending, stop_all
from samsa.server.group_commit import GroupCommit
from samsa.server.listener import Bound, ConnectionQuotas, Listener, plaintext
from samsa.server.metrics import BrokerMetrics, Exporter, RequestTiming

log = logging.getLogger("samsa.server")
W = TypeVar("W")

# The hot path's schemas, at the versions current clients use: built at start, not on the first
# produce or fetch.
PRELOADED_APIS = (ApiKey.PRODUCE, ApiKey.FETCH)
# How long a clean shutdown waits for background work (transaction markers) to finish.
SHUTDOWN_DRAIN_S = 5.0
# How often the group coordinator looks for expired sessions and overdue rebalances.
GROUP_TICK_MS = 100
# The scrubber's pace: a slice of its byte budget every tick.
SCRUB_TICK_MS = 100
# The log cleaner's pace: every tick it works for at most a slice of the loop's time (so it
# takes at most a tenth of it and producers are not starved), and within
# log.cleaner.io.max.bytes.per.second; each `step` is a few batches, so a slice ends on time.
CLEAN_TICK_MS = 50
CLEAN_SLICE_S = 0.005
CLEAN_STEP_BYTES = 64 * 1024
# How often connections are looked over (idle ones closed, quiet ones' buffers let go), at most.
SWEEP_MS = 1000


def _built(responses: ResponseBytes, parts: Parts) -> Parts:
    responses.built(parts)
    return parts


class BrokerServer:
    def __init__(
        self,
        broker: Broker,
        listening: socket.socket | Sequence[Bound],
        exporter: Exporter | None = None,
    ) -> None:
        """`listening`: the listeners' sockets, bound; a bare socket is one PLAINTEXT listener.
        `exporter`: the metrics endpoint, bound (None: no metrics are kept)."""
        self.broker = broker
        bound = list(listening) if isinstance(listening, Sequence) else [plaintext(listening)]
        self._port: int = bound[0].sock.getsockname()[1]
        self.connections: set[Connection] = set()
        self.exporter = exporter
        self.metrics = BrokerMetrics(exporter.registry, self) if exporter is not None else None
        self.request_budget = RequestBudget(
            broker.config.queued_max_request_bytes, broker.config.socket_request_max_bytes
        )
        self.limited_log = RateLimitedLog(log)
        quotas = ConnectionQuotas(broker.config)  # max.connections counts every listener's
        self.listeners = [
            Listener(
                one,
                broker.config,
                self.connections,
                self._connection_factory(one),
                self.limited_log,
                quotas,
            )
            for one in bound
        ]
        self.listener = self.listeners[0]
        self.connections_closed_idle = 0
        self._data_arrived = asyncio.Event()
        # A response the driver finishes is keyed by its correlation id, its future, the
        # response bytes of its connection, where it is counted once built, and its request's
        # timing (metrics; None without).
        self.driver: Driver[tuple[int, Pending, ResponseBytes, RequestTiming | None]] = Driver(
            broker.take_background
        )
        self.group_commit = GroupCommit(
            self.driver,
            self._after_round,
            self.metrics.fsync_timer if self.metrics is not None else None,
        )
        self._timers: list[asyncio.Task[None]] = []
        self._long_polls: set[Pending] = set()
        # Admin work off the loop (`AwaitWork`), one job at a time, in the order it came.
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="samsa-admin")
        self._stopping = False
        self.connections_closed_for_errors = 0
        self.scrubber = Scrubber(
            broker.topics.logs, broker.clock_ms, broker.config.log_scrubber_interval_ms
        )
        self.cleaner = LogCleaner(
            broker.topics.logs, broker.clock_ms, broker.config.log_cleaner_backoff_ms
        )
        self.cleaner.offload_io = True
        self._cleaner_io = ThreadPoolExecutor(1, thread_name_prefix="samsa-cleaner")

    @property
    def port(self) -> int:
        """The first listener's port."""
        return self._port

    def ports(self) -> dict[str, int]:
        """Each listener's bound port by listener name."""
        return {one.bound.spec.name: one.bound.sock.getsockname()[1] for one in self.listeners}

    def notify_data(self) -> None:
        """Wake every long-polling fetch: some high watermark moved."""
        self._data_arrived.set()
        self._data_arrived = asyncio.Event()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Built once the broker is ready rather than before, so a start stays quick; the first
        # Produce or Fetch then does not pay for it.
        loop.call_soon(codec.preload, [(key, SERVED[key].max) for key in PRELOADED_APIS])
        for listener in self.listeners:
            listener.start()
        config = self.broker.config
        idle_ms = config.connections_max_idle_ms
        sweep_ms = SWEEP_MS if idle_ms < 0 else min(SWEEP_MS, max(idle_ms // 4, 10))
        self._timers.append(asyncio.create_task(self._every(sweep_ms, self._sweep)))
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
        if config.log_cleaner_enable:
            self._timers.append(asyncio.create_task(self._every(CLEAN_TICK_MS, self._clean)))
        self.drive()  # transactions left prepared by the last run

    async def stop(self) -> None:
        """Stop accepting, drop connections, make everything durable, close the logs."""
        self._stopping = True
        for listener in self.listeners:
            listener.stop()
        await stop_all(self.connections)
        for timer in self._timers:
            timer.cancel()
        # Let background work finish (transaction markers and the CompleteCommit after them),
        # so a clean restart has nothing left to complete.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_DRAIN_S
        while self.driver.background and loop.time() < deadline:
            self.drive()
            if not self.group_commit.running:
                break  # nothing left to fsync: what remains waits for something else
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.group_commit.idle(), deadline - loop.time())
        # Long polls too: their clients are gone, and left running they would read the logs
        # closed below.
        tasks: list[asyncio.Future[Any]] = [*self._timers, *self._long_polls]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.group_commit.close()
        if self.exporter is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.exporter.close)
        # Work under way finishes (its files are in place or cleaned up); its answer is not sent,
        # and what it made without an entry in topics.json the next start removes.
        self._worker.shutdown(wait=True)
        self._cleaner_io.shutdown(wait=True)
        self.broker.close()

    # ----------------------------------------------------------------- timers
    async def _every(self, interval_ms: int, action: Any) -> None:
        while True:
            await asyncio.sleep(max(interval_ms, 10) / 1000)
            try:
                await action()
            except Exception:
                # A task that fails fails again at its next tick (the group tick: every 100 ms).
                self.limited_log.error("periodic task %s failed", action.__name__, exc_info=True)

    async def _abort_timed_out_transactions(self) -> None:
        self.broker.txn.abort_timed_out()
        self.drive()

    async def _group_tick(self) -> None:
        self.broker.groups.tick()
        self.drive()

    async def _expire_transactional_ids(self) -> None:
        self.broker.txn.expire_ids()
        self.drive()

    # ----------------------------------------------------------------- the durability driver
    def drive(self) -> None:
        """Run every continuation whose writes are durable (and the broker's new background
        work), answer the responses they finished, and start an fsync round for what waits."""
        driver = self.driver
        background_runs = driver.background_runs
        while True:
            try:
                finished = driver.run()
                break
            except ContinuationFailed as exc:
                if exc.key is None:
                    self.limited_log.error(
                        "background work failed: %r", exc.__cause__, exc_info=True
                    )
                    continue
                _, future, _, _ = exc.key
                if not future.done() and exc.__cause__ is not None:
                    future.set_exception(exc.__cause__)  # its connection logs it and closes
        for (correlation_id, future, responses, timing), payload in finished:
            if future.done():
                continue
            try:
                future.set_result(_built(responses, self._encode(correlation_id, payload, timing)))
            except Exception as exc:
                future.set_exception(exc)
        if driver.background_runs != background_runs:
            self.notify_data()  # markers move last stable offsets
        self.group_commit.kick()

    def _after_round(self, advanced: bool) -> None:
        if advanced:
            self.notify_data()
        self.drive()

    async def _scrub(self) -> None:
        rate = self.broker.config.log_scrubber_bytes_per_second
        self.scrubber.step(max(rate * SCRUB_TICK_MS // 1000, 1))

    async def _clean(self) -> None:
        cleaner = self.cleaner
        if cleaner.pending_io is not None:
            # The fsyncs of a cleaned segment: on a worker thread, as the group commit's are.
            job, cleaner.pending_io = cleaner.pending_io, None
            await asyncio.get_running_loop().run_in_executor(self._cleaner_io, job.run)
        rate = self.broker.config.log_cleaner_io_max_bytes_per_second
        budget = rate * CLEAN_TICK_MS / 1000
        deadline = time.monotonic() + CLEAN_SLICE_S
        done = 0
        while done < budget and time.monotonic() < deadline:
            step = cleaner.step(int(min(CLEAN_STEP_BYTES, max(budget - done, 1))))
            if step == 0 or cleaner.pending_io is not None:
                break
            done += step

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
        self.driver.make_durable([(pl, pl.log_end_offset) for pl in self.broker.topics.logs()])
        self.group_commit.kick()
        await self.group_commit.idle()

    # ----------------------------------------------------------------- connections
    def _connection_factory(self, bound: Bound) -> Callable[[str], Connection]:
        def new_connection(ip: str) -> Connection:
            return Connection(self, ip, bound.spec)

        return new_connection

    def opened(self, connection: Connection) -> None:
        self.connections.add(connection)
        if self.metrics is not None:
            self.metrics.traffic.connections_accepted += 1

    def closed(self, connection: Connection) -> None:
        self.connections.discard(connection)
        if self.metrics is not None:
            self.metrics.traffic.connections_closed += 1
        for listener in self.listeners:
            if listener.bound.spec.name == connection.listener.name:
                listener.closed(connection)

    async def _sweep(self) -> None:
        """Close connections idle past connections.max.idle.ms; let quiet ones' buffers go."""
        idle_ms = self.broker.config.connections_max_idle_ms
        now = asyncio.get_running_loop().time()
        for connection in list(self.connections):
            if idle_ms >= 0 and (now - connection.last_active) * 1000 >= idle_ms:
                self.connections_closed_idle += 1
                log.debug("closing %s: idle for %d ms or more", connection.peer, idle_ms)
                connection.abort()
            elif not connection.received:
                connection.quiet()
            connection.received = False
        flush_all()

    def closing(self, peer: Any, reason: str) -> None:
        self.connections_closed_for_errors += 1
        self.limited_log.warning("closing connection from %s: %s", peer, reason)

    def failed(self, peer: Any) -> None:
        self.connections_closed_for_errors += 1
        self.limited_log.error(
            "request from %s failed; closing its connection", peer, exc_info=True
        )

    def _encode(self, correlation_id: int, payload: Any, timing: RequestTiming | None) -> Parts:
        if timing is not None and self.metrics is not None:
            self.metrics.finished(timing, payload)
        if isinstance(payload, RawFrame):
            return [frame(payload.data)]
        return codec.encode_response_parts(correlation_id, payload)

    def pending(
        self, outcome: Outcome, responses: ResponseBytes, timing: RequestTiming | None = None
    ) -> Pending | None:
        """A future of the response `outcome` asks for (None: no response). Each response is
        counted in `responses` as it is built; a long poll waits for room there first. What it
        registers with the driver goes on at the next `drive`, which the connection calls next.
        `timing`: the request's, for its metrics (None: not measured)."""
        loop = asyncio.get_running_loop()
        if isinstance(outcome, Reply):
            done: Pending = loop.create_future()
            parts = self._encode(outcome.correlation_id, outcome.payload, timing)
            done.set_result(_built(responses, parts))
            return done
        if isinstance(outcome, NoReply):
            if timing is not None and self.metrics is not None:
                self.metrics.finished(timing, None)
            return None
        if isinstance(outcome, AwaitDurable):
            if not self.broker.config.durable:
                self.notify_data()
            if outcome.finish is None:  # acks=0
                if timing is not None and self.metrics is not None:
                    self.metrics.finished(timing, None)
                self.driver.make_durable(outcome.waits)
                return None
            durable: Pending = loop.create_future()
            self.driver.respond(
                (outcome.correlation_id, durable, responses, timing), outcome.waits, outcome.finish
            )
            return durable
        if isinstance(outcome, AwaitData):
            arrived = self._data_arrived  # taken first: data arriving after the attempt wakes it
            if not responses.full:
                payload = outcome.attempt(outcome.max_wait_ms <= 0)
                if payload is not None:  # enough data already: answer without a long-poll task
                    ready: Pending = loop.create_future()
                    parts = self._encode(outcome.correlation_id, payload, timing)
                    ready.set_result(_built(responses, parts))
                    return ready
            poll: Pending = asyncio.ensure_future(
                self._long_poll(outcome, arrived, responses, timing)
            )
            self._long_polls.add(poll)
            poll.add_done_callback(self._long_polls.discard)
            return poll
        if isinstance(outcome, AwaitSlot):
            slotted: Pending = loop.create_future()
            self.driver.slot((outcome.correlation_id, slotted, responses, timing), outcome.slot)
            return slotted
        if isinstance(outcome, AwaitWork):
            return asyncio.ensure_future(self._off_loop(outcome, responses, timing))
        raise TypeError(f"unexpected outcome {outcome!r}")

    async def _off_loop(
        self, outcome: AwaitWork[W], responses: ResponseBytes, timing: RequestTiming | None
    ) -> Parts:
        loop = asyncio.get_running_loop()
        result: W | OSError
        try:
            result = await loop.run_in_executor(self._worker, outcome.work)
        except OSError as exc:
            result = exc
        payload = outcome.finish(result)
        self.drive()
        return _built(responses, self._encode(outcome.correlation_id, payload, timing))

    async def _long_poll(
        self,
        outcome: AwaitData,
        arrived: asyncio.Event,
        responses: ResponseBytes,
        timing: RequestTiming | None,
    ) -> Parts:
        """Attempt again each time data arrives, and finally at the deadline. `pending` made
        the first attempt, after taking `arrived`, and found too little (or did not make it: the
        connection had no room for another response). No attempt is made while the connection
        has no room: an attempt reads the data it answers with, so a client that does not read
        its socket gets nothing more built for it; its answer comes late, once it reads."""
        deadline = time.monotonic() + outcome.max_wait_ms / 1000
        payload = None
        while payload is None:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), remaining)
            await responses.room()
            if self._stopping:  # Python 3.11's wait_for can swallow the cancel from `stop`
                raise asyncio.CancelledError
            arrived = self._data_arrived
            payload = outcome.attempt(time.monotonic() >= deadline)
        return _built(responses, self._encode(outcome.correlation_id, payload, timing))
