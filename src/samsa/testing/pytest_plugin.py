"""pytest plugin (registered through the `pytest11` entry point): a real broker per test.

def test_roundtrip(samsa_broker):
    producer = Producer({"bootstrap.servers": samsa_broker.bootstrap})

def test_secured(samsa_secure_broker):
    producer = Producer(samsa_secure_broker.clients.confluent("alice"))
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.security import Security


@pytest.fixture
def samsa_broker(tmp_path: object) -> Iterator[EmbeddedBroker]:
    """A fresh embedded samsa broker with its data dir under the test's tmp_path."""
    with EmbeddedBroker(data_dir=str(tmp_path) + "/samsa-data") as broker:
        yield broker


@pytest.fixture
def samsa_secure_broker(
    request: pytest.FixtureRequest, tmp_path: object
) -> Iterator[EmbeddedBroker]:
    """A broker with listeners, users and certificates: by default one SASL_SSL listener and
    the user alice (password alice-secret). Choose with a marker,

        @pytest.mark.samsa_security(listeners=("SASL_SSL", "SSL"), users={"bob": "pw"})

    or `indirect` parametrization with a `Security`. `broker.clients.confluent("bob")`,
    `.aiokafka(...)`, `.kafka_python(...)` give each client's settings."""
    security = getattr(request, "param", None)
    if security is None:
        marker = request.node.get_closest_marker("samsa_security")
        kwargs = dict(marker.kwargs) if marker is not None else {}
        kwargs.setdefault("users", {"alice": "alice-secret"})
        security = Security(**kwargs)
    with EmbeddedBroker(data_dir=str(tmp_path) + "/samsa-data", security=security) as broker:
        yield broker


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "samsa_security(**fields): the Security of the samsa_secure_broker fixture"
    )
