from __future__ import annotations

from pathlib import Path

from samsa.coordinator.producer_ids import BLOCK_SIZE, ProducerIdManager
from samsa.log.storage import OsStorage


def test_ids_are_never_reused_across_restarts(tmp_path: Path) -> None:
    seen: set[int] = set()
    for _ in range(3):
        manager = ProducerIdManager(OsStorage(), str(tmp_path))  # a restart, clean or not
        ids = [manager.next_id() for _ in range(BLOCK_SIZE + 5)]
        assert len(set(ids)) == len(ids)
        assert not seen & set(ids)
        seen.update(ids)


def test_the_block_is_reserved_before_its_first_id_is_handed_out(tmp_path: Path) -> None:
    manager = ProducerIdManager(OsStorage(), str(tmp_path))
    first = manager.next_id()
    # Nothing more is written until the block runs out, but the reservation is already durable.
    reloaded = ProducerIdManager(OsStorage(), str(tmp_path))
    assert reloaded.next_id() >= first + BLOCK_SIZE
