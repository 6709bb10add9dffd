"""pytest plugin (registered through the `pytest11` entry point): a real broker per test.

def test_roundtrip(samsa_broker):
    producer = Producer({"bootstrap.servers": samsa_broker.bootstrap})
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from samsa.testing.embedded import EmbeddedBroker


@pytest.fixture
def samsa_broker(tmp_path: object) -> Iterator[EmbeddedBroker]:
    """A fresh embedded samsa broker with its data dir under the test's tmp_path."""
    with EmbeddedBroker(data_dir=str(tmp_path) + "/samsa-data") as broker:
        yield broker
