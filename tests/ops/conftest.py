"""One real samsa broker per test module, and the tools run as `samsa ...` runs them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from samsa.testing import EmbeddedBroker

from .support import Tool


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(data_dir=str(tmp_path_factory.mktemp("ops") / "data")) as running:
        yield running


@pytest.fixture
def samsa(
    broker: EmbeddedBroker, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Tool:
    return Tool(broker.bootstrap, capsys, monkeypatch)
