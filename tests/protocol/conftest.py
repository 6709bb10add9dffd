from __future__ import annotations

from collections.abc import Iterator

import pytest

from samsa.testing import EmbeddedBroker


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    """One embedded broker shared by the tests of a module."""
    with EmbeddedBroker() as running:
        yield running
