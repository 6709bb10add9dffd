"""Length-prefixed framing of the Kafka protocol (a 4-byte big-endian size, then the frame).

Theory of operation: bytes go in, whole frames come out of `next_frame`. Bytes go in either by
copy (`receive_data`) or, for asyncio's `BufferedProtocol`, by letting the socket write straight
into free space (`get_buffer`, then `buffer_updated`). The announced size is checked against
`frame_bytes_max` *before* any room is made for it, so a client that announces a 2 GiB frame
costs us 4 bytes, not 2 GiB. An allowed size is not trusted either: room grows with the bytes
that actually arrive (a buffer that must grow at most doubles what is already buffered), so a
client that announces 100 MiB and sends one byte costs one read's worth (`read_bytes`), not
100 MiB, and a frame that does arrive costs its size plus one read, in a logarithmic number of
copies.

The buffer is never resized in place (a new one is allocated and the unread bytes moved), so a
`memoryview` from `get_buffer` that its caller still holds never blocks a later call.
"""

from __future__ import annotations

import struct

_SIZE = struct.Struct(">i")
READ_BYTES = 64 * 1024
# A buffer grown for a large frame is kept for the next one up to this size: producers send
# frames of about `batch.size` back to back.
RETAINED_BYTES_MAX = 4 * 1024 * 1024


class FrameError(Exception):
    """Raised by `FrameBuffer.next_frame` when the peer breaks framing; close the connection."""


class FrameBuffer:
    def __init__(self, frame_bytes_max: int, read_bytes: int = READ_BYTES) -> None:
        self._frame_bytes_max = frame_bytes_max
        self._read_bytes = read_bytes
        self._buffer = bytearray()  # allocated on the first read: an idle connection holds none
        self._start = 0  # first byte not yet returned as a frame
        self._end = 0  # end of the bytes received

    @property
    def frame_bytes_max(self) -> int:
        return self._frame_bytes_max

    @frame_bytes_max.setter
    def frame_bytes_max(self, value: int) -> None:
        """A new limit from the next frame on (a SASL connection's grows once authenticated)."""
        self._frame_bytes_max = value

    def receive_data(self, data: bytes) -> None:
        self._make_room(len(data))
        self._buffer[self._end : self._end + len(data)] = data
        self._end += len(data)

    def get_buffer(self) -> memoryview:
        """Free space to receive into: at least `read_bytes`. For a large frame whose size is
        known and allowed, the buffer grows geometrically toward the frame's end, though never
        beyond twice what is already here of it. Report what was written with `buffer_updated`."""
        grow_to = 0
        available = self._end - self._start
        if available >= 4:
            (size,) = _SIZE.unpack_from(self._buffer, self._start)
            if 0 <= size <= self._frame_bytes_max:
                grow_to = min(4 + size, 2 * available)
        self._make_room(self._read_bytes, grow_to)
        return memoryview(self._buffer)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes

    @property
    def buffered_bytes(self) -> int:
        return self._end - self._start

    @property
    def capacity_bytes(self) -> int:
        """Bytes allocated, buffered or free."""
        return len(self._buffer)

    @property
    def missing_bytes(self) -> int:
        """Bytes still to come of a frame partway received; 0 if none is (or its size prefix
        is refused, which `next_frame` reports)."""
        available = self._end - self._start
        if available == 0:
            return 0
        if available < 4:
            return 4 - available
        size: int = _SIZE.unpack_from(self._buffer, self._start)[0]
        if size < 0 or size > self._frame_bytes_max:
            return 0
        return max(4 + size - available, 0)

    def clear(self) -> None:
        """Drop what is buffered, and the allocation (the connection is gone)."""
        self._buffer = bytearray()
        self._start = self._end = 0

    def trim(self) -> None:
        """Let the allocation go if nothing is buffered (a quiet connection); the next read
        allocates again."""
        if self._start == self._end:
            self._buffer = bytearray()
            self._start = self._end = 0

    def next_frame(self) -> bytes | None:
        """The next whole frame, or None if more bytes are needed."""
        view = self.next_frame_view()
        if view is None:
            return None
        with view:
            return bytes(view)

    def next_frame_view(self) -> memoryview | None:
        """The next whole frame as a read-only view into the buffer (no copy), or None if more
        bytes are needed. The view is only valid until the next call that takes bytes in
        (`receive_data`, `get_buffer`): use it, and release it, before then."""
        available = self._end - self._start
        if available < 4:
            return None
        (size,) = _SIZE.unpack_from(self._buffer, self._start)
        if size < 0 or size > self._frame_bytes_max:
            raise FrameError(f"frame of {size} bytes (limit {self._frame_bytes_max} bytes)")
        if available < 4 + size:
            return None
        begin = self._start + 4
        frame = memoryview(self._buffer)[begin : begin + size].toreadonly()
        self._start = begin + size
        if self._start == self._end:
            self._start = self._end = 0
            if len(self._buffer) > RETAINED_BYTES_MAX:
                self._buffer = bytearray()  # goes with the view: a large frame is not kept
        return frame

    def _make_room(self, wanted: int, grow_to: int = 0) -> None:
        """At least `wanted` free bytes after the received ones; a buffer that must grow grows
        to at least `grow_to` bytes."""
        unread = self._end - self._start
        if unread == 0 and len(self._buffer) > RETAINED_BYTES_MAX >= wanted:
            self._buffer = bytearray(self._read_bytes)  # let a large buffer go
            self._start = self._end = 0
        if len(self._buffer) - self._end >= wanted:
            return
        if len(self._buffer) - unread >= wanted:
            if self._start:  # same length: moves bytes, never resizes
                self._buffer[:unread] = self._buffer[self._start : self._end]
        else:
            grown = bytearray(max(unread + wanted, grow_to, self._read_bytes))
            grown[:unread] = self._buffer[self._start : self._end]
            self._buffer = grown
        self._start, self._end = 0, unread


def frame(payload: bytes) -> bytes:
    return _SIZE.pack(len(payload)) + payload
