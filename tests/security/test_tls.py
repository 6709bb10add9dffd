"""TLS listeners (`samsa.security.tls`): client authentication as `ssl.client.auth` says, the
certificate subject as principal, and Kafka's principal mapping rules."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from kio.schema.metadata.v12.request import MetadataRequest

from samsa.config import ConfigError
from samsa.protocol import codec
from samsa.security import certs, tls
from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.security import Security
from samsa.testing.wire import Conn

METADATA = MetadataRequest(topics=None, include_topic_authorized_operations=False)


def test_default_rule_keeps_the_distinguished_name_as_java_prints_it(tmp_path: object) -> None:
    files = certs.create(f"{tmp_path}/certs", clients=["alice"])
    with open(files.client_cert("alice"), "rb") as f:
        der = ssl.PEM_cert_to_DER_cert(f.read().decode())
    name = tls.subject_name(der)
    assert name == "CN=alice,OU=samsa,O=samsa"
    assert tls.map_principal(tls.parse_rules("DEFAULT"), name) == name


def test_rules_rewrite_the_first_name_they_match_whole() -> None:
    rules = tls.parse_rules(
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, RULE:^CN=([^,]*),.*$/svc-$1/U, DEFAULT"
    )
    assert tls.map_principal(rules, "CN=Kafka,OU=ServiceUsers,O=x") == "kafka"
    assert tls.map_principal(rules, "CN=bob,OU=other") == "SVC-BOB"
    assert tls.map_principal(rules, "O=only") == "O=only"
    with pytest.raises(ValueError):
        tls.map_principal(tls.parse_rules("RULE:^CN=(.*)$/$1/"), "O=x")
    with pytest.raises(ConfigError):
        tls.parse_rules("RULE:broken")


@pytest.fixture(scope="module")
def requested() -> Iterator[EmbeddedBroker]:
    security = Security(listeners=("SSL",), users={"alice": "x"}, ssl_client_auth="requested")
    with EmbeddedBroker(security=security) as running:
        yield running


def _principals(broker: EmbeddedBroker) -> list[str]:
    server = broker.server
    assert server is not None
    return broker.call(lambda: sorted(c.principal for c in server.connections))


def _refused(sock: ssl.SSLSocket) -> bool:
    """Did the broker refuse this connection? With TLS 1.3 the refusal of a client certificate
    arrives after the client's handshake, with its first read."""
    try:
        sock.sendall(codec.encode_request(1, "t", METADATA))
        return sock.recv(1) == b""
    except (ssl.SSLError, ConnectionError):
        return True
    finally:
        sock.close()


def _tls_conn(broker: EmbeddedBroker, context: ssl.SSLContext) -> ssl.SSLSocket:
    host, port = broker.clients.bootstrap().rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=5)
    return context.wrap_socket(raw, server_hostname="localhost")


def test_principal_of_certificate_holders_and_others(requested: EmbeddedBroker) -> None:
    sock_cert = _tls_conn(requested, requested.clients.ssl_context("alice"))
    sock_anon = _tls_conn(requested, requested.clients.ssl_context(None))
    try:
        for sock in (sock_cert, sock_anon):
            Conn.over(sock).request(METADATA)
        assert _principals(requested) == ["User:ANONYMOUS", "User:CN=alice,OU=samsa,O=samsa"]
    finally:
        sock_cert.close()
        sock_anon.close()


def test_required_client_auth_refuses_a_client_without_a_certificate(tmp_path: object) -> None:
    security = Security(listeners=("SSL",), users={"alice": "x"}, ssl_client_auth="required")
    with EmbeddedBroker(security=security) as broker:
        assert _refused(_tls_conn(broker, broker.clients.ssl_context(None)))
        assert not _refused(_tls_conn(broker, broker.clients.ssl_context("alice")))


def test_an_untrusted_client_certificate_is_refused(tmp_path: object) -> None:
    other = certs.create(f"{tmp_path}/other", clients=["eve"])
    security = Security(listeners=("SSL",), users={"alice": "x"}, ssl_client_auth="requested")
    with EmbeddedBroker(security=security) as broker:
        context = ssl.create_default_context(cafile=broker.clients.files.ca)  # type: ignore[union-attr]
        context.load_cert_chain(other.client_cert("eve"), other.client_key("eve"))
        assert _refused(_tls_conn(broker, context))


def test_a_client_that_does_not_trust_the_broker_refuses_it(
    requested: EmbeddedBroker, tmp_path: object
) -> None:
    other = certs.create(f"{tmp_path}/other")
    with pytest.raises(ssl.SSLCertVerificationError):
        _tls_conn(requested, ssl.create_default_context(cafile=other.ca))


def test_tls_settings_without_a_keystore_refuse_the_start() -> None:
    with pytest.raises(RuntimeError) as info:
        EmbeddedBroker(settings={"listeners": "SSL://127.0.0.1:0"}).start()
    assert isinstance(info.value.__cause__, ConfigError)


def test_describe_configs_never_shows_the_private_key(tmp_path: object) -> None:
    files = certs.create(f"{tmp_path}/certs")
    with open(files.server_keystore) as f:
        pem = f.read()
    key = pem[: pem.index("-----END PRIVATE KEY-----") + len("-----END PRIVATE KEY-----")]
    chain = pem[len(key) :]
    settings = {
        "listeners": "SSL://127.0.0.1:0",
        "ssl.keystore.key": key,
        "ssl.keystore.certificate.chain": chain,
    }
    with EmbeddedBroker(settings=settings) as broker:
        admin = AdminClient(
            {
                "bootstrap.servers": broker.bootstrap,
                "security.protocol": "SSL",
                "ssl.ca.location": files.ca,
            }
        )
        resource = ConfigResource(ConfigResource.Type.BROKER, "1")
        described = admin.describe_configs([resource])[resource].result(10)
        entry = described["ssl.keystore.key"]
        assert entry.is_sensitive and entry.value is None
        assert described["ssl.keystore.certificate.chain"].value == chain.strip()
