"""Fixtures for process-level durability tests: `samsa serve` subprocesses, killed at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from samsa.testing.process import BrokerProcess


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[Callable[..., BrokerProcess]]:
    """broker_process(settings=(), data_dir=None) -> a started BrokerProcess."""
    started: list[BrokerProcess] = []

    def _start(settings: Sequence[str] = (), data_dir: str | None = None) -> BrokerProcess:
        broker = BrokerProcess(data_dir or str(tmp_path / "data"), settings)
        started.append(broker)
        return broker.start()

    yield _start
    for broker in started:
        broker.kill9()
