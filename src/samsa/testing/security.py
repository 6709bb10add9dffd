"""A secured embedded broker in one line: listeners, users and certificates from arguments, and
ready client configurations per user.

    security = Security(listeners=("SASL_SSL",), users={"alice": "alice-secret"})
    with embedded_broker(security=security) as broker:
        producer = confluent_kafka.Producer(broker.clients.confluent("alice"))
        consumer = aiokafka.AIOKafkaConsumer(**broker.clients.aiokafka("alice"))

Certificates (a CA, the server's, one per user with subject `CN=<user>,OU=samsa,O=samsa`, and
one named `client`) are made on the fly in a temporary directory; users get SCRAM-SHA-256 and
-512 credentials (PLAIN checks against them). Each listener is named after its protocol and
bound to 127.0.0.1 on a free port. ACLs are another field of `Security` once samsa has them.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from samsa.log.storage import OsStorage
from samsa.security import certs
from samsa.security.credentials import SCRAM_MECHANISMS, CredentialStore, from_password

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class Security:
    """What the broker's security is: its listeners (by protocol), its users (name: password),
    its SASL mechanisms and whether TLS clients must show a certificate."""

    listeners: tuple[str, ...] = ("SASL_SSL",)
    users: Mapping[str, str] = field(default_factory=dict)
    mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
    ssl_client_auth: str = "none"  # none, requested or required

    def __post_init__(self) -> None:
        unknown = [p for p in self.listeners if p not in PROTOCOLS]
        if unknown or not self.listeners:
            raise ValueError(f"listeners must be some of {', '.join(PROTOCOLS)}; got {unknown}")

    @property
    def tls(self) -> bool:
        return any(p in ("SSL", "SASL_SSL") for p in self.listeners)


def settings(security: Security, files: certs.CertFiles | None) -> dict[str, str]:
    """The broker settings for `security` (listeners on free ports of 127.0.0.1)."""
    result = {
        "listeners": ",".join(f"{p}://127.0.0.1:0" for p in security.listeners),
        "sasl.enabled.mechanisms": ",".join(security.mechanisms),
        "ssl.client.auth": security.ssl_client_auth,
    }
    if files is not None:
        result["ssl.keystore.location"] = files.server_keystore
        result["ssl.truststore.location"] = files.ca
    return result


def prepare(security: Security, data_dir: str, certs_dir: str) -> certs.CertFiles | None:
    """Certificates into `certs_dir` (if a listener uses TLS) and users into `data_dir`."""
    files = None
    if security.tls:
        files = certs.create(certs_dir, clients=[*security.users, "client"])
    os.makedirs(data_dir, exist_ok=True)
    store = CredentialStore(OsStorage(), data_dir)
    store.load()
    store.apply(
        [
            (user, mechanism, from_password(mechanism, password))
            for user, password in security.users.items()
            for mechanism in SCRAM_MECHANISMS
        ],
        [],
    )
    return files


@dataclass(frozen=True)
class _Parts:
    """One client's settings, before each client library's spelling of them."""

    listener: str
    bootstrap: str
    sasl: tuple[str, str, str] | None  # mechanism, user, password
    ca: str | None
    certificate: tuple[str, str] | None  # certificate file, key file


@dataclass(frozen=True)
class ClientConfigs:
    """Client settings for one secured broker: `protocol` picks the listener (the first one by
    default); `user` authenticates with SASL (`mechanism`) on SASL listeners and presents that
    user's certificate on TLS ones (`certificate=False`: none)."""

    security: Security
    ports: Mapping[str, int]
    files: certs.CertFiles | None
    host: str = "127.0.0.1"

    def _listener(self, protocol: str | None) -> str:
        chosen = protocol or self.security.listeners[0]
        if chosen not in self.ports:
            raise ValueError(f"the broker has no {chosen} listener ({', '.join(self.ports)})")
        return chosen

    def bootstrap(self, protocol: str | None = None) -> str:
        return f"{self.host}:{self.ports[self._listener(protocol)]}"

    def _certificate(self, user: str | None, certificate: bool) -> tuple[str, str] | None:
        if self.files is None or not certificate or user is None:
            return None
        return self.files.client_cert(user), self.files.client_key(user)

    def _parts(
        self,
        user: str | None,
        protocol: str | None,
        mechanism: str,
        password: str | None,
        certificate: bool,
    ) -> _Parts:
        listener = self._listener(protocol)
        sasl = None
        if "SASL" in listener and user is not None:
            sasl = (mechanism, user, password or self.security.users[user])
        ca = self.files.ca if "SSL" in listener and self.files is not None else None
        pair = self._certificate(user, certificate and listener == "SSL") if ca else None
        return _Parts(listener, self.bootstrap(listener), sasl, ca, pair)

    def confluent(
        self,
        user: str | None = None,
        protocol: str | None = None,
        mechanism: str = "SCRAM-SHA-512",
        password: str | None = None,
        certificate: bool = True,
    ) -> dict[str, Any]:
        """librdkafka's settings (confluent-kafka; kcat takes the same as `-X name=value`)."""
        parts = self._parts(user, protocol, mechanism, password, certificate)
        config: dict[str, Any] = {
            "bootstrap.servers": parts.bootstrap,
            "security.protocol": parts.listener,
        }
        if parts.sasl is not None:
            config["sasl.mechanism"], config["sasl.username"], config["sasl.password"] = parts.sasl
        if parts.ca is not None:
            config["ssl.ca.location"] = parts.ca
        if parts.certificate is not None:
            config["ssl.certificate.location"], config["ssl.key.location"] = parts.certificate
        return config

    def ssl_context(self, user: str | None = None, certificate: bool = True) -> ssl.SSLContext:
        """A client's SSL context trusting the broker's CA (with `user`'s certificate)."""
        if self.files is None:
            raise ValueError("the broker has no TLS listener")
        context = ssl.create_default_context(cafile=self.files.ca)
        pair = self._certificate(user, certificate)
        if pair is not None:
            context.load_cert_chain(*pair)
        return context

    def _python(self, parts: _Parts) -> dict[str, Any]:
        config: dict[str, Any] = {
            "bootstrap_servers": parts.bootstrap,
            "security_protocol": parts.listener,
        }
        if parts.sasl is not None:
            (
                config["sasl_mechanism"],
                config["sasl_plain_username"],
                config["sasl_plain_password"],
            ) = parts.sasl
        return config

    def aiokafka(
        self,
        user: str | None = None,
        protocol: str | None = None,
        mechanism: str = "SCRAM-SHA-512",
        password: str | None = None,
        certificate: bool = True,
    ) -> dict[str, Any]:
        """Keyword arguments for aiokafka's clients."""
        parts = self._parts(user, protocol, mechanism, password, certificate)
        config = self._python(parts)
        if parts.ca is not None:
            config["ssl_context"] = self.ssl_context(user, parts.certificate is not None)
        return config

    def kafka_python(
        self,
        user: str | None = None,
        protocol: str | None = None,
        mechanism: str = "SCRAM-SHA-512",
        password: str | None = None,
        certificate: bool = True,
    ) -> dict[str, Any]:
        """Keyword arguments for kafka-python's clients."""
        parts = self._parts(user, protocol, mechanism, password, certificate)
        config = self._python(parts)
        if parts.ca is not None:
            config["ssl_cafile"] = parts.ca
        if parts.certificate is not None:
            config["ssl_certfile"], config["ssl_keyfile"] = parts.certificate
        return config
