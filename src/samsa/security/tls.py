"""TLS for SSL and SASL_SSL listeners, from PEM as Kafka's `ssl.keystore.type=PEM` takes it.

The key and certificate chain come from `ssl.keystore.location` (one PEM file holding the
private key and the chain) or inline from `ssl.keystore.key` and
`ssl.keystore.certificate.chain`; the key may be encrypted with `ssl.key.password`. Client
certificates are checked against `ssl.truststore.location` or `ssl.truststore.certificates`.
`ssl.client.auth`: none (no client certificate asked for), requested (asked for, checked if
sent), required (a client without a trusted certificate fails the handshake).

A client certificate's subject becomes the principal through `ssl.principal.mapping.rules`
(Kafka's `SslPrincipalMapper`): `DEFAULT` keeps the distinguished name as Java's
`X500Principal.getName()` prints it (RFC 2253: `CN=alice,OU=x,O=y`, most specific first);
`RULE:pattern/replacement/[LU]` rewrites a name the pattern matches whole.
"""

from __future__ import annotations

import os
import re
import ssl
import tempfile
from dataclasses import dataclass

from cryptography import x509

from samsa.config import BrokerConfig, ConfigError

ANONYMOUS = "User:ANONYMOUS"
_CLIENT_AUTH = {
    "none": ssl.CERT_NONE,
    "requested": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


def server_context(config: BrokerConfig) -> ssl.SSLContext:
    """The SSL context of the broker's TLS listeners; ConfigError if its files are unusable."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # Kafka's ssl.enabled.protocols
    password = config.ssl_key_password or None
    try:
        if config.ssl_keystore_location:
            context.load_cert_chain(config.ssl_keystore_location, password=password)
        elif config.ssl_keystore_certificate_chain and config.ssl_keystore_key:
            _load_inline(context, config, password)
        else:
            raise ConfigError(
                "a TLS listener needs ssl.keystore.location, or ssl.keystore.certificate.chain "
                "and ssl.keystore.key"
            )
        if config.ssl_truststore_location:
            context.load_verify_locations(cafile=config.ssl_truststore_location)
        elif config.ssl_truststore_certificates:
            context.load_verify_locations(cadata=config.ssl_truststore_certificates)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS settings: {exc}") from None
    context.verify_mode = _CLIENT_AUTH[config.ssl_client_auth]
    if context.verify_mode != ssl.CERT_NONE and not (
        config.ssl_truststore_location or config.ssl_truststore_certificates
    ):
        raise ConfigError(
            f"ssl.client.auth={config.ssl_client_auth} needs ssl.truststore.location or "
            "ssl.truststore.certificates"
        )
    return context


def _load_inline(context: ssl.SSLContext, config: BrokerConfig, password: str | None) -> None:
    # The ssl module loads keys from files only: a private file, removed at once.
    fd, path = tempfile.mkstemp(prefix="samsa-key-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(config.ssl_keystore_key.strip() + "\n")
            f.write(config.ssl_keystore_certificate_chain.strip() + "\n")
        context.load_cert_chain(path, password=password)
    finally:
        os.unlink(path)


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str] | None  # None: DEFAULT
    replacement: str
    case: str  # "", "L" or "U"


_RULE = re.compile(r"\s*RULE:((?:\\/|[^/])*)/((?:\\/|[^/])*)/([LU]?)\s*")


def parse_rules(text: str) -> list[_Rule]:
    """`ssl.principal.mapping.rules`: DEFAULT and RULE:pattern/replacement/[LU], comma-separated
    (a comma inside a rule's pattern belongs to the rule)."""
    rules: list[_Rule] = []
    rest = text.strip()
    while rest:
        if rest.startswith("DEFAULT"):
            rules.append(_Rule(None, "", ""))
            rest = rest[len("DEFAULT") :]
        else:
            match = _RULE.match(rest)
            if match is None:
                raise ConfigError(f"ssl.principal.mapping.rules: cannot read {rest!r}")
            replacement = re.sub(r"\$(\d)", r"\\g<\1>", match.group(2).replace("\\/", "/"))
            pattern = re.compile(match.group(1).replace("\\/", "/"))
            rules.append(_Rule(pattern, replacement, match.group(3)))
            rest = rest[match.end() :]
        rest = rest.strip()
        if rest.startswith(","):
            rest = rest[1:].strip()
        elif rest:
            raise ConfigError(f"ssl.principal.mapping.rules: cannot read {rest!r}")
    return rules


def map_principal(rules: list[_Rule], distinguished_name: str) -> str:
    """The principal name for a certificate subject (Kafka's SslPrincipalMapper.getName)."""
    for rule in rules:
        if rule.pattern is None:
            return distinguished_name
        if rule.pattern.fullmatch(distinguished_name):
            name = rule.pattern.sub(rule.replacement, distinguished_name)
            return name.lower() if rule.case == "L" else name.upper() if rule.case == "U" else name
    # Kafka: "No rules apply to <name>, rules <rules>": the connection fails to authenticate.
    raise ValueError(f"no ssl.principal.mapping.rules apply to {distinguished_name}")


def subject_name(certificate_der: bytes) -> str:
    """A certificate's subject as Java's X500Principal.getName() (RFC 2253) prints it."""
    return x509.load_der_x509_certificate(certificate_der).subject.rfc4514_string()


def peer_principal(ssl_object: ssl.SSLObject | None, rules: list[_Rule]) -> str | None:
    """`User:<mapped subject>` for a verified client certificate, ANONYMOUS without one; None if
    no rule maps its subject (the connection is refused)."""
    if ssl_object is None:
        return ANONYMOUS
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return ANONYMOUS
    try:
        return "User:" + map_principal(rules, subject_name(der))
    except ValueError:
        return None
