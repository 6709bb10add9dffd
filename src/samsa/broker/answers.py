"""Turning a coordinator's result into the response: at once, or once its writes are durable.

A coordinator returns a plain result, or a `Durable` of one: the result exists once its records
are fsynced, and computing it may ask for more durable writes (a chain). `answer` wraps either
into the outcome the server runs; `describe` turns the result into the response (of the
handler's version: `samsa.broker.routing.response` converts it to the client's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from kio.static.protocol import RequestPayload, ResponsePayload

from samsa.broker.outcomes import AwaitDurable, Outcome
from samsa.broker.routing import reply, response
from samsa.durability import Durable
from samsa.protocol.codec import Request

T = TypeVar("T")
Describe = Callable[[T], ResponsePayload]


def answer(
    request: Request[RequestPayload], result: T | Durable[T], describe: Describe[T]
) -> Outcome:
    if isinstance(result, Durable):
        step: Durable[T] = result
        return AwaitDurable(
            request.correlation_id,
            step.waits,
            lambda failed: payload(request, step.then(failed), describe),
        )
    return reply(request, describe(result))


def payload(
    request: Request[RequestPayload], result: T | Durable[T], describe: Describe[T]
) -> ResponsePayload | Durable[ResponsePayload]:
    """The response payload, or a `Durable` of it when the answer needs more writes first."""
    if isinstance(result, Durable):
        step: Durable[T] = result
        return Durable(step.waits, lambda failed: payload(request, step.then(failed), describe))
    return response(request, describe(result))
