"""Turning a coordinator's result into the response: at once, or once its writes are durable.

A coordinator returns a plain result, or a `Durable` of one: the result exists once its records
are fsynced, and computing it may ask for more durable writes (a chain). `answer` wraps either
into the outcome the server runs; `describe` turns the result into the response description.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from samsa.broker.outcomes import AwaitDurable, Outcome
from samsa.durability import Durable
from samsa.protocol.codec import Request

if TYPE_CHECKING:
    from samsa.broker.core import Broker

T = TypeVar("T")
Describe = Callable[[T], dict[str, Any]]


def answer(
    broker: Broker, request: Request, result: T | Durable[T], describe: Describe[T]
) -> Outcome:
    if isinstance(result, Durable):
        step: Durable[T] = result
        return AwaitDurable(
            request.correlation_id,
            step.waits,
            lambda failed: payload(broker, request, step.then(failed), describe),
        )
    return broker.reply(request, describe(result))


def payload(broker: Broker, request: Request, result: T | Durable[T], describe: Describe[T]) -> Any:
    """The response payload, or a `Durable` of it when the answer needs more writes first."""
    if isinstance(result, Durable):
        step: Durable[T] = result
        return Durable(
            step.waits, lambda failed: payload(broker, request, step.then(failed), describe)
        )
    return broker.reply(request, describe(result)).payload
