"""SASL on the wire (`samsa.security.sasl`): what Kafka's SaslServerAuthenticator accepts before
authentication, its errors, and that a failed or out-of-order client is closed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import scramp
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12.request import MetadataRequest
from kio.schema.sasl_authenticate.v2.request import SaslAuthenticateRequest
from kio.schema.sasl_handshake.v0.request import SaslHandshakeRequest as SaslHandshakeRequestV0
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest

from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.security import Security
from samsa.testing.wire import Conn

METADATA = MetadataRequest(topics=None, include_topic_authorized_operations=False)
VERSIONS = ApiVersionsRequest(client_software_name="t", client_software_version="1")


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    security = Security(
        listeners=("SASL_PLAINTEXT", "PLAINTEXT"),
        users={"alice": "alice-secret"},
        mechanisms=("PLAIN", "SCRAM-SHA-256"),
    )
    with EmbeddedBroker(security=security) as running:
        yield running


def _conn(broker: EmbeddedBroker) -> Conn:
    return Conn(broker.clients.bootstrap("SASL_PLAINTEXT"))


def _handshake(conn: Conn, mechanism: str) -> None:
    response = conn.request(SaslHandshakeRequest(mechanism=mechanism))
    assert response.error_code == ErrorCode.none
    assert set(response.mechanisms) == {"PLAIN", "SCRAM-SHA-256"}


def test_metadata_before_authenticating_closes_the_connection(broker: EmbeddedBroker) -> None:
    with _conn(broker) as conn:
        conn.send(METADATA)
        assert conn.is_closed_by_peer()


def test_metadata_after_the_handshake_but_before_authenticating_is_closed(
    broker: EmbeddedBroker,
) -> None:
    with _conn(broker) as conn:
        assert conn.request(VERSIONS).error_code == ErrorCode.none
        _handshake(conn, "PLAIN")
        conn.send(METADATA)
        assert conn.is_closed_by_peer()


def test_plain_authenticates_and_then_everything_is_served(broker: EmbeddedBroker) -> None:
    with _conn(broker) as conn:
        conn.request(VERSIONS)
        _handshake(conn, "PLAIN")
        response = conn.request(SaslAuthenticateRequest(auth_bytes=b"\0alice\0alice-secret"))
        assert response.error_code == ErrorCode.none
        assert conn.request(METADATA).brokers[0].port == broker.clients.ports["SASL_PLAINTEXT"]
        # Kafka: a second handshake after authentication is an illegal state.
        again = conn.request(SaslHandshakeRequest(mechanism="PLAIN"))
        assert again.error_code == ErrorCode.illegal_sasl_state


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (b"\0alice\0wrong", "Authentication failed: Invalid username or password"),
        (b"\0mallory\0alice-secret", "Authentication failed: Invalid username or password"),
        (b"\0alice", "Invalid SASL/PLAIN response: expected 3 tokens"),
    ],
)
def test_plain_failures_get_kafkas_error_and_close(
    broker: EmbeddedBroker, token: bytes, message: str
) -> None:
    with _conn(broker) as conn:
        _handshake(conn, "PLAIN")
        response = conn.request(SaslAuthenticateRequest(auth_bytes=token))
        assert response.error_code == ErrorCode.sasl_authentication_failed
        assert response.error_message == message
        assert conn.is_closed_by_peer()


def test_an_unsupported_mechanism_is_refused_with_the_enabled_ones(
    broker: EmbeddedBroker,
) -> None:
    with _conn(broker) as conn:
        response = conn.request(SaslHandshakeRequest(mechanism="SCRAM-SHA-512"))
        assert response.error_code == ErrorCode.unsupported_sasl_mechanism
        assert set(response.mechanisms) == {"PLAIN", "SCRAM-SHA-256"}
        assert conn.is_closed_by_peer()


@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("mallory", "x")])
def test_scram_wrong_password_or_unknown_user_fails(
    broker: EmbeddedBroker, user: str, password: str
) -> None:
    client = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
    with _conn(broker) as conn:
        _handshake(conn, "SCRAM-SHA-256")
        first = conn.request(SaslAuthenticateRequest(auth_bytes=client.get_client_first().encode()))
        if first.error_code == ErrorCode.none:  # a known user: the proof is what fails
            client.set_server_first(first.auth_bytes.decode())
            final = client.get_client_final().encode()
            first = conn.request(SaslAuthenticateRequest(auth_bytes=final))
        assert first.error_code == ErrorCode.sasl_authentication_failed
        assert first.error_message == (
            "Authentication failed during authentication due to invalid credentials with SASL "
            "mechanism SCRAM-SHA-256"
        )
        assert conn.is_closed_by_peer()


def test_scram_exchange_proves_the_server_too(broker: EmbeddedBroker) -> None:
    client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "alice-secret")
    with _conn(broker) as conn:
        _handshake(conn, "SCRAM-SHA-256")
        first = conn.request(SaslAuthenticateRequest(auth_bytes=client.get_client_first().encode()))
        client.set_server_first(first.auth_bytes.decode())
        final = conn.request(SaslAuthenticateRequest(auth_bytes=client.get_client_final().encode()))
        assert final.error_code == ErrorCode.none
        client.set_server_final(final.auth_bytes.decode())  # raises if the server's proof is bad
        assert conn.request(METADATA).brokers


def test_handshake_v0_takes_raw_tokens(broker: EmbeddedBroker) -> None:
    """KIP-152's legacy: after SaslHandshake v0 the tokens travel without Kafka headers."""
    with _conn(broker) as conn:
        response = conn.request(SaslHandshakeRequestV0(mechanism="PLAIN"))
        assert response.error_code == ErrorCode.none
        token = b"\0alice\0alice-secret"
        conn.send_raw(len(token).to_bytes(4, "big") + token)
        assert conn.recv_frame() == b""
        assert conn.request(METADATA).brokers


