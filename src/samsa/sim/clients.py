"""Simulated clients: an idempotent producer and a transactional producer, each with one
request in flight, retrying exactly what they sent when a response is lost, as real clients do.

They keep the ground truth the checker compares the broker's logs against: what was
acknowledged, and how each transaction ended as far as its producer knows.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass, field
from typing import Any

from kio.schema.add_partitions_to_txn.v3.request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
)
from kio.schema.end_txn.v3.request import EndTxnRequest
from kio.schema.errors import ErrorCode
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.schema.types import ProducerId, TopicName, TransactionalId
from kio.static.primitive import Records, i16, i32, i32Timedelta
from kio.static.protocol import RequestPayload

from samsa.protocol.apis import ApiKey
from samsa.protocol.batch import TRANSACTIONAL_FLAG
from samsa.protocol.batch_writer import record_batch

TOPICS = {"a": 3, "b": 2}
# Errors a client retries with the same request (a disk fault on the broker's side).
RETRIABLE = (
    ErrorCode.kafka_storage_error,
    ErrorCode.coordinator_not_available,
    ErrorCode.not_coordinator,
)
TXN_TIMEOUT_MS = 3000


def batch(
    values: list[bytes],
    producer_id: int,
    epoch: int,
    base_sequence: int,
    transactional: bool,
    timestamp_ms: int,
) -> bytes:
    return record_batch(
        values,
        timestamp_ms=timestamp_ms,
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=base_sequence,
        attributes=TRANSACTIONAL_FLAG if transactional else 0,
    )


@dataclass(frozen=True, slots=True)
class Call:
    """A request a client wants to send, as the version it sends."""

    request: RequestPayload

    @property
    def api_key(self) -> int:
        return int(type(self.request).__api_key__)

    @property
    def version(self) -> int:
        return int(type(self.request).__version__)


def ms(value: int) -> i32Timedelta:
    return i32Timedelta.parse(datetime.timedelta(milliseconds=value))


def produce_call(transactional_id: str | None, topic: str, partition: int, records: bytes) -> Call:
    return Call(
        ProduceRequest(
            transactional_id=None
            if transactional_id is None
            else TransactionalId(transactional_id),
            acks=i16(-1),
            timeout=ms(5000),
            topic_data=(
                TopicProduceData(
                    name=TopicName(topic),
                    partition_data=(
                        PartitionProduceData(index=i32(partition), records=Records(records)),
                    ),
                ),
            ),
        )
    )


def init_producer_id_call(transactional_id: str | None, timeout_ms: int) -> Call:
    txn_id = None if transactional_id is None else TransactionalId(transactional_id)
    return Call(InitProducerIdRequest(transactional_id=txn_id, transaction_timeout=ms(timeout_ms)))


@dataclass(slots=True)
class Acked:
    topic: str
    partition: int
    base_offset: int
    values: list[bytes]


@dataclass(slots=True)
class Anomaly:
    kind: str
    detail: str


@dataclass
class IdempotentProducer:
    """Writes batches of unique values; retries the same batch (same sequence) until acked."""

    name: str
    rng: random.Random
    producer_id: int = -1
    sequences: dict[tuple[str, int], int] = field(default_factory=dict)
    current: tuple[str, int, list[bytes], int] | None = None  # topic, partition, values, seq
    counter: int = 0
    acked: list[Acked] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)

    def next_call(self, now_ms: int) -> Call:
        if self.producer_id < 0:
            return init_producer_id_call(None, 60_000)
        if self.current is None:
            topic = self.rng.choice(sorted(TOPICS))
            partition = self.rng.randrange(TOPICS[topic])
            values = []
            for _ in range(self.rng.randint(1, 3)):
                values.append(f"{self.name}:{self.counter}".encode())
                self.counter += 1
            self.current = (topic, partition, values, self.sequences.get((topic, partition), 0))
        topic, partition, values, sequence = self.current
        return produce_call(
            None, topic, partition, batch(values, self.producer_id, 0, sequence, False, now_ms)
        )

    def on_response(self, call: Call, response: Any) -> None:
        if call.api_key == ApiKey.INIT_PRODUCER_ID:
            if response.error_code == ErrorCode.none:
                self.producer_id = int(response.producer_id)
            return
        partition_response = response.responses[0].partition_responses[0]
        error = partition_response.error_code
        if self.current is None:
            return
        topic, partition, values, sequence = self.current
        if error in RETRIABLE:
            return  # the same batch is sent again
        if error != ErrorCode.none:
            self.anomalies.append(Anomaly("producer-error", f"{self.name}: {error!r}"))
            return
        self.acked.append(Acked(topic, partition, int(partition_response.base_offset), values))
        self.sequences[topic, partition] = sequence + len(values)
        self.current = None

    def on_lost(self) -> None:
        """Response lost or connection broken: the same batch is sent again."""


@dataclass
class Txn:
    number: int
    partitions: list[tuple[str, int]]
    values: dict[tuple[str, int], list[bytes]]
    decision: str | None = None  # "commit" / "abort" once the producer knows


@dataclass
class TransactionalProducer:
    """Begin, add partitions, write a batch to each, then commit or abort; re-initialises when
    fenced (a timed-out transaction) and sometimes restarts as a new instance (a zombie fence)."""

    name: str
    rng: random.Random
    producer_id: int = -1
    epoch: int = -1
    stage: str = "init"
    txn: Txn | None = None
    produced: int = 0
    commit: bool = True
    txns: list[Txn] = field(default_factory=list)
    sequences: dict[tuple[str, int], int] = field(default_factory=dict)
    anomalies: list[Anomaly] = field(default_factory=list)

    def restart(self) -> None:
        """The client process dies and a new instance starts with the same transactional id.

        Its open transaction is aborted by the coordinator, unless its EndTxn may already have
        been sent: then only the log can tell how it ended."""
        if self.txn is not None and self.txn.decision is None and self.stage != "end":
            self.txn.decision = "abort"
        self.producer_id, self.epoch, self.stage, self.txn = -1, -1, "init", None

    def next_call(self, now_ms: int) -> Call | None:
        if self.stage == "init":
            return init_producer_id_call(self.name, TXN_TIMEOUT_MS)
        if self.stage == "idle":
            number = len(self.txns)
            chosen = sorted(
                {
                    (t, self.rng.randrange(n))
                    for t, n in TOPICS.items()
                    for _ in range(self.rng.randint(0, 1))
                }
                or {("a", 0)}
            )
            self.txn = Txn(
                number,
                chosen,
                {tp: [f"{self.name}:{number}:{tp[0]}{tp[1]}".encode()] for tp in chosen},
            )
            self.txns.append(self.txn)
            self.commit = self.rng.random() < 0.67
            self.stage, self.produced = "add", 0
        txn = self.txn
        if txn is None:
            return None
        if self.stage == "add":
            by_topic: dict[str, list[int]] = {}
            for topic, partition in txn.partitions:
                by_topic.setdefault(topic, []).append(partition)
            return Call(
                AddPartitionsToTxnRequest(
                    v3_and_below_transactional_id=TransactionalId(self.name),
                    v3_and_below_producer_id=ProducerId(self.producer_id),
                    v3_and_below_producer_epoch=i16(self.epoch),
                    v3_and_below_topics=tuple(
                        AddPartitionsToTxnTopic(
                            name=TopicName(t), partitions=tuple(i32(p) for p in ps)
                        )
                        for t, ps in by_topic.items()
                    ),
                )
            )
        if self.stage == "produce":
            topic, partition = txn.partitions[self.produced]
            values = txn.values[topic, partition]
            sequence = self.sequences.get((topic, partition), 0)
            return produce_call(
                self.name,
                topic,
                partition,
                batch(values, self.producer_id, self.epoch, sequence, True, now_ms),
            )
        return Call(
            EndTxnRequest(
                transactional_id=TransactionalId(self.name),
                producer_id=ProducerId(self.producer_id),
                producer_epoch=i16(self.epoch),
                committed=self.commit,
            )
        )

    def _fenced(self) -> None:
        """Fenced: the coordinator aborted the transaction (timeout or a newer instance)."""
        if self.txn is not None and self.txn.decision is None:
            self.txn.decision = "abort"
        self.producer_id, self.epoch, self.stage, self.txn = -1, -1, "init", None

    def on_response(self, call: Call, response: Any) -> None:
        if call.api_key == ApiKey.INIT_PRODUCER_ID:
            if response.error_code == ErrorCode.none:
                if int(response.producer_id) != self.producer_id:
                    self.sequences.clear()
                self.producer_id, self.epoch = (
                    int(response.producer_id),
                    int(response.producer_epoch),
                )
                self.sequences.clear()  # a new epoch starts at sequence 0
                self.stage = "idle"
            return
        if call.api_key == ApiKey.PRODUCE:
            error = response.responses[0].partition_responses[0].error_code
        elif call.api_key == ApiKey.ADD_PARTITIONS_TO_TXN:
            error = (
                response.results_by_topic_v3_and_below[0]
                .results_by_partition[0]
                .partition_error_code
            )
        else:
            error = response.error_code
        if error == ErrorCode.concurrent_transactions or error in RETRIABLE:
            return  # retry the same request
        if error in (
            ErrorCode.producer_fenced,
            ErrorCode.invalid_producer_epoch,
            ErrorCode.invalid_txn_state,
            ErrorCode.invalid_producer_id_mapping,
        ):
            self._fenced()
            return
        if error != ErrorCode.none:
            self.anomalies.append(Anomaly("txn-producer-error", f"{self.name}: {error!r}"))
            self._fenced()
            return
        txn = self.txn
        if txn is None:
            return
        if call.api_key == ApiKey.ADD_PARTITIONS_TO_TXN:
            self.stage = "produce"
        elif call.api_key == ApiKey.PRODUCE:
            topic, partition = txn.partitions[self.produced]
            self.sequences[topic, partition] = self.sequences.get((topic, partition), 0) + 1
            self.produced += 1
            if self.produced == len(txn.partitions):
                self.stage = "end"
        else:
            txn.decision = "commit" if self.commit else "abort"
            self.stage, self.txn = "idle", None

    def on_lost(self) -> None:
        """Response lost: the same request is sent again."""
