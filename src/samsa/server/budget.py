"""Bounds on the bytes that requests and responses hold: broker-wide for requests, per
connection for responses.

`RequestBudget` is `queued.max.request.bytes`, as Kafka's memory pool: the bytes of every request
read and not yet handled, from its first byte in a connection's buffer until the broker takes it
(a request is handled the moment it is whole, unless its connection waits for its own client;
the broker keeps copies of what it needs and lets the frame go, as Kafka's request handler
releases the request buffer once the handler returns; what the request holds after that is its
response, which `ResponseBytes` bounds). Connections charge what they receive and ask
`allowance` before each read; a read is never offered more than the room left, so the sum stays
within the limit.

Where Kafka reserves a request's whole size from its size prefix (5 bytes could reserve
100 MiB), samsa charges bytes as they arrive. That alone could deadlock once the budget is spent
on half-read requests, so one connection at a time (the first to ask) may finish the request it
is partway through, within an overdraft of one request (`socket.request.max.bytes`): the total
never exceeds the limit plus one request.

`ResponseBytes` is `queued.max.response.bytes.per.connection`: a connection's responses built
and not yet taken by its socket. At the bound the connection stops reading requests and its long
polls stop building answers (`room()`), so a client that does not read its socket costs at most
the bound plus one response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence, Sized
from typing import Protocol

UNBOUNDED = 1 << 62


class Reader(Protocol):
    def budget_room(self) -> None:
        """Called when a read that `allowance` refused may now be allowed."""


class RequestBudget:
    def __init__(self, limit_bytes: int, overdraft_bytes: int) -> None:
        self.limit_bytes = limit_bytes if limit_bytes > 0 else UNBOUNDED  # Kafka: <= 0 unbounded
        self.overdraft_bytes = overdraft_bytes
        self.used_bytes = 0
        self.peak_bytes = 0
        self._blocked: dict[Reader, None] = {}  # insertion-ordered: woken first come first
        self._finisher: Reader | None = None  # may finish its partial request past the limit

    def allowance(self, reader: Reader, missing_bytes: int) -> int:
        """Bytes `reader` may read now; 0: none until `reader.budget_room()` is called.

        `missing_bytes`: what the reader lacks of the request it is partway through (0 at a
        request boundary)."""
        room = self.limit_bytes - self.used_bytes
        if self._finisher is reader and missing_bytes == 0:
            self._set_finisher(None)  # its request is whole
        if room > 0:
            return room
        overdraft = room + self.overdraft_bytes
        if missing_bytes > 0 and overdraft > 0 and self._finisher in (None, reader):
            self._finisher = reader
            return min(missing_bytes, overdraft)
        self._blocked[reader] = None
        return 0

    def charge(self, nbytes: int) -> None:
        self.used_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.used_bytes)

    def release(self, nbytes: int) -> None:
        if nbytes <= 0:
            return
        self.used_bytes -= nbytes
        if self._blocked and self.used_bytes < self.limit_bytes:
            self._wake()

    def forget(self, reader: Reader) -> None:
        """`reader` is gone, or no longer reading for reasons of its own."""
        self._blocked.pop(reader, None)
        if self._finisher is reader:
            self._set_finisher(None)

    def _set_finisher(self, reader: Reader | None) -> None:
        self._finisher = reader
        if reader is None:
            self._wake()  # another half-read request may now be finished

    def _wake(self) -> None:
        blocked = list(self._blocked)
        self._blocked.clear()
        for reader in blocked:
            reader.budget_room()


class ResponseBytes:
    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.queued_bytes = 0
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False

    @property
    def full(self) -> bool:
        return self.queued_bytes >= self.limit_bytes and not self._closed

    def built(self, parts: Sequence[Sized]) -> int:
        """A response of `parts` is ready to send; its size."""
        size = sum(len(part) for part in parts)
        if not self._closed:
            self.queued_bytes += size
            if self.full:
                self._room.clear()
        return size

    def sent(self, nbytes: int) -> None:
        """The socket took `nbytes` of responses."""
        self.queued_bytes = max(self.queued_bytes - nbytes, 0)
        if not self.full:
            self._room.set()

    async def room(self) -> None:
        """Return once another response may be built (at once below the bound)."""
        while self.full:
            await self._room.wait()

    def close(self) -> None:
        """The connection is gone: nothing is counted any more, nobody waits."""
        self._closed = True
        self.queued_bytes = 0
        self._room.set()
