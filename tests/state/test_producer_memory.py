"""Memory per tracked producer: the broker keeps an entry per producer id and partition for
`producer.id.expiration.ms`, so its size bounds how many producers a broker can afford."""

from __future__ import annotations

from samsa.bench.idempotence import producer_entry_bytes
from samsa.state.producers import BATCHES_RETAINED

PRODUCERS = 10_000
ENTRY_BYTES_MAX = 2048
# Below this the measurement cannot have counted the retained batches at all: each one is a
# slotted object (72 bytes) plus its integers.
ENTRY_BYTES_MIN = BATCHES_RETAINED * 72


def test_a_tracked_producer_with_a_full_window_costs_under_2_kib() -> None:
    entry_bytes = producer_entry_bytes(PRODUCERS)
    print(f"{entry_bytes:.0f} bytes per tracked producer")
    assert ENTRY_BYTES_MIN < entry_bytes < ENTRY_BYTES_MAX, entry_bytes
