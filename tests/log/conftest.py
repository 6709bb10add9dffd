"""Fixtures for the partition log unit tests (a real directory under tmp_path)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from log.log_batches import NOW_MS, OpenLog
from samsa.log.partition import LogConfig, PartitionLog
from samsa.log.storage import OsStorage


@pytest.fixture
def log_dir(tmp_path: Path) -> str:
    return str(tmp_path / "topic-0")


@pytest.fixture
def open_log(log_dir: str) -> Iterator[OpenLog]:
    """open_log(recover=False, now_ms=NOW_MS, **LogConfig fields) -> PartitionLog; all opened
    logs share `log_dir`, so a test can close one and reopen it."""
    opened: list[PartitionLog] = []

    def _open(recover: bool = False, now_ms: int = NOW_MS, **config: Any) -> PartitionLog:
        log = PartitionLog.open(
            OsStorage(), log_dir, "topic", 0, LogConfig(**config), now_ms, recover
        )
        opened.append(log)
        return log

    yield _open
    for log in opened:  # release file descriptors; closing twice is harmless
        for segment in log.segments:
            segment.close()
