"""The fault-injecting TCP proxy: asyncio at the edge, decisions in `faults.Injector`.

Theory of operation: each accepted client gets its own upstream connection and two tasks.
The request task cuts client bytes into frames, asks the injector what to do with each request,
queues the ones that expect a response and forwards them. The response task cuts broker bytes
into frames and matches each to the head of that queue by correlation id (Kafka answers a
connection's requests in order), then forwards, delays or swallows it. Swallowing a response (the
lost acknowledgment) cuts the connection right after: a client only learns of a lost response by
a timeout or a disconnect, and the disconnect makes tests fast.

A cut aborts the client side (it sees a reset) and closes the upstream side gracefully, so a
request already forwarded still reaches the broker. While a black-hole is open every frame, in
either direction, is read and thrown away; connections stay up.

All control methods are plain functions that run to completion on the proxy's event loop; use
`EmbeddedChaosProxy` to drive a proxy from another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, NoReturn

from samsa.chaos.faults import FaultEvent, Injector
from samsa.chaos.schedule import Decision, Fault, Schedule
from samsa.chaos.stats import FaultStats
from samsa.chaos.wire import RequestInfo, WireError, read_request, read_response_correlation_id
from samsa.protocol.frames import FrameBuffer, FrameError, frame
from samsa.ratelog import INTERVAL_S, RateLimitedLog

log = logging.getLogger("samsa.chaos")

READ_CHUNK_BYTES = 256 * 1024
# Above the broker's socket.request.max.bytes and any fetch response a client asks for.
FRAME_BYTES_MAX = 256 * 1024 * 1024
# Kafka clients keep at most a handful of requests in flight; past this something is wrong.
IN_FLIGHT_REQUESTS_MAX = 1024
CONNECT_TIMEOUT_MS = 5000
_LINGER_ZERO = struct.pack("ii", 1, 0)

Address = tuple[str, int]


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class _Pending:
    request: RequestInfo
    decision: Decision


class _Closed(Exception):
    """Raised inside a link's tasks when the link has been cut or closed: stop moving bytes."""


class _Link:
    """One client connection and the upstream connection opened for it."""

    def __init__(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
    ) -> None:
        self.client_reader = client_reader
        self.client_writer = client_writer
        self.upstream_reader = upstream_reader
        self.upstream_writer = upstream_writer
        self.pending: deque[_Pending] = deque()
        self.closed = False

    def cut(self) -> None:
        if self.closed:
            return
        self.closed = True
        sock = self.client_writer.get_extra_info("socket")
        if sock is not None:
            # Linger 0: closing sends a reset, as a crashed broker or a dropped route would.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        self.client_writer.transport.abort()
        self.upstream_writer.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.client_writer.close()
        self.upstream_writer.close()

    def match(self, correlation_id: int) -> _Pending | None:
        """The request this response answers, if it is the oldest one waiting."""
        if self.pending and self.pending[0].request.correlation_id == correlation_id:
            return self.pending.popleft()
        return None


