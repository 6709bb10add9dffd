"""The three processing guarantees and the client settings each one needs.

- at_most_once: the input offsets are committed *before* the records are processed; a crash
  loses the records in flight, never repeats them.
- at_least_once: outputs and changelog are flushed (idempotent producer), *then* the offsets
  are committed; a crash between the two repeats records (outputs twice, state applied twice).
- exactly_once: outputs, changelog and input offsets are written in one Kafka transaction
  (KIP-98, offsets by KIP-447 `send_offsets_to_transaction` with the consumer group metadata),
  read back at read_committed; a crash aborts the whole transaction.
"""

from __future__ import annotations

import enum
from typing import Any

# Kafka Streams' EOS default: a crashed instance's transaction that nobody aborts
# (init_transactions of the same id does) holds read_committed readers this long.
TRANSACTION_TIMEOUT_MS = 10_000


class Guarantee(enum.Enum):
    AT_MOST_ONCE = "at_most_once"
    AT_LEAST_ONCE = "at_least_once"
    EXACTLY_ONCE = "exactly_once"

    @classmethod
    def parse(cls, value: Guarantee | str) -> Guarantee:
        if isinstance(value, Guarantee):
            return value
        normalised = value.strip().lower().replace("-", "_")
        if normalised == "exactly_once_v2":
            normalised = "exactly_once"
        try:
            return cls(normalised)
        except ValueError:
            names = [g.value for g in cls]
            raise ValueError(f"unknown processing guarantee {value!r}; expected {names}") from None


def consumer_config(
    guarantee: Guarantee, bootstrap_servers: str, group_id: str, auto_offset_reset: str
) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        # The runtime decides when offsets are committed; never librdkafka behind its back.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": auto_offset_reset,
        # Range keeps partition p of every input topic on one instance, with its state (the
        # co-partitioning Kafka Streams relies on too). Eager: everything is revoked, and the
        # open transaction committed, before anything is handed out again.
        "partition.assignment.strategy": "range",
        # exactly_once must not process records of aborted or open transactions. The other
        # guarantees read as Kafka Streams does for them (read_uncommitted).
        "isolation.level": (
            "read_committed" if guarantee is Guarantee.EXACTLY_ONCE else "read_uncommitted"
        ),
    }


def producer_config(
    guarantee: Guarantee, bootstrap_servers: str, transactional_id: str
) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "linger.ms": 5}
    if guarantee is Guarantee.EXACTLY_ONCE:
        config["transactional.id"] = transactional_id
        config["transaction.timeout.ms"] = TRANSACTION_TIMEOUT_MS
    elif guarantee is Guarantee.AT_LEAST_ONCE:
        config["enable.idempotence"] = True
        config["acks"] = "all"
    else:
        config["enable.idempotence"] = False
        config["acks"] = "all"
    return config
