"""A transactional id's metadata, and its record in the transaction log.

The log holds one JSON record per transition, keyed by transactional id; a record carries the
whole new metadata, so replaying the log is replacing each id's metadata by its newest record.
A record with `"state": "Dead"` is a tombstone (the id expired).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from samsa.coordinator.txn.states import TxnState

_quote = json.encoder.encode_basestring_ascii  # a JSON string, as json.dumps writes it

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
# Kafka rotates to a new producer id before the epoch reaches Short.MAX_VALUE.
EPOCH_EXHAUSTED = 2**15 - 2

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class TxnMetadata:
    transactional_id: str
    producer_id: int
    previous_producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH
    last_producer_epoch: int = NO_PRODUCER_EPOCH
    timeout_ms: int = 60_000
    state: TxnState = TxnState.EMPTY
    partitions: frozenset[TopicPartition] = field(default_factory=frozenset)
    start_ms: int = -1
    update_ms: int = -1

    @property
    def epoch_exhausted(self) -> bool:
        return self.producer_epoch >= EPOCH_EXHAUSTED

    def but(self, **changes: Any) -> TxnMetadata:
        return dataclasses.replace(self, **changes)

    def encode(self) -> bytes:
        # The text `json.dumps(..., separators=(",", ":"))` writes for these fields in this
        # order (tests/coordinator/test_txn_metadata.py), formatted directly: three of these
        # records are written per transaction, and json.dumps took twice as long.
        partitions = ",".join(
            f"[{_quote(topic)},{int(partition)}]" for topic, partition in sorted(self.partitions)
        )
        return (
            f'{{"transactional_id":{_quote(self.transactional_id)},'
            f'"producer_id":{int(self.producer_id)},'
            f'"previous_producer_id":{int(self.previous_producer_id)},'
            f'"producer_epoch":{int(self.producer_epoch)},'
            f'"last_producer_epoch":{int(self.last_producer_epoch)},'
            f'"timeout_ms":{int(self.timeout_ms)},'
            f'"state":{_quote(self.state.value)},'
            f'"partitions":[{partitions}],'
            f'"start_ms":{int(self.start_ms)},'
            f'"update_ms":{int(self.update_ms)}}}'
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> TxnMetadata:
        raw = json.loads(data)
        return cls(
            transactional_id=raw["transactional_id"],
            producer_id=raw["producer_id"],
            previous_producer_id=raw["previous_producer_id"],
            producer_epoch=raw["producer_epoch"],
            last_producer_epoch=raw["last_producer_epoch"],
            timeout_ms=raw["timeout_ms"],
            state=TxnState(raw["state"]),
            partitions=frozenset((topic, int(p)) for topic, p in raw["partitions"]),
            start_ms=raw["start_ms"],
            update_ms=raw["update_ms"],
        )
