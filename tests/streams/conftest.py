from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import support


@pytest.fixture(params=["samsa", "mock"])
def backend(request: pytest.FixtureRequest) -> Iterator[support.Backend]:
    """A samsa broker (embedded) or librdkafka's 3-broker mock cluster."""
    factory = support.samsa_backend if request.param == "samsa" else support.mock_backend
    with factory() as found:
        yield found


@pytest.fixture
def samsa() -> Iterator[support.Backend]:
    with support.samsa_backend() as found:
        yield found


# The mock cluster's at-least-once rebalance run is the slowest here (about 35 s) and checks
# only that the mock loses nothing; samsa's runs, which check exactness, stay in the default suite.
SLOW_ON_THE_MOCK = frozenset({"test_rebalance_loses_and_repeats_nothing[mock-at_least_once]"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.name in SLOW_ON_THE_MOCK:
            item.add_marker(pytest.mark.slow)
