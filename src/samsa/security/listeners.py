"""Kafka's listener settings: `listeners`, `advertised.listeners`, `listener.security.protocol.map`.

A listener is `NAME://host:port`; its security protocol is what the map gives for NAME
(PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL). An empty host binds every address, as in Kafka.
Each listener is advertised as `advertised.listeners` says for its name, or as it is bound
(an empty or wildcard host advertised as this machine's name, as Kafka does). Metadata and
FindCoordinator answer a client with the endpoints of the listener it connected to.
"""

from __future__ import annotations

import enum
import socket
from dataclasses import dataclass

from samsa.config import BrokerConfig, ConfigError


class SecurityProtocol(enum.Enum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def tls(self) -> bool:
        return self in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    @property
    def sasl(self) -> bool:
        return self in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    name: str
    protocol: SecurityProtocol
    host: str  # "" binds every address
    port: int


def _split(setting: str, value: str) -> list[tuple[str, str, int]]:
    """`NAME://host:port,...` as (NAME, host, port)s."""
    result: list[tuple[str, str, int]] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, address = item.partition("://")
        host, colon, port = address.rpartition(":")
        if not sep or not colon or not port.isdigit() or not name:
            raise ConfigError(f"{setting}: {item!r} is not NAME://host:port")
        result.append((name.upper(), host.strip("[]"), int(port)))
    return result


def protocol_map(config: BrokerConfig) -> dict[str, SecurityProtocol]:
    result: dict[str, SecurityProtocol] = {}
    for item in config.listener_security_protocol_map.split(","):
        if not item.strip():
            continue
        name, sep, protocol = item.strip().partition(":")
        try:
            result[name.strip().upper()] = SecurityProtocol(protocol.strip().upper())
        except ValueError:
            raise ConfigError(
                f"listener.security.protocol.map: {item.strip()!r} is not NAME:PROTOCOL with "
                f"PROTOCOL one of {', '.join(p.value for p in SecurityProtocol)}"
            ) from None
        if not sep:
            raise ConfigError(f"listener.security.protocol.map: {item.strip()!r}")
    return result


def listener_specs(config: BrokerConfig, host: str, port: int) -> list[ListenerSpec]:
    """The listeners to bind: `listeners`, or one PLAINTEXT listener on host:port without it."""
    if not config.listeners.strip():
        return [ListenerSpec("PLAINTEXT", SecurityProtocol.PLAINTEXT, host, port)]
    protocols = protocol_map(config)
    controllers = controller_listener_names(config)
    specs: list[ListenerSpec] = []
    for name, bind_host, bind_port in _split("listeners", config.listeners):
        if name in controllers:
            continue  # a KRaft controller's listener: samsa has no controller
        protocol = protocols.get(name)
        if protocol is None:
            raise ConfigError(
                f"listeners: no security protocol for listener {name} in "
                "listener.security.protocol.map"
            )
        if any(s.name == name for s in specs):
            raise ConfigError(f"listeners: listener name {name} is used more than once")
        if bind_port and any(s.port == bind_port for s in specs):
            raise ConfigError(f"listeners: port {bind_port} is used more than once")
        specs.append(ListenerSpec(name, protocol, bind_host, bind_port))
    if not specs:
        raise ConfigError(
            f"listeners={config.listeners}: no broker listener (controller.listener.names "
            "are not bound)"
            if controllers
            else "listeners: no listener given"
        )
    return specs


def controller_listener_names(config: BrokerConfig) -> set[str]:
    return {n.strip().upper() for n in config.controller_listener_names.split(",") if n.strip()}


def advertised(config: BrokerConfig, spec: ListenerSpec, bound_port: int) -> tuple[str, int]:
    """Where clients of this listener are told to connect."""
    entries = _split("advertised.listeners", config.advertised_listeners)
    if not config.listeners.strip() and len(entries) == 1:
        return entries[0][1], entries[0][2]  # the single listener, whatever its name says
    for name, host, port in entries:
        if name == spec.name:
            return host, port
    if spec.host in ("", "0.0.0.0", "::"):
        return socket.getfqdn(), bound_port
    return spec.host, bound_port


def check(config: BrokerConfig) -> None:
    """Refuse listener settings Kafka refuses, at load time."""
    protocol_map(config)
    specs = listener_specs(config, "127.0.0.1", 0)
    names = {s.name for s in specs}
    controllers = controller_listener_names(config)
    for name, _, _ in _split("advertised.listeners", config.advertised_listeners):
        if config.listeners.strip() and name not in names and name not in controllers:
            raise ConfigError(
                f"advertised.listeners: listener {name} is not one of "
                f"listeners ({config.listeners})"
            )
