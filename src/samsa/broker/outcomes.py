"""What a handler asks the server to do with a request: the only contract between the two.

The continuations behind `AwaitDurable` and `AwaitSlot` (`Durable`, `Slot`) live in
`samsa.durability`, below both the broker and the coordinators, which return them too. A payload
is a kio response of the version the client asked for (`Broker.response` converts to it), or a
`RawFrame` for the few versions kio has no classes for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kio.static.protocol import ResponsePayload

from samsa.durability import Durable, Failed, Slot, Waits

W = TypeVar("W")


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A response already encoded, header included (only for versions kio lacks)."""

    data: bytes


Payload = ResponsePayload | RawFrame


@dataclass(frozen=True, slots=True)
class Reply:
    """Send `payload` now (in request order)."""

    correlation_id: int
    payload: Payload


@dataclass(frozen=True, slots=True)
class NoReply:
    """acks=0 produce: nothing goes back."""


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection; the stream can no longer be trusted or the client must notice."""

    reason: str


@dataclass(frozen=True, slots=True)
class AwaitDurable:
    """Reply once each log's high watermark reaches its offset (fsync group commit).

    `finish` builds the payload (or a `Durable` payload, to wait again); it gets the logs whose
    sync failed.
    """

    correlation_id: int
    waits: Waits
    finish: Callable[[Failed], ResponsePayload | Durable[ResponsePayload]] | None  # None: acks=0


@dataclass(frozen=True, slots=True)
class AwaitData:
    """Long poll: call `attempt(final)` now and whenever data arrives; it returns the payload,
    or None while `min_bytes` are not there. At `max_wait_ms`, it is called with final=True."""

    correlation_id: int
    max_wait_ms: int
    attempt: Callable[[bool], ResponsePayload | None]


@dataclass(frozen=True, slots=True)
class AwaitSlot:
    """Reply with whatever the slot is resolved with (in request order)."""

    correlation_id: int
    slot: Slot


@dataclass(frozen=True, slots=True)
class AwaitWork(Generic[W]):
    """Run `work` off the event loop (file-system work too long to stall other clients: a
    topic's partition directories), then `finish(result)` on it, which returns the payload.
    `result` is what `work` returned, or the OSError it raised. `work` touches only storage,
    never broker state: `finish` does that."""

    correlation_id: int
    work: Callable[[], W]
    finish: Callable[[W | OSError], ResponsePayload]


# What `work` returns is between it and its `finish`: the server only hands it over.
Outcome = Reply | NoReply | Close | AwaitDurable | AwaitData | AwaitSlot | AwaitWork[Any]
