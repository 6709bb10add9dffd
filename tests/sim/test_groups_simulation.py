"""The simulation with consumer groups and transactional offset commits (`samsa sim --groups`):
members join, rebalance, expire and commit offsets in transactions through crashes, and
invariant 7 holds; the checker catches offsets made visible before, or without, their COMMIT.
The coordinators' logs are compacted every tick (and the machine crashes during cleaning); a
cleaner that changes what they replay to is caught.

SAMSA_SIM_GROUP_SEEDS sets how many seeds run (default 60).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import pytest

from samsa.coordinator.group import offsets as offsets_module
from samsa.log.compaction import OffsetMap, RawRecord
from samsa.protocol.batch import BatchHeader
from samsa.sim.groups import OffsetCommitter
from samsa.sim.world import World, run

SEEDS = int(os.environ.get("SAMSA_SIM_GROUP_SEEDS", "60"))
STEPS = 300
# Enough seeds for each planted bug to be caught at least twice (the resurrecting cleaner is
# the rarest: seeds 10 and 11 of the first 12, since AddPartitionsToTxn is answered early).
PLANTED_SEEDS = 12


def committers(world: World) -> list[OffsetCommitter]:
    return [c for c in world.clients if isinstance(c, OffsetCommitter)]


def test_group_seeds_pass() -> None:
    failed = {}
    covered = {"transactions": 0, "committed": 0, "generations": 0, "zombies": 0, "crashes": 0}
    for seed in range(SEEDS):
        world = run(seed, STEPS, groups=True)
        covered["crashes"] += world.stats.crashes
        for committer in committers(world):
            covered["transactions"] += len(committer.txns)
            covered["committed"] += sum(t.decision == "commit" for t in committer.txns)
            covered["generations"] += committer.generations_joined
            covered["zombies"] += committer.zombie_commits
        if world.anomalies():
            failed[seed] = world.anomalies()[:5]
    assert not failed, f"replay with `samsa sim --groups --first SEED --seeds 1`: {failed}"
    # The runs really rebalance, crash and refuse zombies' commits, not just commit.
    assert covered["committed"] > SEEDS and covered["zombies"] > 0, covered
    assert covered["generations"] > 2 * SEEDS and covered["crashes"] > SEEDS, covered


def test_a_group_seed_replays_exactly() -> None:
    first, second = run(11, STEPS, groups=True), run(11, STEPS, groups=True)
    assert first.stats == second.stats
    assert [c.txns for c in committers(first)] == [c.txns for c in committers(second)]
    assert first.broker.groups.groups.keys() == second.broker.groups.groups.keys()
    member_ids = [sorted(w.broker.groups.groups["sim-group"].members) for w in (first, second)]
    assert member_ids[0] == member_ids[1]


def _planted(monkeypatch: pytest.MonkeyPatch, bug: str) -> set[str]:
    original = offsets_module.OffsetStore._apply_batch
    original_end = offsets_module.OffsetStore._end_transaction

    def apply_at_once(self: Any, data: bytes, transactional_pid: int | None) -> None:
        original(self, data, None)  # a transactional commit taken as a plain one

    def commit_dropped(self: Any, producer_id: int, commit: bool) -> None:
        original_end(self, producer_id, False)  # every marker taken for an ABORT

    if bug == "visible-at-once":
        monkeypatch.setattr(offsets_module.OffsetStore, "_apply_batch", apply_at_once)
    else:
        monkeypatch.setattr(offsets_module.OffsetStore, "_end_transaction", commit_dropped)
    kinds: set[str] = set()
    for seed in range(PLANTED_SEEDS):
        kinds |= {a.kind for a in run(seed, STEPS, groups=True).anomalies()}
    return kinds


def test_offsets_visible_before_their_commit_marker_are_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kinds = _planted(monkeypatch, "visible-at-once")
    assert {"offset-visible-before-commit", "aborted-offset-visible"} <= kinds, kinds


def test_offsets_lost_at_their_commit_marker_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = _planted(monkeypatch, "commit-dropped")
    assert "committed-offset-not-visible" in kinds, kinds


def test_the_simulation_cleans_and_crashes_while_cleaning() -> None:
    passes = crashes = 0
    for seed in range(PLANTED_SEEDS):
        world = run(seed, STEPS, groups=True)
        assert not world.anomalies(), world.anomalies()[:3]
        passes += world.stats.cleaning_passes
        crashes += world.stats.cleaning_crashes
    assert passes > PLANTED_SEEDS and crashes > 0, (passes, crashes)


def test_a_cleaner_that_resurrects_aborted_commits_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Planted: the offset map takes aborted transactions' records for the latest, so the
    committed offset they would supersede is cleaned away."""

    def add(self: OffsetMap, header: BatchHeader, records: Iterable[RawRecord]) -> None:
        if not header.is_control:
            for record in records:
                if record.key is not None:
                    self.latest[record.key] = record.offset

    monkeypatch.setattr(OffsetMap, "add", add)
    kinds: set[str] = set()
    for seed in range(PLANTED_SEEDS):
        kinds |= {a.kind for a in run(seed, STEPS, groups=True).anomalies()}
    assert "compaction-changed-state" in kinds, kinds
