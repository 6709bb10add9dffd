"""A test fixture for the authorizer: take a client's requests as coming from a principal.

Until a listener authenticates the connection (SASL, TLS client certificates), tests of the
ACL checks over the wire need requests from different principals. This stands in for that,
and only in tests: requests whose client id is a key of `by_client_id` are taken to come from
its principal. It authenticates nothing; a broker never has it set unless a test set it.

    with embedded_broker(settings=AUTHORIZER) as broker:
        as_principals(broker, {"alice-app": "User:alice"})
        Producer({"bootstrap.servers": broker.bootstrap, "client.id": "alice-app"})
"""

from __future__ import annotations

from collections.abc import Mapping

from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.security import AUTHORIZER_CLASS


def authorizer_settings(super_users: str = "User:admin", **more: str) -> dict[str, str]:
    """Broker settings that turn the authorizer on with `super_users`."""
    return {"authorizer.class.name": AUTHORIZER_CLASS, "super.users": super_users, **more}


def as_principals(broker: EmbeddedBroker, by_client_id: Mapping[str, str]) -> None:
    """From now on (and after a restart of this `EmbeddedBroker`'s server, not), requests
    with one of these client ids are taken to come from its principal."""

    def install() -> None:
        if broker.server is None:
            raise RuntimeError("the embedded broker is not running")
        broker.server.broker.test_principals.update(by_client_id)

    broker.call(install)
