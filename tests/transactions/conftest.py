"""Fixtures for the transaction tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from samsa.testing.process import BrokerProcess


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[Callable[..., BrokerProcess]]:
    """broker_process(settings=()) -> a started `samsa serve`; killed at teardown."""
    started: list[BrokerProcess] = []

    def start(settings: Sequence[str] = ()) -> BrokerProcess:
        broker = BrokerProcess(str(tmp_path / "data"), settings)
        started.append(broker)
        return broker.start()

    yield start
    for broker in started:
        broker.kill9()
