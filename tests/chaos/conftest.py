from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from samsa.chaos import EmbeddedChaosProxy, proxied_broker
from samsa.testing import EmbeddedBroker


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[tuple[EmbeddedBroker, EmbeddedChaosProxy]]:
    """A real broker behind a chaos proxy; the broker advertises the proxy's address."""
    with proxied_broker(data_dir=str(tmp_path / "data")) as pair:
        yield pair
