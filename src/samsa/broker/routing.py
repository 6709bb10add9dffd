"""Each handler reads one version of its API's request and writes that version's response.

kio generates one set of frozen dataclasses per version of every API. A handler is written
against the classes of the highest version samsa serves (`samsa.protocol.apis.SERVED`), so mypy
checks every field it reads or writes. `route` converts the request the client sent, of any
served version, up to that class before the handler runs (`samsa.protocol.versions`), and
`reply` converts the handler's response down to the version the client asked for. Both are the
identity for current clients' Produce and Fetch, which ask for the highest version.

Converting up fills a field the old version lacks with its default, as Kafka's generated classes
do, so a handler never asks which version it was sent for a field's value. Where an old version
carries something the new one holds elsewhere (LeaveGroup's `member_id` before v3, DeleteTopics'
`topic_names` before v6, FindCoordinator's `key` before v4), the route has a view that moves it,
as Kafka's request classes do (`LeaveGroupRequest.members()`, `DeleteTopicsRequest.topics()`).
An old version whose answer has another shape altogether (ListOffsets v0's list of offsets) has a
handler of its own, given to `route` as `older`.

The versions Kafka 4.0 removed (KIP-896) and Kafka 3.9 still served are served with classes
samsa generates in kio's shape (`samsa.protocol.legacy`); they are routed like any other.

Also here: the few conversions between kio's types and samsa's that many handlers need.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar, cast

from kio.static.primitive import TZAware, i32Timedelta
from kio.static.protocol import RequestPayload, ResponsePayload

from samsa.broker.outcomes import Outcome, Reply
from samsa.protocol import codec, versions
from samsa.protocol.apis import SERVED, ApiKey
from samsa.protocol.codec import Request

if TYPE_CHECKING:
    from samsa.broker.core import Broker

P = TypeVar("P", bound=RequestPayload)
Handler = Callable[["Broker", Request[RequestPayload]], Outcome]
NO_THROTTLE = i32Timedelta.parse(datetime.timedelta(0))


def route(
    request_class: type[P],
    handler: Callable[[Broker, Request[P]], Outcome],
    view: Callable[[Request[RequestPayload]], P] | None = None,
    older: Mapping[int, Handler] | None = None,
) -> tuple[ApiKey, Handler]:
    """The dispatch entry of `handler`, which reads `request_class` (the highest served
    version of its API); `view` makes one from an older version's request where converting
    field by field would lose something; `older` handles the versions it names itself."""
    api_key = ApiKey(request_class.__api_key__)
    if request_class.__version__ != SERVED[api_key].max:
        raise RuntimeError(
            f"{handler.__qualname__} reads {api_key.name} v{request_class.__version__}, "
            f"but v{SERVED[api_key].max} is the highest served"
        )

    def convert(request: Request[RequestPayload]) -> P:
        return versions.convert(request.payload, request_class)

    upgrade = view or convert
    own = dict(older or {})

    def handle(broker: Broker, request: Request[RequestPayload]) -> Outcome:
        if request.api_version in own:
            return own[request.api_version](broker, request)
        return handler(broker, request.with_payload(upgrade(request)))

    return api_key, handle


def response(request: Request[RequestPayload], payload: ResponsePayload) -> ResponsePayload:
    """`payload` as the version of the response the client asked for."""
    schema = codec.response_type(request.api_key, request.api_version)
    if schema is None:
        raise RuntimeError(
            f"no response schema for served api {request.api_key} v{request.api_version}"
        )
    return versions.convert(payload, schema)


def reply(request: Request[RequestPayload], payload: ResponsePayload) -> Reply:
    return Reply(request.correlation_id, response(request, payload))


def to_ms(value: datetime.timedelta) -> int:
    return int(value.total_seconds() * 1000)


def timestamp(ms: int) -> TZAware:
    """A timestamp field's value. Not `TZAware.parse`: kio 0.6's check wants whole seconds,
    its writer takes any aware datetime."""
    return cast(TZAware, datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC))
