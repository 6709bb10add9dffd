"""A client's side of TLS and SASL, in librdkafka's setting names, for samsa's own tools.

    security = ClientSecurity.from_settings({"security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "alice", "sasl.password": "...",
        "ssl.ca.location": "ca.pem"})

The same names confluent-kafka and kcat take (`samsa.testing.security.ClientConfigs.confluent`
hands them out), so one properties file serves every client. `authenticate` runs the SASL
exchange (SaslHandshake v1, then SaslAuthenticate v2 until done: KIP-152) over any function that
sends one kio request and returns its response.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import scramp
from kio.schema.errors import ErrorCode
from kio.schema.sasl_authenticate.v2.request import SaslAuthenticateRequest
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# The settings `from_settings` reads; any other name is refused, so a typo is not ignored.
SETTINGS = (
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",  # librdkafka's older spelling
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
)


class SaslFailed(ConnectionError):
    """Raised by `authenticate` when the broker refuses the handshake or the credentials (its
    error code and message), or the SCRAM exchange goes wrong: the broker closes such a
    connection, so open a new one."""


class SecuritySettingError(ValueError):
    """Raised by `ClientSecurity.from_settings` for an unknown or invalid setting."""


@dataclass(frozen=True, slots=True)
class ClientSecurity:
    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = None
    ssl_check_hostname: bool = True

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> ClientSecurity:
        unknown = sorted(set(settings) - set(SETTINGS) - {"bootstrap.servers"})
        if unknown:
            raise SecuritySettingError(f"unknown client setting {unknown[0]!r}")
        protocol = settings.get("security.protocol", "PLAINTEXT").upper()
        if protocol not in PROTOCOLS:
            raise SecuritySettingError(f"security.protocol must be one of {', '.join(PROTOCOLS)}")
        mechanism = settings.get("sasl.mechanism", settings.get("sasl.mechanisms", "PLAIN"))
        if mechanism.upper() not in MECHANISMS:
            raise SecuritySettingError(f"sasl.mechanism must be one of {', '.join(MECHANISMS)}")
        return cls(
            protocol=protocol,
            sasl_mechanism=mechanism.upper(),
            sasl_username=settings.get("sasl.username", ""),
            sasl_password=settings.get("sasl.password", ""),
            ssl_ca_location=settings.get("ssl.ca.location"),
            ssl_certificate_location=settings.get("ssl.certificate.location"),
            ssl_key_location=settings.get("ssl.key.location"),
            ssl_key_password=settings.get("ssl.key.password"),
            # librdkafka's default is "https" (check the broker's name); "none" turns it off.
            ssl_check_hostname=settings.get("ssl.endpoint.identification.algorithm", "https")
            != "none",
        )

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ssl_ca_location)
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_certificate_location:
            context.load_cert_chain(
                self.ssl_certificate_location, self.ssl_key_location, self.ssl_key_password
            )
        return context

    def wrap(self, sock: socket.socket, host: str) -> socket.socket:
        """The connection TLS runs over, for an SSL or SASL_SSL protocol; else `sock` itself."""
        if not self.tls:
            return sock
        return self.ssl_context().wrap_socket(sock, server_hostname=host)


def authenticate(send: Callable[[Any], Any], mechanism: str, user: str, password: str) -> None:
    """SaslHandshake v1, then SaslAuthenticate v2 until `mechanism` is done (KIP-152)."""
    handshake = send(SaslHandshakeRequest(mechanism=mechanism))
    if handshake.error_code != ErrorCode.none:
        raise SaslFailed(f"SaslHandshake {mechanism}: {handshake.error_code!r}")

    def step(token: bytes) -> bytes:
        response = send(SaslAuthenticateRequest(auth_bytes=token))
        if response.error_code != ErrorCode.none:
            raise SaslFailed(f"{response.error_code!r}: {response.error_message}")
        return bytes(response.auth_bytes)

    if mechanism == "PLAIN":
        step(f"\0{user}\0{password}".encode())
        return
    client = scramp.ScramClient([mechanism], user, password)
    try:
        client.set_server_first(step(client.get_client_first().encode()).decode())
        client.set_server_final(step(client.get_client_final().encode()).decode())
    except scramp.ScramException as exc:
        raise SaslFailed(f"{mechanism} as {user}: {exc}") from None
