"""The deterministic simulation: seeds pass, and the checker catches planted bugs.

SAMSA_SIM_SEEDS sets how many seeds the default suite runs (CI: the default, 120);
`samsa sim --seeds 1000` runs more.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from samsa.log import partition as partition_module
from samsa.sim.disk import SimDisk
from samsa.sim.world import DISK_FAULTS, run
from samsa.state import producers as producers_module

SEEDS = int(os.environ.get("SAMSA_SIM_SEEDS", "120"))
DISK_FAULT_SEEDS = int(os.environ.get("SAMSA_SIM_DISK_FAULT_SEEDS", "60"))
STEPS = 300
PLANTED_SEEDS = 8


def test_seeds_pass() -> None:
    failed = {}
    crashes = 0
    for seed in range(SEEDS):
        world = run(seed, STEPS)
        crashes += world.stats.crashes
        if world.anomalies():
            failed[seed] = world.anomalies()[:5]
    assert not failed, f"replay with `samsa sim --first SEED --seeds 1`: {failed}"
    assert crashes > SEEDS  # the runs really crash, more than once a seed on average


def test_seeds_with_disk_faults_pass() -> None:
    """Writes that fail halfway, fsyncs that fail, bits flipped at rest: nothing acknowledged
    is lost, nothing is acknowledged after a failed fsync, and a flipped bit always takes its
    partition offline (the checker's `corruption-undetected`)."""
    failed = {}
    injected = {"write_errors": 0, "fsync_errors": 0, "bit_flips": 0}
    for seed in range(DISK_FAULT_SEEDS):
        world = run(seed, STEPS, DISK_FAULTS)
        for name in injected:
            injected[name] += getattr(world.stats, name)
        if world.anomalies():
            failed[seed] = world.anomalies()[:5]
    assert not failed, f"replay with `samsa sim --disk-faults --first SEED --seeds 1`: {failed}"
    assert all(count > DISK_FAULT_SEEDS // 10 for count in injected.values()), injected


def test_a_seed_replays_exactly() -> None:
    first, second = run(7, STEPS), run(7, STEPS)
    assert first.stats == second.stats
    assert first.now_ms == second.now_ms


def test_the_disk_loses_what_was_not_synced() -> None:
    import random

    disk = SimDisk()
    file = disk.open("/d/f")
    file.append(b"durable")
    file.sync()
    file.append(b"-lost")
    disk.crash(random.Random(0), torn_probability=0.0)
    disk.reboot()
    assert disk.read_all("/d/f") == b"durable"


# --------------------------------------------------------------------- planted bugs
def _skip_dedup(monkeypatch: pytest.MonkeyPatch) -> None:
    original = producers_module.ProducerStateManager.check

    def check(self: Any, header: Any, coordinator: bool = False) -> Any:
        verdict = original(self, header, coordinator)
        return (
            producers_module.Append()
            if isinstance(verdict, producers_module.Duplicate)
            else verdict
        )

    monkeypatch.setattr(producers_module.ProducerStateManager, "check", check)


def _serve_past_the_lso(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        partition_module.PartitionLog,
        "last_stable_offset",
        property(lambda self: self.high_watermark),
    )


def _ack_before_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partition_module.SyncPoint, "run", lambda self: None)


def _lose_the_aborted_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        partition_module.PartitionLog,
        "aborted_transactions",
        lambda self, fetch_offset, upper_offset: [],
    )


def _trust_a_damaged_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recovery as it was: cut at the first invalid batch, whatever follows it."""
    original = partition_module.PartitionLog._settle_scans

    def settle(self: Any, scans: list[Any]) -> None:
        scans = [
            None if scan is None else dataclasses.replace(scan, valid_after=None) for scan in scans
        ]
        original(self, scans)

    monkeypatch.setattr(partition_module.PartitionLog, "_settle_scans", settle)


PLANTED: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], set[str]]] = {
    "skip dedup": (_skip_dedup, {"duplicate"}),
    "serve past the LSO": (_serve_past_the_lso, {"aborted-read"}),
    "ack before fsync": (_ack_before_fsync, {"lost-acknowledged", "durable-data-lost"}),
    "lose the aborted index": (_lose_the_aborted_index, {"aborted-visible", "aborted-read"}),
}
# Bugs only disk faults reveal: run with them.
PLANTED_WITH_DISK_FAULTS = {
    "trust a damaged log": (_trust_a_damaged_log, {"corruption-undetected"})
}


@pytest.fixture(params=sorted(PLANTED))
def planted(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    plant, expected = PLANTED[request.param]
    plant(monkeypatch)
    yield expected


def test_the_checker_catches_planted_bugs(planted: set[str]) -> None:
    kinds: set[str] = set()
    for seed in range(PLANTED_SEEDS):
        kinds |= {anomaly.kind for anomaly in run(seed, STEPS).anomalies()}
    assert kinds & planted, f"expected one of {planted}, the checker reported {kinds}"


@pytest.mark.parametrize("name", sorted(PLANTED_WITH_DISK_FAULTS))
def test_the_checker_catches_planted_bugs_under_disk_faults(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant, expected = PLANTED_WITH_DISK_FAULTS[name]
    plant(monkeypatch)
    kinds: set[str] = set()
    for seed in range(PLANTED_SEEDS):
        kinds |= {anomaly.kind for anomaly in run(seed, STEPS, DISK_FAULTS).anomalies()}
    assert kinds & expected, f"expected one of {expected}, the checker reported {kinds}"


def test_what_recovery_exposes_survives_the_next_crash() -> None:
    """Found by the simulation (seeds 105, 147, ...): after a crash the log may hold writes
    that were never fsynced; recovery makes them the high watermark, so it must sync them."""
    import random

    from samsa.log.partition import LogConfig, PartitionLog
    from samsa.sim.clients import batch as make_batch

    disk = SimDisk()
    log = PartitionLog.open(disk, "/d/t-0", "t", 0, LogConfig(), 0, recover=False)
    data = make_batch([b"never-synced"], -1, -1, -1, False, 0)
    from samsa.protocol.batch import parse_header

    log.append(data, parse_header(data), 0)
    disk.crash(random.Random(0), torn_probability=0.0)  # a killed process: the bytes...
    disk.files["/d/t-0/00000000000000000000.log"].content = bytearray(data)  # ...stay cached
    disk.reboot()
    recovered = PartitionLog.open(disk, "/d/t-0", "t", 0, LogConfig(), 0, recover=True)
    assert recovered.high_watermark == 1  # readers may now see offset 0
    disk.crash(random.Random(0), torn_probability=0.0)  # and the machine dies right after
    disk.reboot()
    again = PartitionLog.open(disk, "/d/t-0", "t", 0, LogConfig(), 0, recover=True)
    assert again.log_end_offset == 1, "a record below the high watermark was taken back"
