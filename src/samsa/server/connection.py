"""One client connection: frames in, responses out in request order.

The socket writes straight into the connection's `FrameBuffer` (an asyncio `BufferedProtocol`:
no StreamReader copies). Each whole frame goes to the broker at once, in arrival order
(`handle_frame` changes state before it returns); its response, or a future of it, joins a queue
that a sender task empties in request order. With `queued.max.requests` responses queued the
connection stops reading, frames already received wait in the buffer, and TCP pushes back on
the client. A malformed frame, a `Close` outcome or a handler fault stops reading: what was
answered before it is still sent, then this connection (only) is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any, Protocol, cast

from samsa.broker.core import Broker
from samsa.broker.outcomes import Close, Outcome
from samsa.protocol.frames import FrameBuffer, FrameError

log = logging.getLogger("samsa.server")

Parts = list[bytes | bytearray]  # one response frame, as buffers to send one after the other
Pending = asyncio.Future[Parts | None]


class Owner(Protocol):
    """What a connection needs from its server."""

    broker: Broker
    connections: set[Connection]

    def pending(self, outcome: Outcome) -> Pending | None: ...
    def drive(self) -> None: ...
    def closing(self, peer: Any, reason: str) -> None: ...
    def failed(self, peer: Any) -> None: ...


class Connection(asyncio.BufferedProtocol):
    def __init__(self, owner: Owner) -> None:
        config = owner.broker.config
        self._owner = owner
        self._frames = FrameBuffer(config.socket_request_max_bytes)
        self._queued_max = config.queued_max_requests
        # Responses in request order; None asks the sender to close the connection.
        self._queue: asyncio.Queue[Pending | None] = asyncio.Queue()
        self._transport: asyncio.Transport | None = None
        self._peer: Any = None
        self._done = False  # no more requests are taken
        self._reading_paused = False
        self._writable = asyncio.Event()
        self._writable.set()
        self.sender: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # asyncio only sets this for sockets created with proto=IPPROTO_TCP; without it a
            # pipelined second response waits for the client's delayed ACK (40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sender = asyncio.get_running_loop().create_task(self._send())
        self._owner.connections.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._frames.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self._frames.buffer_updated(nbytes)
        self._take_frames()

    def eof_received(self) -> bool:
        self._finish()
        return True  # keep the transport open: the sender closes it after the last response

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._done = True
        self._writable.set()
        if self.sender is not None:
            self.sender.cancel()
        self._owner.connections.discard(self)

    def abort(self) -> None:
        """Drop the connection now (server shutdown)."""
        if self._transport is not None:
            self._transport.abort()
        if self.sender is not None:
            self.sender.cancel()

    # ----------------------------------------------------------------- requests
    def _take_frames(self) -> None:
        """Hand each whole frame received to the broker while the queue has room; stop or
        resume reading to match."""
        while not self._done and self._queue.qsize() < self._queued_max:
            try:
                request = self._frames.next_frame_view()  # valid until the next read
            except FrameError as exc:
                self._owner.closing(self._peer, str(exc))
                self._finish()
                return
            if request is None:
                break
            try:
                outcome = self._owner.broker.handle_frame(request)
                if isinstance(outcome, Close):
                    self._owner.closing(self._peer, outcome.reason)
                    self._finish()
                    return
                pending = self._owner.pending(outcome)  # encodes a Reply: that can fail too
                self._owner.drive()
            except Exception:
                self._owner.failed(self._peer)
                self._finish()
                return
            finally:
                request.release()  # the broker keeps copies of what it needs, never the frame
            if pending is not None:
                self._queue.put_nowait(pending)
        if self._done or self._transport is None:
            return
        full = self._queue.qsize() >= self._queued_max
        if full != self._reading_paused:
            self._reading_paused = full
            if full:
                self._transport.pause_reading()
            else:
                self._transport.resume_reading()

    def _finish(self) -> None:
        """Take no more requests; close once the responses queued so far are sent."""
        if self._done:
            return
        self._done = True
        if self._transport is not None:
            self._transport.pause_reading()
        self._queue.put_nowait(None)

    # ----------------------------------------------------------------- responses
    async def _send(self) -> None:
        transport = self._transport
        if transport is None:
            return
        while True:
            pending = await self._queue.get()
            if pending is None:
                transport.close()  # after what is buffered has been written
                return
            self._take_frames()  # the queue has room again
            try:
                # Shielded: when the connection goes, the work behind its response (say a
                # coordinator transition waiting for its fsync) must still run to the end.
                parts = await asyncio.shield(pending)
            except Exception:
                log.exception("building a response failed; closing the connection")
                transport.abort()
                return
            if parts is None:
                continue
            for part in parts:
                transport.write(part)
            await self._writable.wait()


async def stop_all(connections: set[Connection]) -> None:
    """Abort every connection and wait for their senders to end."""
    senders = [c.sender for c in connections if c.sender is not None]
    for connection in list(connections):
        connection.abort()
    for sender in senders:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