def test_the_plaintext_listener_serves_without_authentication(broker: EmbeddedBroker) -> None:
    with Conn(broker.clients.bootstrap("PLAINTEXT")) as conn:
        metadata = conn.request(METADATA)
        assert metadata.brokers[0].port == broker.clients.ports["PLAINTEXT"]
        refused = conn.request(SaslHandshakeRequest(mechanism="PLAIN"))
        assert refused.error_code == ErrorCode.illegal_sasl_state


def test_principals_are_the_authenticated_users(broker: EmbeddedBroker) -> None:
    with _conn(broker) as sasl, Conn(broker.clients.bootstrap("PLAINTEXT")) as plain:
        _handshake(sasl, "PLAIN")
        sasl.request(SaslAuthenticateRequest(auth_bytes=b"\0alice\0alice-secret"))
        plain.request(METADATA)
        server = broker.server
        assert server is not None
        principals = broker.call(lambda: sorted(c.principal for c in server.connections))
        assert principals == ["User:ANONYMOUS", "User:alice"]


def test_an_unauthenticated_client_cannot_send_a_large_frame(broker: EmbeddedBroker) -> None:
    """sasl.server.max.receive.size (512 KiB): a larger size prefix before authentication
    closes the connection; once authenticated, socket.request.max.bytes applies."""
    with _conn(broker) as conn:
        conn.send_raw((600 * 1024).to_bytes(4, "big") + b"\0" * 1024)
        assert conn.is_closed_by_peer()
    with _conn(broker) as conn:
        _handshake(conn, "PLAIN")
        conn.request(SaslAuthenticateRequest(auth_bytes=b"\0alice\0alice-secret"))
        big = SaslAuthenticateRequest(auth_bytes=b"x" * 600 * 1024)
        # A valid request larger than the pre-authentication limit is served now.
        assert conn.request(big).error_code == ErrorCode.illegal_sasl_state
