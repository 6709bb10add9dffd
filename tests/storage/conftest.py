"""Fixtures for the storage fault tests: a small real tmpfs (a disk that fills up), an ext4 on a
loop device whose fsync fails, and `samsa serve` processes that are killed at teardown.

Mounting needs root (CI runs as root), the thin disk a loop device too. Where either is refused
the test is skipped LOUDLY, or fails under SAMSA_REQUIRE_ALL=1, as
`samsa.testing.requirements.missing` does for every missing tool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from samsa.testing.process import BrokerProcess

from .support import TMPFS_BYTES, ThinDisk, mount_tmpfs, unmount

StartBroker = Callable[..., BrokerProcess]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A fresh 20 MiB tmpfs, unmounted at teardown (lazily if a process still holds it)."""
    mount_point = tmp_path / "tmpfs"
    mount_tmpfs(mount_point, TMPFS_BYTES)
    try:
        yield mount_point
    finally:
        unmount(mount_point)


@pytest.fixture
def start_broker() -> Iterator[StartBroker]:
    """start_broker(data_dir, settings) -> a started `samsa serve`; every one is killed (-9) at
    teardown, so a failing test leaves no process behind."""
    started: list[BrokerProcess] = []

    def _start(data_dir: Path, settings: Mapping[str, str] | None = None) -> BrokerProcess:
        broker = BrokerProcess(str(data_dir), dict(settings or {}))
        started.append(broker)
        return broker.start()

    yield _start
    for broker in started:
        broker.kill9()


@pytest.fixture
def thin_disk(tmp_path: Path) -> Iterator[ThinDisk]:
    """An ext4 filesystem whose fsync fails with EIO once `fill_backing` has left it no room;
    unmounted and detached at teardown."""
    disk = ThinDisk(tmp_path / "thin")
    try:
        disk.create()
        yield disk
    finally:
        disk.destroy()
