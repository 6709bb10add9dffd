"""Listener and connections.

Each connection has a reader and a writer task. The reader cuts frames, hands each to the broker
(which changes state at once, in arrival order) and queues a future for its response; the writer
sends responses in request order as they complete. The queue is bounded by
`queued.max.requests`: when it is full the reader stops reading, and TCP pushes back on the
client. A malformed frame or a handler fault closes that connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any

from samsa.broker.core import Broker
from samsa.broker.outcomes import (
    AwaitData,
    AwaitDurable,
    AwaitSlot,
    Close,
    Durable,
    Later,
    NoReply,
    Outcome,
    Reply,
)
from samsa.broker.unsupported import RawFrame
from samsa.protocol import codec
from samsa.protocol.frames import FrameBuffer, FrameError, frame
from samsa.server.group_commit import GroupCommit

log = logging.getLogger("samsa.server")

READ_CHUNK_BYTES = 256 * 1024
# How often the group coordinator looks for expired sessions and overdue rebalances.
GROUP_TICK_MS = 100
_CLOSE = object()


def _encode(correlation_id: int, payload: Any) -> bytes:
    if isinstance(payload, RawFrame):
        return frame(payload.data)
    return codec.encode_response(correlation_id, payload)


class BrokerServer:
    def __init__(self, broker: Broker, sock: socket.socket) -> None:
        self.broker = broker
        self._sock = sock
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._data_arrived = asyncio.Event()
        self.group_commit = GroupCommit(self.notify_data)
        self._timers: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self.connections_closed_for_errors = 0

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    def notify_data(self) -> None:
        """Wake every long-polling fetch: some high watermark moved."""
        self._data_arrived.set()
        self._data_arrived = asyncio.Event()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, sock=self._sock, limit=1 << 16)
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
        self._run_background()  # transactions left prepared by the last run

    async def stop(self) -> None:
        """Stop accepting, drop connections, make everything durable, close the logs."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._timers) + list(self._connections) + list(self._background)
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
        self._run_background()

    async def _group_tick(self) -> None:
        self.broker.groups.tick()
        self._run_background()

    async def _expire_transactional_ids(self) -> None:
        self.broker.txn.expire_ids()
        self._run_background()

    # ----------------------------------------------------------------- background work
    def _run_background(self) -> None:
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
            self._run_background()
            self.notify_data()

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
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        peer = writer.get_extra_info("peername")
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # asyncio only sets this for sockets created with proto=IPPROTO_TCP; without it a
            # pipelined second response waits for the client's delayed ACK (40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.broker.config.queued_max_requests)
        sender = asyncio.create_task(self._send(writer, queue))
        clean = False
        try:
            await self._receive(reader, queue, peer)
            await queue.put(_CLOSE)
            await sender
            clean = True
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Shutdown. The task ends normally: asyncio's stream callback logs a cancelled
            # connection task as an error on Python 3.11.
            pass
        finally:
            sender.cancel()
            if clean:
                writer.close()
            else:
                writer.transport.abort()
            if task is not None:
                self._connections.discard(task)

    async def _receive(
        self, reader: asyncio.StreamReader, queue: asyncio.Queue[Any], peer: Any
    ) -> None:
        frames = FrameBuffer(self.broker.config.socket_request_max_bytes)
        while True:
            data = await reader.read(READ_CHUNK_BYTES)
            if not data:
                return
            frames.receive_data(data)
            while True:
                try:
                    request = frames.next_frame()
                except FrameError as exc:
                    self._closing(peer, str(exc))
                    return
                if request is None:
                    break
                try:
                    outcome = self.broker.handle_frame(request)
                    if isinstance(outcome, Close):
                        self._closing(peer, outcome.reason)
                        return
                    pending = self._pending(outcome)  # encodes a Reply: that can fail too
                    self._run_background()
                except Exception:
                    log.exception("request from %s failed; closing its connection", peer)
                    self.connections_closed_for_errors += 1
                    return
                if pending is not None:
                    await queue.put(pending)

    def _closing(self, peer: Any, reason: str) -> None:
        self.connections_closed_for_errors += 1
        log.warning("closing connection from %s: %s", peer, reason)

    def _pending(self, outcome: Outcome) -> asyncio.Future[bytes | None] | None:
        loop = asyncio.get_running_loop()
        if isinstance(outcome, Reply):
            done: asyncio.Future[bytes | None] = loop.create_future()
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
            return asyncio.ensure_future(self._long_poll(outcome))
        if isinstance(outcome, AwaitSlot):
            return asyncio.ensure_future(self._slot(outcome))
        raise TypeError(f"unexpected outcome {outcome!r}")

    async def _after_sync(
        self, outcome: AwaitDurable, synced: asyncio.Future[set[Any]]
    ) -> bytes | None:
        failed = await synced
        if outcome.finish is None:
            return None
        payload = outcome.finish(failed)
        self._run_background()
        while isinstance(payload, Durable):
            failed = await self.group_commit.wait(payload.waits)
            payload = payload.then(failed)
            self._run_background()
        return _encode(outcome.correlation_id, payload)

    async def _slot(self, outcome: AwaitSlot) -> bytes:
        resolved: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def settle(value: Any) -> None:
            if not resolved.done():
                resolved.set_result(value)

        outcome.slot.subscribe(settle)
        payload = await resolved
        while isinstance(payload, Durable):
            failed = await self.group_commit.wait(payload.waits)
            payload = payload.then(failed)
            self._run_background()
        return _encode(outcome.correlation_id, payload)

    async def _long_poll(self, outcome: AwaitData) -> bytes:
        deadline = time.monotonic() + outcome.max_wait_ms / 1000
        payload = outcome.attempt(False)
        while payload is None:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._data_arrived.wait(), remaining)
            payload = outcome.attempt(time.monotonic() >= deadline)
        return _encode(outcome.correlation_id, payload)

    async def _send(self, writer: asyncio.StreamWriter, queue: asyncio.Queue[Any]) -> None:
        broken = False
        while True:
            pending = await queue.get()
            if pending is _CLOSE:
                if not broken:
                    await writer.drain()
                return
            if broken:
                continue  # keep taking from the queue so the reader never blocks on it
            try:
                data = await pending
            except Exception:
                log.exception("building a response failed; closing the connection")
                # The reader sees the connection fail and queues _CLOSE.
                writer.transport.abort()
                broken = True
                continue
            if data is None:
                continue
            writer.write(data)
            if writer.transport.get_write_buffer_size() > 1 << 20 or queue.empty():
                await writer.drain()
