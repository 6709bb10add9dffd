"""Kafka's listener settings (`samsa.security.listeners`) and Metadata per listener."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from samsa import config as broker_config
from samsa.config import ConfigError
from samsa.security.listeners import SecurityProtocol, listener_specs
from samsa.testing.embedded import EmbeddedBroker


def test_listeners_take_their_protocol_from_the_map() -> None:
    config = broker_config.load(
        {
            "listeners": "PLAINTEXT://127.0.0.1:9092,INTERNAL://:9093,SASL_SSL://127.0.0.1:9094",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:SSL,SASL_SSL:SASL_SSL",
        }
    )
    specs = listener_specs(config, "ignored", 1)
    assert [(s.name, s.protocol, s.host, s.port) for s in specs] == [
        ("PLAINTEXT", SecurityProtocol.PLAINTEXT, "127.0.0.1", 9092),
        ("INTERNAL", SecurityProtocol.SSL, "", 9093),
        ("SASL_SSL", SecurityProtocol.SASL_SSL, "127.0.0.1", 9094),
    ]


@pytest.mark.parametrize(
    "settings",
    [
        {"listeners": "OTHER://127.0.0.1:9092"},  # not in the protocol map
        {"listeners": "PLAINTEXT://127.0.0.1:9092,PLAINTEXT://127.0.0.1:9093"},
        {"listeners": "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9092"},
        {"listeners": "PLAINTEXT:9092"},
        {"listener.security.protocol.map": "A:TLS"},
        {"listeners": "PLAINTEXT://:1", "advertised.listeners": "SSL://h:1"},
        {"sasl.enabled.mechanisms": "GSSAPI"},
        {"ssl.client.auth": "sometimes"},
        {"ssl.keystore.type": "JKS"},
    ],
)
def test_settings_kafka_refuses_are_refused(settings: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        broker_config.load(settings)


def test_metadata_answers_with_the_listener_the_client_came_in_on() -> None:
    settings = {
        "listeners": "PLAINTEXT://127.0.0.1:0,OTHER://127.0.0.1:0",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,OTHER:PLAINTEXT",
        "advertised.listeners": "OTHER://127.0.0.1:0",
    }
    with EmbeddedBroker(settings=settings) as broker:
        server = broker.server
        assert server is not None
        ports = server.ports()
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{ports['PLAINTEXT']}"})
        brokers = admin.list_topics(timeout=10).brokers
        assert [b.port for b in brokers.values()] == [ports["PLAINTEXT"]]
        # OTHER is advertised as port 0: its clients are told so, whatever it is bound to.
        other = AdminClient(
            {"bootstrap.servers": f"127.0.0.1:{ports['OTHER']}", "socket.timeout.ms": 2000}
        )
        metadata = other.list_topics(timeout=10)
        assert [b.port for b in metadata.brokers.values()] == [0]
