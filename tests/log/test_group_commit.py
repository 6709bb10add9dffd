"""Group commit over real partition logs: an acknowledgement waits for the fsync, and a failed
fsync is never papered over by a later round. The rounds report to the durability driver, which
finishes the waiting continuations."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from log.log_batches import NOW_MS, append, make_batch
from samsa.durability import Driver, Failed
from samsa.log.partition import LogConfig, PartitionLog, StorageError
from samsa.log.storage import File, OsFile, OsStorage
from samsa.server.group_commit import GroupCommit


class _Disk(OsStorage):
    """Real files whose fsyncs are recorded, and can be made to fail."""

    def __init__(self) -> None:
        self.synced: list[str] = []
        self.failing = False

    def open(self, path: str) -> File:
        disk = self

        class _File(OsFile):
            def sync(self) -> None:
                if disk.failing:
                    raise OSError(5, "Input/output error")
                super().sync()
                disk.synced.append(os.path.basename(path))

        return _File(path)


SIZE = len(make_batch([b"x" * 100]))


def _open(tmp_path: object, disk: _Disk) -> PartitionLog:
    return PartitionLog.open(
        disk, f"{tmp_path}/t-0", "t", 0, LogConfig(segment_bytes=SIZE), NOW_MS, False
    )


def _failed(failed: Failed) -> Failed:
    return failed


async def _acknowledged(driver: Driver[str], commit: GroupCommit, key: str) -> Any:
    """Wait for `key`'s rounds; its continuation's result (the logs whose fsync failed)."""
    commit.kick()
    await commit.idle()
    finished = dict(driver.run())
    return finished[key]


def test_acknowledgement_waits_for_the_fsync(tmp_path: object) -> None:
    disk = _Disk()
    log = _open(tmp_path, disk)
    advanced: list[int] = []

    async def main() -> Any:
        driver: Driver[str] = Driver()
        commit = GroupCommit(
            driver, lambda moved: advanced.append(log.high_watermark) if moved else None
        )
        try:
            append(log, [b"x" * 100])
            append(log, [b"x" * 100])  # a second segment
            disk.synced.clear()
            driver.respond("ack", [(log, 2)], _failed)
            assert driver.run() == []
            assert log.high_watermark == 0
            failed = await _acknowledged(driver, commit, "ack")
            # Both segments were fsynced before the wait finished and the watermark moved.
            assert sorted(n for n in disk.synced if n.endswith(".log")) == [
                "00000000000000000000.log",
                "00000000000000000001.log",
            ]
            assert log.high_watermark == 2
            return failed
        finally:
            commit.close()

    assert asyncio.run(main()) == set()
    assert advanced == [2]


def test_failed_fsync_fails_the_wait_and_later_rounds(tmp_path: object) -> None:
    disk = _Disk()
    log = _open(tmp_path, disk)

    async def main() -> None:
        driver: Driver[str] = Driver()
        commit = GroupCommit(driver, lambda moved: None)
        try:
            append(log, [b"x" * 100])
            disk.failing = True
            driver.respond("first", [(log, 1)], _failed)
            assert await _acknowledged(driver, commit, "first") == {log}
            assert log.high_watermark == 0
            # The disk "recovers", but after a failed fsync the page cache cannot be trusted:
            # the log is offline and refuses writes until a restart recovers it, and a wait
            # on it fails at once. Offset 0 was never made durable: the watermark stays.
            disk.failing = False
            assert log.offline is not None
            with pytest.raises(StorageError):
                append(log, [b"x" * 100])
            driver.respond("second", [(log, 1)], _failed)
            assert await _acknowledged(driver, commit, "second") == {log}
            assert log.high_watermark == 0
        finally:
            commit.close()

    asyncio.run(main())