class ChaosProxy:
    def __init__(
        self,
        upstream: Address | None,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        schedule: Schedule | None = None,
        *,
        clock_ms: Callable[[], int] = monotonic_ms,
        frame_bytes_max: int = FRAME_BYTES_MAX,
        in_flight_requests_max: int = IN_FLIGHT_REQUESTS_MAX,
        connect_timeout_ms: int = CONNECT_TIMEOUT_MS,
    ) -> None:
        """`upstream` may be None at first and set before clients connect: a test can then
        start the proxy, start the broker advertising the proxy's port, and point the proxy at
        the broker."""
        self.upstream = upstream
        self.listen_host = listen_host
        self._listen_port = listen_port
        self._clock_ms = clock_ms
        self._frame_bytes_max = frame_bytes_max
        self._in_flight_requests_max = in_flight_requests_max
        self._connect_timeout_ms = connect_timeout_ms
        self._injector = Injector(schedule)
        self._stats = FaultStats()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # A broker that is down is met by every reconnect of every client: one line a while.
        self._warnings = RateLimitedLog(log, clock=lambda: self._clock_ms() / 1000)
        self._reporter: asyncio.Task[None] | None = None

    # -- lifecycle

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.listen_host, self._listen_port, limit=READ_CHUNK_BYTES
        )
        self._reporter = asyncio.create_task(self._report_warnings())

    async def _report_warnings(self) -> None:
        """So a burst of warnings that stops is still counted in the log."""
        while True:
            await asyncio.sleep(INTERVAL_S)
            self._warnings.flush()

    async def stop(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            self._reporter = None
        self._warnings.flush()
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the chaos proxy is not listening; call start() first")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def bootstrap(self) -> str:
        return f"{self.listen_host}:{self.port}"

    # -- control

    def drop_next_response(self, api_key: int | None = None, count: int | None = 1) -> None:
        """Forward the next `count` matching requests, swallow their responses, and cut."""
        self._injector.add_rule(Decision(Fault.DROP_RESPONSE), api_key, count)

    def cut_next_request(
        self,
        api_key: int | None = None,
        count: int | None = 1,
        when: Literal["before", "after"] = "before",
    ) -> None:
        """Cut the connection of the next `count` matching requests, before forwarding the
        request (the broker never sees it) or right after (it may or may not process it)."""
        fault = Fault.CUT_BEFORE if when == "before" else Fault.CUT_AFTER
        self._injector.add_rule(Decision(fault), api_key, count)

    def delay(self, ms: int, api_key: int | None = None, count: int | None = None) -> None:
        """Hold back the responses to the next `count` matching requests (None: until
        `clear()`) by `ms` milliseconds each."""
        if ms < 0:
            raise ValueError(f"cannot delay by {ms} ms")
        self._injector.add_rule(Decision(Fault.DELAY, ms), api_key, count)

    def blackhole(self, seconds: float, *, forward_requests: bool = False) -> None:
        """For `seconds`, read every frame in either direction and forward none. With
        `forward_requests`, requests still reach the broker and only the responses vanish:
        the broker does the work and every acknowledgment of it is lost."""
        self._injector.start_blackhole(
            self._clock_ms(), round(seconds * 1000), requests=not forward_requests
        )
        self._stats.blackholes += 1

    def cut_all(self) -> int:
        """Cut every open connection now; returns how many were cut."""
        links = [link for link in self._links if not link.closed]
        for link in links:
            link.cut()
        self._stats.cuts += len(links)
        return len(links)

    def clear(self) -> None:
        """Forget pending commands and end any black-hole; the schedule stays."""
        self._injector.clear()

    def set_schedule(self, schedule: Schedule | None) -> None:
        self._injector.schedule = schedule

    @property
    def schedule(self) -> Schedule | None:
        return self._injector.schedule

    def stats(self) -> FaultStats:
        """A snapshot of the counters."""
        return self._stats.copy()

    def fault_log(self) -> list[FaultEvent]:
        """Every non-pass decision so far (the most recent 10,000), in request order."""
        return list(self._injector.fault_log)

    @property
    def connections(self) -> int:
        return sum(1 for link in self._links if not link.closed)

    # -- traffic

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(client_reader, client_writer)
        except asyncio.CancelledError:
            # stop() cancels open connections; asyncio (3.11) would log a cancelled connection
            # task as an error of its callback, so it ends here, quietly.
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _serve(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self._stats.connections_accepted += 1
        upstream = self.upstream
        try:
            if upstream is None:
                raise ConnectionRefusedError("the chaos proxy has no upstream yet")
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(*upstream, limit=READ_CHUNK_BYTES),
                self._connect_timeout_ms / 1000,
            )
        except (OSError, TimeoutError) as exc:
            self._stats.upstream_connect_failures += 1
            self._warnings.warning("chaos proxy: cannot reach upstream %s: %r", upstream, exc)
            client_writer.transport.abort()
            return
        link = _Link(client_reader, client_writer, upstream_reader, upstream_writer)
        self._links.add(link)
        requests = asyncio.create_task(self._pump(link, self._requests))
        responses = asyncio.create_task(self._pump(link, self._responses))
        try:
            await asyncio.wait({requests, responses}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            link.close()
            self._links.discard(link)
            for task in (requests, responses):
                task.cancel()
            for task in (requests, responses):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _pump(self, link: _Link, move: Callable[[_Link], Awaitable[None]]) -> None:
        try:
            await move(link)
        except (_Closed, OSError):
            pass
        except (FrameError, WireError) as exc:
            self._stats.frame_errors += 1
            self._warnings.warning("chaos proxy: closing a connection: %s", exc)

    async def _requests(self, link: _Link) -> None:
        frames = FrameBuffer(self._frame_bytes_max)
        while True:
            data = await link.client_reader.read(READ_CHUNK_BYTES)
            if not data or link.closed:
                return
            frames.receive_data(data)
            while (payload := frames.next_frame()) is not None:
                self._on_request(link, payload)
            await link.upstream_writer.drain()

    def _on_request(self, link: _Link, payload: bytes) -> None:
        if link.closed:
            raise _Closed
        request = read_request(payload)
        if self._injector.blackholed(self._clock_ms(), request=True):
            self._stats.blackholed_requests += 1
            return
        decision = self._injector.decide(request)
        if decision.fault is Fault.CUT_BEFORE:
            self._cut(link)
        if request.expects_response:
            if len(link.pending) >= self._in_flight_requests_max:
                self._stats.in_flight_overflows += 1
                link.close()
                raise _Closed
            link.pending.append(_Pending(request, decision))
        link.upstream_writer.write(frame(payload))
        forwarded = self._stats.requests_forwarded
        forwarded[request.api_key] = forwarded.get(request.api_key, 0) + 1
        if decision.fault is Fault.CUT_AFTER:
            self._cut(link)

    def _cut(self, link: _Link) -> NoReturn:
        self._stats.cuts += 1
        link.cut()
        raise _Closed

    async def _responses(self, link: _Link) -> None:
        frames = FrameBuffer(self._frame_bytes_max)
        while True:
            data = await link.upstream_reader.read(READ_CHUNK_BYTES)
            if not data or link.closed:
                return
            frames.receive_data(data)
            while (payload := frames.next_frame()) is not None:
                verdict = self._on_response(link, payload)
                if verdict is None:
                    continue
                api_key, delay_ms = verdict
                if delay_ms:
                    await link.client_writer.drain()
                    await asyncio.sleep(delay_ms / 1000)
                    if link.closed:
                        raise _Closed
                    if self._injector.blackholed(self._clock_ms()):
                        # A black-hole opened while the response was held back.
                        self._stats.blackholed_responses += 1
                        continue
                link.client_writer.write(frame(payload))
                if api_key is not None:
                    forwarded = self._stats.responses_forwarded
                    forwarded[api_key] = forwarded.get(api_key, 0) + 1
            await link.client_writer.drain()

    def _on_response(self, link: _Link, payload: bytes) -> tuple[int | None, int] | None:
        """(api key if known, ms to hold the response back), or None to swallow it."""
        if link.closed:
            raise _Closed
        correlation_id = read_response_correlation_id(payload)
        pending = link.match(correlation_id)
        if self._injector.blackholed(self._clock_ms()):
            self._stats.blackholed_responses += 1
            return None
        if pending is None:
            # Not the oldest request's answer: we lost track of this connection. Pass it on
            # untouched (the client can judge it) but count it.
            self._stats.unmatched_responses += 1
            return None, 0
        if pending.decision.fault is Fault.DROP_RESPONSE:
            self._stats.dropped_responses += 1
            link.cut()
            raise _Closed
        if pending.decision.fault is Fault.DELAY:
            self._stats.delays += 1
            self._stats.delay_ms_total += pending.decision.delay_ms
            return pending.request.api_key, pending.decision.delay_ms
        return pending.request.api_key, 0
