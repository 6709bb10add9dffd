"""One broker holding `samsa.console.example`'s log for the console's tests, and a console on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from samsa.console import example
from samsa.console.server import ConsoleServer, ConsoleSettings
from samsa.testing.embedded import EmbeddedBroker, embedded_broker

# Fast pages in tests; the budget itself is tested with the default rate.
TEST_REQUESTS_PER_S = 200.0
TEST_POLL_INTERVAL_S = 0.2


@pytest.fixture(scope="package")
def broker() -> Iterator[EmbeddedBroker]:
    with embedded_broker() as running:
        yield running


@pytest.fixture(scope="package")
def built(broker: EmbeddedBroker) -> Iterator[example.Example]:
    state = example.build(broker.bootstrap)
    yield state
    state.close()


@pytest.fixture(scope="package")
def console(broker: EmbeddedBroker, built: example.Example) -> Iterator[ConsoleServer]:
    settings = ConsoleSettings(
        broker.bootstrap,
        port=0,
        poll_interval_s=TEST_POLL_INTERVAL_S,
        requests_per_s=TEST_REQUESTS_PER_S,
    )
    with ConsoleServer(settings) as server:
        yield server
