"""The ACL matrix (test_acl_matrix.py's `ROWS`, every row) with real principals: each request
is sent on a connection authenticated with SASL/SCRAM as the row's user over a SASL_PLAINTEXT
listener, and each right granted with CreateAcls by a super user authenticated the same way.
No test stand-in: the principal is the one SCRAM proved."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kio.schema.errors import ErrorCode
from kio.static.protocol import RequestPayload

from samsa.testing import EmbeddedBroker, Security
from samsa.testing.wire import Conn, SaslFailed, create_topics_request
from security.test_acl_matrix import (
    ROWS,
    TOPIC,
    Grant,
    Row,
    create_acl,
    error_codes,
    walk,
)

pytestmark = pytest.mark.interop
USERS = {name: f"{name}-secret" for name in ("admin", "alice", "bob", "carol", "dave", "frank")}
MECHANISM = "SCRAM-SHA-256"


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    security = Security(listeners=("SASL_PLAINTEXT",), users=USERS, super_users=["admin"])
    with EmbeddedBroker(security=security) as running:
        with connect(running, "admin") as conn:
            assert error_codes(conn.request(create_topics_request(TOPIC, 1))) == {ErrorCode.none}
        yield running


def connect(broker: EmbeddedBroker, user: str) -> Conn:
    return Conn(broker.bootstrap, sasl=(MECHANISM, user, USERS[user]))


def sent(broker: EmbeddedBroker, user: str, request: RequestPayload) -> set[int]:
    with connect(broker, user) as conn:
        return error_codes(conn.request(request))


def grant(broker: EmbeddedBroker, g: Grant, principal: str) -> None:
    with connect(broker, "admin") as conn:
        create_acl(conn, g, principal)


@pytest.mark.parametrize("row", ROWS, ids=[row.api for row in ROWS])
def test_each_right_is_checked_for_the_authenticated_user(broker: EmbeddedBroker, row: Row) -> None:
    walk(
        row,
        lambda user, request: sent(broker, user, request),
        lambda g, principal: grant(broker, g, principal),
    )


def test_a_wrong_password_gets_no_connection(broker: EmbeddedBroker) -> None:
    with pytest.raises(SaslFailed, match="sasl_authentication_failed"):
        Conn(broker.bootstrap, sasl=(MECHANISM, "alice", "bob-secret"))
