"""One client connection: frames in, responses out in request order, within bounds.

The socket writes straight into the connection's `FrameBuffer` (an asyncio `BufferedProtocol`:
no StreamReader copies). Each whole frame goes to the broker at once, in arrival order
(`handle_frame` changes state before it returns); its response, or a future of it, joins a queue
that a sender task empties in request order. A malformed frame, a `Close` outcome or a handler
fault stops reading: what was answered before it is still sent, then this connection (only) is
closed.

Reading pauses (frames already received wait in the buffer, and TCP pushes back on the client)
while any of these holds:
- `queued.max.requests` requests of this connection are not answered yet;
- `queued.max.response.bytes.per.connection` bytes of its responses are built and not yet taken
  by its socket (a client that does not read): its long polls wait too (`ResponseBytes.room`);
- the broker-wide `queued.max.request.bytes` is spent (`RequestBudget`): bytes count from their
  arrival until the response of their request is built.

A closed connection lets go of everything at once: its buffer, its queued responses, its share
of the request budget, its long polls (a fetch only reads, so it is cancelled; other work, such
as a coordinator transition waiting for its fsync, runs to its end), and nothing it owned refers
back to it, so no reference cycle waits for the cyclic GC.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import socket
from typing import Any, Protocol, cast

from samsa.broker.core import Broker
from samsa.broker.outcomes import AwaitData, Close, Outcome
from samsa.log.storage import FileRegion
from samsa.protocol import codec
from samsa.protocol.frames import FrameBuffer, FrameError
from samsa.security import tls
from samsa.security.listeners import ListenerSpec, SecurityProtocol
from samsa.security.sasl import Authenticator
from samsa.server.budget import RequestBudget, ResponseBytes
from samsa.server.metrics import BrokerMetrics, RequestTiming

Parts = list[codec.Part]  # one response frame, as buffers to send one after the other
Pending = asyncio.Future[Parts | None]
# Room a read is offered when the request budget has none: asyncio needs a non-empty buffer for
# a read it has already decided to make; the next check pauses reading.
MIN_READ_BYTES = 1


class Owner(Protocol):
    """What a connection needs from its server."""

    broker: Broker
    request_budget: RequestBudget
    metrics: BrokerMetrics | None

    def opened(self, connection: Connection) -> None: ...
    def closed(self, connection: Connection) -> None: ...
    def pending(
        self, outcome: Outcome, responses: ResponseBytes, timing: RequestTiming | None
    ) -> Pending | None: ...
    def drive(self) -> None: ...
    def closing(self, peer: Any, reason: str) -> None: ...
    def failed(self, peer: Any) -> None: ...


PLAINTEXT = ListenerSpec("PLAINTEXT", SecurityProtocol.PLAINTEXT, "", 0)


class Connection(asyncio.BufferedProtocol):
    def __init__(self, owner: Owner, ip: str = "", listener: ListenerSpec = PLAINTEXT) -> None:
        config = owner.broker.config
        self.ip = ip
        self.client_host = f"/{ip}"  # as Kafka reports a client: Java's InetAddress.toString
        self.listener = listener
        # Who the client is: set once TLS or SASL authenticated it (KafkaPrincipal's form).
        self.principal = tls.ANONYMOUS
        # SASL listeners: every frame goes here until the client has authenticated.
        self.authenticator: Authenticator | None = None
        if listener.protocol.sasl:
            self.authenticator = Authenticator(config, owner.broker.credentials)
        self._owner: Owner | None = owner
        self._metrics = owner.metrics
        self._budget = owner.request_budget
        self._frames = FrameBuffer(config.socket_request_max_bytes)
        self._frame_bytes_max = config.socket_request_max_bytes
        if self.authenticator is not None:
            # Kafka's bound on what an unauthenticated client may make the broker buffer.
            self._frames.frame_bytes_max = min(
                config.sasl_server_max_receive_size, config.socket_request_max_bytes
            )
        self._queued_max = config.queued_max_requests
        self.responses = ResponseBytes(config.queued_max_response_bytes_per_connection)
        # Responses in request order; None asks the sender to close the connection.
        self._queue: collections.deque[Pending | None] = collections.deque()
        self._queued = asyncio.Event()
        # Long polls not answered yet: a fetch only reads, so they end with the connection.
        self._long_polls: set[Pending] = set()
        self._charged_bytes = 0  # this connection's share of the request budget
        self._transport: asyncio.Transport | None = None
        self.peer: Any = None
        self._done = False  # no more requests are taken
        self.opened = False  # connection_made ran
        self.closing = False  # aborted or lost
        self._reading = True
        self._writable = asyncio.Event()
        self._writable.set()
        self.sender: asyncio.Task[None] | None = None
        self.last_active = 0.0  # loop time of the last byte in or out
        self.received = False  # bytes arrived since the server last looked (`quiet`)

    # ----------------------------------------------------------------- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # asyncio only sets this for sockets created with proto=IPPROTO_TCP; without it a
            # pipelined second response waits for the client's delayed ACK (40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.listener.protocol is SecurityProtocol.SSL:
            principal = tls.peer_principal(
                transport.get_extra_info("ssl_object"),
                tls.parse_rules(self._owner.broker.config.ssl_principal_mapping_rules)
                if self._owner is not None
                else [],
            )
            if principal is None:  # no ssl.principal.mapping.rules apply: Kafka refuses it
                self._transport.abort()
                return
            self.principal = principal
        loop = asyncio.get_running_loop()
        self.opened = True
        self.last_active = loop.time()
        self.sender = loop.create_task(self._send())
        if self._owner is not None:
            self._owner.opened(self)
        self._update_reading()

    def get_buffer(self, sizehint: int) -> memoryview:
        view = self._frames.get_buffer()
        allowance = self._budget.allowance(self, self._frames.missing_bytes)
        if allowance < len(view):
            return view[: max(allowance, MIN_READ_BYTES)]
        return view

    def buffer_updated(self, nbytes: int) -> None:
        self._frames.buffer_updated(nbytes)
        self._budget.charge(nbytes)
        self._charged_bytes += nbytes
        if self._metrics is not None:
            self._metrics.traffic.bytes_received += nbytes
        self.received = True
        self.last_active = asyncio.get_running_loop().time()
        self._take_frames()

    def eof_received(self) -> bool:
        self._finish()
        # Keep the transport open: the sender closes it after the last response. (TLS has no
        # half-close: asyncio closes it whatever this says, and warns if told otherwise.)
        return not self.listener.protocol.tls

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()
        self.last_active = asyncio.get_running_loop().time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._done = True
        self.closing = True
        self._writable.set()
        owner, self._owner = self._owner, None
        if owner is not None:
            owner.closed(self)
        self._budget.forget(self)
        self._budget.release(self._charged_bytes)
        self._charged_bytes = 0
        for poll in self._long_polls:
            poll.cancel()
        self._long_polls.clear()
        for pending in self._queue:  # their file regions go now, not when collected
            if pending is not None and _built_parts(pending):
                codec.close_regions(pending.result() or [])
        self._queue.clear()
        self._frames.clear()
        self.responses.close()
        sender, self.sender = self.sender, None
        if sender is not None:
            sender.cancel()
        self._transport = None

    def abort(self) -> None:
        """Drop the connection now (server shutdown, idle, or to free its file descriptor)."""
        self.closing = True
        if self._transport is not None:
            self._transport.abort()
        elif self.sender is not None:
            self.sender.cancel()

    # ----------------------------------------------------------------- state for the server
    @property
    def busy(self) -> bool:
        """Work is under way for this client, or part of a request is here."""
        return bool(self._queue) or self._frames.buffered_bytes > 0

    def quiet(self) -> None:
        """Nothing arrived for a while: let the read buffer go until the next read."""
        self._frames.trim()

    def budget_room(self) -> None:
        self._update_reading()

    # ----------------------------------------------------------------- requests
    def _take_frames(self) -> None:
        """Hand each whole frame received to the broker while this connection's bounds have
        room; then stop or resume reading to match."""
        while not self._done and len(self._queue) < self._queued_max and not self.responses.full:
            try:
                request = self._frames.next_frame_view()  # valid until the next read
            except FrameError as exc:
                self._fail(str(exc))
                return
            if request is None:
                break
            size = 4 + request.nbytes
            owner = self._owner
            if owner is None:
                request.release()
                return
            authenticator = self.authenticator
            timing = self._metrics.start(request) if self._metrics is not None else None
            try:
                if authenticator is not None and not authenticator.complete:
                    outcome = authenticator.receive(owner.broker, request, self.client_host)
                else:
                    outcome = owner.broker.handle_frame(
                        request, self.client_host, self.principal, self.listener.name
                    )
                if isinstance(outcome, Close):
                    self._fail(outcome.reason)
                    return
                pending = owner.pending(outcome, self.responses, timing)  # encodes: can fail
                owner.drive()
            except Exception:
                owner.failed(self.peer)
                self._finish()
                return
            finally:
                request.release()  # the broker keeps copies of what it needs, never the frame
                self._charged_bytes -= size
                self._budget.release(size)
            if pending is not None:
                if isinstance(outcome, AwaitData) and not pending.done():
                    self._long_polls.add(pending)
                    pending.add_done_callback(self._long_polls.discard)
                self._queue.append(pending)
                self._queued.set()
            if authenticator is not None and authenticator.principal is not None:
                self.principal = authenticator.principal
                self._frames.frame_bytes_max = self._frame_bytes_max
            if authenticator is not None and authenticator.failed:
                # Kafka sends the error, then closes: nothing more is read.
                self._fail(authenticator.failure)
                return
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self._done:
            return
        if len(self._queue) >= self._queued_max or self.responses.full:
            self._budget.forget(self)  # waiting for its own client: no claim on the budget
            wanted = False
        else:
            wanted = self._budget.allowance(self, self._frames.missing_bytes) > 0
        if wanted != self._reading:
            self._reading = wanted
            if wanted:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def _fail(self, reason: str) -> None:
        if self._owner is not None:
            self._owner.closing(self.peer, reason)
        self._finish()

    def _finish(self) -> None:
        """Take no more requests; close once the responses queued so far are sent."""
        if self._done:
            return
        self._done = True
        self._budget.forget(self)
        if self._transport is not None:
            self._transport.pause_reading()
        self._queue.append(None)
        self._queued.set()

    # ----------------------------------------------------------------- responses
    async def _send(self) -> None:
        transport = self._transport
        if transport is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._queued.clear()
                await self._queued.wait()
                continue
            pending = self._queue.popleft()
            if pending is None:
                transport.close()  # after what is buffered has been written
                return
            self._take_frames()  # the queue has room again
            try:
                # Shielded: when the connection goes, the work behind its response (say a
                # coordinator transition waiting for its fsync) must still run to the end.
                parts = pending.result() if pending.done() else await asyncio.shield(pending)
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._owner is not None:  # building its response failed: the same fault
                    self._owner.failed(self.peer)
                transport.abort()
                return
            if parts is None:
                continue
            size = 0
            try:
                for part in parts:
                    if isinstance(part, FileRegion):
                        await self._send_region(transport, part)
                    else:
                        transport.write(part)
                    size += len(part)
            except OSError:  # the client went, or the file no longer holds the region
                transport.abort()
                return
            finally:
                codec.close_regions(parts)
            self.last_active = loop.time()
            if self._metrics is not None:
                self._metrics.traffic.bytes_sent += size
            await self._writable.wait()
            self.responses.sent(size)
            if not self.responses.full:
                self._take_frames()

    async def _send_region(self, transport: asyncio.Transport, region: FileRegion) -> None:
        """Send `region` after what the transport holds, from its file: asyncio's
        `loop.sendfile` waits for the transport to be empty, then calls `os.sendfile` each time
        the socket has room (a slow client holds it up as it would a write). A TLS transport
        encrypts what it sends, so it gets the region read instead.

        asyncio moves the descriptor's file offset when it is done; the duplicate shares it with
        the segment's own descriptor, which is harmless: that one only appends (O_APPEND) and
        reads at explicit positions."""
        if self.listener.protocol.tls:
            transport.write(region.read())
            return
        loop = asyncio.get_running_loop()
        with open(region.fd, "rb", buffering=0, closefd=False) as file:
            try:
                sent = await loop.sendfile(
                    transport, file, region.position, region.size, fallback=False
                )
            except (OSError, RuntimeError) as exc:  # the client went, or the transport closes
                # asyncio's future keeps the exception, whose traceback holds these frames and
                # that future: a cycle that would keep this connection until the cyclic GC.
                exc.__traceback__ = None
                raise OSError(f"sendfile: {exc!r}") from None
            finally:
                # loop.sendfile pauses reading while it sends and resumes it after; this
                # connection may have decided to pause meanwhile.
                if not self._reading and not transport.is_closing():
                    transport.pause_reading()
        if sent != region.size:
            raise OSError(errno.EIO, f"the file ends inside a region: {sent} of {region.size}")


def _built_parts(pending: Pending) -> bool:
    """`pending` holds a built response."""
    return pending.done() and not pending.cancelled() and pending.exception() is None


async def stop_all(connections: set[Connection]) -> None:
    """Abort every connection and wait for their senders to end."""
    senders = [c.sender for c in connections if c.sender is not None]
    for connection in list(connections):
        connection.abort()
    for sender in senders:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
