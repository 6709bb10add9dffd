"""A secured embedded broker in one line: listeners, users and certificates from arguments, and
ready client configurations per user.

    security = Security(listeners=("SASL_SSL",), users={"alice": "alice-secret"})
    with embedded_broker(security=security) as broker:
        producer = confluent_kafka.Producer(broker.clients.confluent("alice"))
        consumer = aiokafka.AIOKafkaConsumer(**broker.clients.aiokafka("alice"))

Certificates (a CA, the server's, one per user with subject `CN=<user>,OU=samsa,O=samsa`, and
one named `client`) are made on the fly in a temporary directory; users get SCRAM-SHA-256 and
-512 credentials (PLAIN checks against them). Each listener is named after its protocol and
bound to 127.0.0.1 on a free port.

ACLs and super users switch Kafka's authorizer on (`authorizer.class.name`, `super.users`):
whatever no ACL allows is refused, as in Kafka.

    Security(
        users={"admin": "admin-pw", "alice": "alice-pw"},
        super_users=["User:admin"],
        acls=[
            Acl("User:alice", "Write", topic="orders"),
            Acl("User:alice", "Read", group="billing-", pattern="prefixed"),
        ],
    )
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from samsa.config import AUTHORIZER_CLASS_NAMES
from samsa.log.storage import OsStorage
from samsa.security import certs
from samsa.security.acl import (
    CLUSTER_NAME,
    AclBinding,
    PatternType,
    Permission,
    ResourceType,
    invalid_binding,
    operation_named,
)
from samsa.security.acl_store import AclStore
from samsa.security.credentials import SCRAM_MECHANISMS, CredentialStore, from_password

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
AUTHORIZER_CLASS = AUTHORIZER_CLASS_NAMES[0]  # Kafka's StandardAuthorizer


def as_principal(name: str) -> str:
    """`alice` is `User:alice`; a principal with its type (`User:alice`) stays as it is."""
    return name if ":" in name else f"User:{name}"


@dataclass(frozen=True)
class Acl:
    """One ACL as kafka-acls.sh writes it: `Acl("User:alice", "Read", topic="orders")` is
    `--allow-principal User:alice --operation Read --topic orders`. One resource: `topic`,
    `group`, `transactional_id` or `cluster=True`; `pattern` literal or prefixed; `permission`
    allow or deny; operations by Kafka's names (Read, Write, Describe, IdempotentWrite, All...).
    """

    principal: str
    operation: str
    topic: str | None = None
    group: str | None = None
    transactional_id: str | None = None
    cluster: bool = False
    pattern: str = "literal"
    permission: str = "allow"
    host: str = "*"

    def binding(self) -> AclBinding:
        """samsa's ACL for this one; ValueError says what is wrong with it."""
        resources = [
            (kind, name)
            for kind, name in (
                (ResourceType.TOPIC, self.topic),
                (ResourceType.GROUP, self.group),
                (ResourceType.TRANSACTIONAL_ID, self.transactional_id),
                (ResourceType.CLUSTER, CLUSTER_NAME if self.cluster else None),
            )
            if name is not None
        ]
        if len(resources) != 1:
            raise ValueError(f"{self}: give one of topic, group, transactional_id or cluster")
        operation = operation_named(self.operation)
        if operation is None:
            raise ValueError(f"{self}: unknown operation {self.operation!r}")
        try:
            pattern = PatternType[self.pattern.upper()]
            permission = Permission[self.permission.upper()]
        except KeyError:
            raise ValueError(f"{self}: pattern literal/prefixed, permission allow/deny") from None
        (kind, name), principal = resources[0], as_principal(self.principal)
        acl = AclBinding(kind, name, pattern, principal, self.host, operation, permission)
        problem = invalid_binding(acl)
        if problem is not None:
            raise ValueError(f"{self}: {problem}")
        return acl


@dataclass(frozen=True)
class Security:
    """What the broker's security is: its listeners (by protocol), its users (name: password),
    its SASL mechanisms, whether TLS clients must show a certificate, and its ACLs and super
    users (`User:admin` or `admin`), either of which switches the authorizer on."""

    listeners: tuple[str, ...] = ("SASL_SSL",)
    users: Mapping[str, str] = field(default_factory=dict)
    mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
    ssl_client_auth: str = "none"  # none, requested or required
    acls: Sequence[Acl] = ()
    super_users: Sequence[str] = ()

    def __post_init__(self) -> None:
        unknown = [p for p in self.listeners if p not in PROTOCOLS]
        if unknown or not self.listeners:
            raise ValueError(f"listeners must be some of {', '.join(PROTOCOLS)}; got {unknown}")
        for acl in self.acls:
            acl.binding()  # a mistake is told here, not as a refused request later

    @property
    def authorizer(self) -> bool:
        return bool(self.acls or self.super_users)

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
    if security.authorizer:
        result["authorizer.class.name"] = AUTHORIZER_CLASS
        result["super.users"] = ";".join(as_principal(name) for name in security.super_users)
    if files is not None:
        result["ssl.keystore.location"] = files.server_keystore
        result["ssl.truststore.location"] = files.ca
    return result


def prepare(security: Security, data_dir: str, certs_dir: str) -> certs.CertFiles | None:
    """Certificates into `certs_dir` (if a listener uses TLS), users and ACLs into
    `data_dir`."""
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
    if security.acls:
        acls = AclStore(OsStorage(), data_dir)
        acls.load()
        acls.add(acl.binding() for acl in security.acls)
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
