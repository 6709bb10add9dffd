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
