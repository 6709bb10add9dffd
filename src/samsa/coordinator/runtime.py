"""The coordinator runtime: coordinators decide, one runtime writes (Kafka's CoordinatorRuntime).

Theory of operation
-------------------
A coordinator is a state machine. For a request it returns a `CoordinatorResult` (Kafka's
`CoordinatorResult(records, response)`): the records the request adds to the coordinator's log,
the response once they are durable, and the response if they never become durable. It changes
the state those records describe only when they are replayed; start-up replays the whole log
through the same function, so a coordinator's state is whatever replaying its log gives
(STYLE.md habit 4, invariant 5).

`CoordinatorRuntime` is the only code that touches a coordinator's log. It appends a result's
records as one v2 batch (kio's writer), returns a `Durable` that the durability driver
(`samsa.durability.Driver`) runs once the batch is fsynced, and then replays the records. The
coordinators never see a `PartitionLog`: their tests need no broker, no disk and no sockets.

A write the disk refuses (and the log undid) is reported as an offset past the log end: a wait
for a write that is not in the log fails at once, so the caller answers as for a failed fsync,
and the coordinator's log stays online for the next write (a full disk that has room again). A
write that could not be undone has taken the log offline (as Kafka unloads a coordinator whose
log dir fails).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from kio.records.readers import read_batch
from kio.schema.errors import ErrorCode

from samsa.durability import Durable, Failed
from samsa.log.partition import PartitionLog, StorageError
from samsa.protocol.batch import TRANSACTIONAL_FLAG, BatchHeader, parse_header
from samsa.protocol.batch_writer import record_batch
from samsa.state.producers import Duplicate

R = TypeVar("R")
T = TypeVar("T")
KeyValue = tuple[bytes, bytes | None]  # a record as the log holds it; no value: a tombstone


@dataclass(frozen=True, slots=True)
class CoordinatorResult(Generic[R, T]):
    """What a coordinator decided for one request: `records` for its log, `response` once they
    are durable (and replayed), `failed` if they never become durable."""

    records: tuple[R, ...]
    response: T
    failed: T


@dataclass(frozen=True, slots=True)
class Producer:
    """Whose transactional batch a write is (TxnOffsetCommit), and the check that the
    transaction coordinator knows of its transaction (KIP-890 part 1)."""

    producer_id: int
    producer_epoch: int
    verify_txn: Callable[[BatchHeader], ErrorCode]


class CoordinatorRuntime(Generic[R]):
    """Appends one coordinator's records to its log, and replays them once they are durable.

    `encode` turns a record into the key and value the log holds; `replay` applies durable
    records to the coordinator's state."""

    def __init__(
        self,
        log: PartitionLog,
        encode: Callable[[R], KeyValue],
        replay: Callable[[Sequence[R]], None],
        clock_ms: Callable[[], int],
    ) -> None:
        self.log = log
        self._encode = encode
        self._replay = replay
        self._clock_ms = clock_ms

    def append(self, records: Sequence[R], producer: Producer | None = None) -> int:
        """Append `records` as one batch now; returns the offset the log must be durable to.

        Raises `ProducerStateError` for a transactional batch the producer state refuses."""
        encoded = [self._encode(record) for record in records]
        now_ms = self._clock_ms()
        data = record_batch(
            [value for _, value in encoded],
            keys=[key for key, _ in encoded],
            timestamp_ms=now_ms,
            producer_id=producer.producer_id if producer is not None else -1,
            producer_epoch=producer.producer_epoch if producer is not None else -1,
            attributes=TRANSACTIONAL_FLAG if producer is not None else 0,
        )
        verify = producer.verify_txn if producer is not None else None
        try:
            written = self.log.append(data, parse_header(data), now_ms, verify, coordinator=True)
        except StorageError:
            return self.log.log_end_offset + 1
        if isinstance(written, Duplicate):
            raise RuntimeError("a coordinator batch was taken for a duplicate")
        return self.log.log_end_offset

    def write(self, records: Sequence[R], producer: Producer | None = None) -> Durable[bool]:
        """Append `records`; once durable, replay them. The result says whether they were."""
        end = self.append(records, producer)

        def then(failed: Failed) -> bool:
            if failed:
                return False
            self._replay(records)
            return True

        return Durable([(self.log, end)], then)

    def run(self, result: CoordinatorResult[R, T], producer: Producer | None = None) -> Durable[T]:
        """Write a result's records; its response once they are durable and replayed.

        Raises `ProducerStateError` for a transactional batch the producer state refuses."""
        step = self.write(result.records, producer)
        return Durable(
            step.waits, lambda failed: result.response if step.then(failed) else result.failed
        )

    def apply_now(self, records: Sequence[R]) -> None:
        """Append `records` and replay them at once, before they are durable: only for records
        nothing a client sees can depend on before a later, awaited record of the same log."""
        self.append(records)
        self._replay(records)

    def read(self) -> Iterator[tuple[bytes | None, bytes | None]]:
        """Key and value of every record of the log, in order (start-up replay)."""
        log = self.log
        for _, data in log.batches(log.log_start_offset, log.log_end_offset):
            batch, _ = read_batch(data, 0)
            for record in batch.records:
                yield record.key, record.value
