"""SASL authentication of one connection on a SASL_PLAINTEXT or SASL_SSL listener, as Kafka's
`SaslServerAuthenticator` does it.

Theory of operation. Until the client has authenticated, every frame comes here, not to the
broker. The states, and what each accepts (anything else closes the connection, as Kafka's
IllegalSaslStateException does):

    HANDSHAKE_OR_VERSIONS  ApiVersions (answered by the broker) -> HANDSHAKE (stays for a
                           version not served, which the client retries lower);
                           SaslHandshake -> AUTHENTICATE (v1) or AUTHENTICATE_RAW (v0)
    HANDSHAKE              SaslHandshake -> AUTHENTICATE / AUTHENTICATE_RAW
    AUTHENTICATE           SaslAuthenticate, until the mechanism is done -> COMPLETE
    AUTHENTICATE_RAW       bare mechanism tokens, unframed (handshake v0, KIP-152's legacy)
    COMPLETE               every frame goes to the broker, with the principal
    FAILED                 the error response is sent, then the connection closes

A mechanism the listener does not enable gets UNSUPPORTED_SASL_MECHANISM with the enabled
ones, then the connection closes. A failed authentication gets SASL_AUTHENTICATION_FAILED with
Kafka's message, then the connection closes. The SCRAM exchange is the `scramp` library's.
Session re-authentication (KIP-368, `connections.max.reauth.ms`) is not offered: sessions last
as long as their connections (session_lifetime_ms 0, as Kafka's default).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import scramp
from kio.schema.errors import ErrorCode
from kio.schema.sasl_authenticate.v2 import SaslAuthenticateRequest, SaslAuthenticateResponse
from kio.schema.sasl_handshake.v1 import SaslHandshakeRequest, SaslHandshakeResponse

from samsa.broker.outcomes import Close, Outcome, RawFrame, Reply
from samsa.broker.routing import reply
from samsa.config import BrokerConfig
from samsa.protocol import codec, versions
from samsa.protocol.apis import ApiKey, is_served
from samsa.security.credentials import CredentialStore

if TYPE_CHECKING:
    from samsa.broker.core import Broker

PLAIN_FAILED = "Authentication failed: Invalid username or password"


def scram_failed(mechanism: str) -> str:
    # Kafka's message for a SaslException from the mechanism (unknown user, wrong proof).
    return (
        "Authentication failed during authentication due to invalid credentials with SASL "
        f"mechanism {mechanism}"
    )


class SaslState(enum.Enum):
    HANDSHAKE_OR_VERSIONS = "handshake or versions"
    HANDSHAKE = "handshake"
    AUTHENTICATE = "authenticate"
    AUTHENTICATE_RAW = "authenticate (raw tokens)"
    COMPLETE = "complete"
    FAILED = "failed"


class AuthenticationFailed(Exception):
    """The mechanism refused the client; the message is what the client is told."""


class _Plain:
    """RFC 4616: one message, `authzid NUL authcid NUL passwd`."""

    def __init__(self, credentials: CredentialStore) -> None:
        self._credentials = credentials
        self.user: str | None = None

    def step(self, token: bytes) -> bytes:
        parts = token.split(b"\0")
        if len(parts) != 3:
            raise AuthenticationFailed("Invalid SASL/PLAIN response: expected 3 tokens")
        authzid, user, password = (part.decode("utf-8", "replace") for part in parts)
        if not user:
            raise AuthenticationFailed("Authentication failed: username not specified")
        if not password:
            raise AuthenticationFailed("Authentication failed: password not specified")
        if authzid and authzid != user:
            raise AuthenticationFailed(
                "Authentication failed: Client requested an authorization id that is "
                "different from username"
            )
        if not self._credentials.check_password(user, password):
            raise AuthenticationFailed(PLAIN_FAILED)
        self.user = user
        return b""


class _Scram:
    """RFC 5802 through scramp: client-first, server-first, client-final, server-final.

    The client-final nonce must equal the server-first one, as RFC 5802 and Kafka since
    CVE-2024-56128 (3.9.1/4.0) require: librdkafka before 2.6.1 repeats its own nonce there
    and is refused, by Kafka 4 and by samsa (librdkafka PR 4895)."""

    def __init__(self, mechanism: str, credentials: CredentialStore) -> None:
        self._mechanism = mechanism

        def lookup(saslname: str) -> tuple[bytes, bytes, bytes, int]:
            # RFC 5802's saslname escapes ',' and '=' (Kafka's ScramFormatter.username).
            user = saslname.replace("=2C", ",").replace("=3D", "=")
            self._user = user
            credential = credentials.get(user, mechanism)
            if credential is None:
                raise AuthenticationFailed(scram_failed(mechanism))
            return (
                credential.salt,
                credential.stored_key,
                credential.server_key,
                credential.iterations,
            )

        self._server = scramp.ScramMechanism(mechanism).make_server(lookup)
        self._round = 0
        self._user = ""  # named in the client's first message
        self.user: str | None = None  # once the client proved it

    def step(self, token: bytes) -> bytes:
        self._round += 1
        try:
            if self._round == 1:
                self._server.set_client_first(token.decode())
                first: str = self._server.get_server_first()
                return first.encode()
            if self._round == 2:
                self._server.set_client_final(token.decode())
                self.user = self._user
                final: str = self._server.get_server_final()
                return final.encode()
        except AuthenticationFailed:
            raise
        except Exception:  # scramp.ScramException, a malformed message, bad UTF-8
            raise AuthenticationFailed(scram_failed(self._mechanism)) from None
        raise AuthenticationFailed(scram_failed(self._mechanism))


class Authenticator:
    """One connection's SASL state (see the module's docstring)."""

    def __init__(self, config: BrokerConfig, credentials: CredentialStore) -> None:
        self._enabled = tuple(m for m in config.sasl_enabled_mechanisms.split(",") if m)
        self._credentials = credentials
        self.state = SaslState.HANDSHAKE_OR_VERSIONS
        self._mechanism: _Plain | _Scram | None = None
        self.principal: str | None = None
        self.failure = ""

    @property
    def complete(self) -> bool:
        return self.state is SaslState.COMPLETE

    @property
    def failed(self) -> bool:
        return self.state is SaslState.FAILED

    def receive(self, broker: Broker, data: bytes | memoryview, client_host: str) -> Outcome:
        """One frame from a client not authenticated yet."""
        if self.state is SaslState.AUTHENTICATE_RAW:
            return self._raw_token(bytes(data))
        try:
            prefix = codec.peek_prefix(data)
        except codec.DecodeError as exc:
            return Close(str(exc))
        key = prefix.api_key
        if key == ApiKey.API_VERSIONS and self.state is SaslState.HANDSHAKE_OR_VERSIONS:
            # As Kafka: a version the broker does not serve is answered with its versions and
            # may be asked again (clients retry with one it does).
            if is_served(key, prefix.api_version):
                self.state = SaslState.HANDSHAKE
            return broker.handle_frame(data, client_host)
        if key == ApiKey.SASL_HANDSHAKE and self.state in (
            SaslState.HANDSHAKE_OR_VERSIONS,
            SaslState.HANDSHAKE,
        ):
            return self._handshake(data)
        if key == ApiKey.SASL_AUTHENTICATE and self.state is SaslState.AUTHENTICATE:
            return self._authenticate(data)
        name = ApiKey(key).name if key in ApiKey._value2member_map_ else str(key)
        return Close(f"unexpected Kafka request of type {name} during SASL {self.state.value}")

    def _decode(self, data: bytes | memoryview) -> codec.Request[object] | Close:
        prefix = codec.peek_prefix(data)
        if not is_served(prefix.api_key, prefix.api_version):
            return Close(f"unsupported version {prefix.api_version} of api {prefix.api_key}")
        try:
            return codec.decode_request(data)
        except codec.DecodeError as exc:
            return Close(str(exc))

    def _handshake(self, data: bytes | memoryview) -> Outcome:
        request = self._decode(data)
        if isinstance(request, Close):
            return request
        body = versions.convert(request.payload, SaslHandshakeRequest)  # type: ignore[arg-type]
        mechanism = body.mechanism
        error = ErrorCode.none
        if mechanism not in self._enabled:
            error = ErrorCode.unsupported_sasl_mechanism
            self.state = SaslState.FAILED
            self.failure = f"unsupported SASL mechanism {mechanism!r}"
        elif mechanism == "PLAIN":
            self._mechanism = _Plain(self._credentials)
        else:
            self._mechanism = _Scram(mechanism, self._credentials)
        if error == ErrorCode.none:
            raw = request.api_version == 0
            self.state = SaslState.AUTHENTICATE_RAW if raw else SaslState.AUTHENTICATE
        return reply(
            request,  # type: ignore[arg-type]
            SaslHandshakeResponse(error_code=error, mechanisms=self._enabled),
        )

    def _step(self, token: bytes) -> bytes:
        """Run the mechanism on one client token; the server's answer, or FAILED."""
        mechanism = self._mechanism
        if mechanism is None:  # cannot happen: the handshake chose one
            raise AuthenticationFailed("no SASL mechanism chosen")
        answer = mechanism.step(token)
        if mechanism.user is not None:
            self.principal = f"User:{mechanism.user}"
            self.state = SaslState.COMPLETE
        return answer

    def _authenticate(self, data: bytes | memoryview) -> Outcome:
        request = self._decode(data)
        if isinstance(request, Close):
            return request
        body = versions.convert(request.payload, SaslAuthenticateRequest)  # type: ignore[arg-type]
        try:
            answer = self._step(body.auth_bytes)
        except AuthenticationFailed as exc:
            self.state = SaslState.FAILED
            self.failure = str(exc)
            return reply(
                request,  # type: ignore[arg-type]
                SaslAuthenticateResponse(
                    error_code=ErrorCode.sasl_authentication_failed,
                    error_message=str(exc),
                    auth_bytes=b"",
                ),
            )
        return reply(
            request,  # type: ignore[arg-type]
            SaslAuthenticateResponse(
                error_code=ErrorCode.none, error_message=None, auth_bytes=answer
            ),
        )

    def _raw_token(self, token: bytes) -> Outcome:
        try:
            answer = self._step(token)
        except AuthenticationFailed as exc:
            # Without Kafka headers there is no error response: the connection just closes.
            self.state = SaslState.FAILED
            return Close(str(exc))
        if not answer and self.complete:
            # PLAIN sends nothing back; Kafka answers with an empty token all the same.
            return Reply(0, RawFrame(b""))
        return Reply(0, RawFrame(answer))
