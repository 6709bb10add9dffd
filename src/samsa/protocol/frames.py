"""Length-prefixed framing of the Kafka protocol (a 4-byte big-endian size, then the frame).

Theory of operation: bytes go in with `receive_data`; whole frames come out of `next_frame`.
The announced size is checked against `frame_bytes_max` *before* anything is buffered for it, so
a client that announces a 2 GiB frame costs us 4 bytes, not 2 GiB.
"""

from __future__ import annotations

import struct

_SIZE = struct.Struct(">i")


class FrameError(Exception):
    """Raised by `FrameBuffer.next_frame` when the peer breaks framing; close the connection."""


class FrameBuffer:
    def __init__(self, frame_bytes_max: int) -> None:
        self._frame_bytes_max = frame_bytes_max
        self._buffer = bytearray()
        self._start = 0

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer) - self._start

    def next_frame(self) -> bytes | None:
        """The next whole frame, or None if more bytes are needed."""
        available = len(self._buffer) - self._start
        if available < 4:
            self._compact()
            return None
        (size,) = _SIZE.unpack_from(self._buffer, self._start)
        if size < 0 or size > self._frame_bytes_max:
            raise FrameError(f"frame of {size} bytes (limit {self._frame_bytes_max} bytes)")
        if available < 4 + size:
            self._compact()
            return None
        begin = self._start + 4
        with memoryview(self._buffer) as view:
            frame = bytes(view[begin : begin + size])  # one copy, not two
        self._start = begin + size
        return frame

    def _compact(self) -> None:
        if self._start:
            del self._buffer[: self._start]
            self._start = 0


def frame(payload: bytes) -> bytes:
    return _SIZE.pack(len(payload)) + payload
