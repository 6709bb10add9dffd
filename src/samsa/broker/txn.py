"""Transaction APIs: FindCoordinator, InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
WriteTxnMarkers, and the KIP-664 tooling (DescribeProducers, DescribeTransactions,
ListTransactions). The decisions are the coordinator's; this module speaks the wire."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from kio.schema.errors import ErrorCode

from samsa.broker.answers import answer
from samsa.broker.outcomes import Outcome
from samsa.coordinator.txn.coordinator import COORDINATOR_EPOCH, InitResult
from samsa.coordinator.txn.states import TxnState
from samsa.durability import Durable, gather
from samsa.log.partition import PartitionLog, StorageError
from samsa.protocol.codec import Request
from samsa.state.producers import ProducerStateError

if TYPE_CHECKING:
    from samsa.broker.core import Broker

log = logging.getLogger("samsa.broker")

KEY_TYPE_GROUP = 0
KEY_TYPE_TRANSACTION = 1
OFFSETS_TOPIC = "__consumer_offsets"
T = TypeVar("T")


def offsets_partition(group_id: str) -> tuple[str, int]:
    """Where a group's offsets live; samsa's offsets topic has one partition."""
    return OFFSETS_TOPIC, 0


def _fenced(request: Request, error: ErrorCode, fenced_from: int) -> ErrorCode:
    """PRODUCER_FENCED exists from `fenced_from`; older versions get INVALID_PRODUCER_EPOCH."""
    if error == ErrorCode.producer_fenced and request.api_version < fenced_from:
        return ErrorCode.invalid_producer_epoch
    return error


# --------------------------------------------------------------------- FindCoordinator
def handle_find_coordinator(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    key_type = int(getattr(body, "key_type", KEY_TYPE_GROUP))
    error = (
        ErrorCode.none
        if key_type in (KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION)
        else ErrorCode.invalid_request
    )
    found = {
        "node_id": broker.node_id if not error else -1,
        "host": broker.endpoint.host if not error else "",
        "port": broker.endpoint.port if not error else -1,
        "error_code": error,
        "error_message": None if not error else "unknown key type",
    }
    if request.api_version >= 4:
        return broker.reply(
            request,
            {
                "throttle_time": 0,
                "coordinators": [{"key": key, **found} for key in body.coordinator_keys],
            },
        )
    return broker.reply(request, {"throttle_time": 0, **found})


# --------------------------------------------------------------------- InitProducerId
def handle_init_producer_id(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    result: InitResult | Durable[InitResult]
    try:
        if body.transactional_id is None:
            # Idempotent only: always a fresh id at epoch 0, whatever a v3+ request carries
            # (this is how librdkafka bumps an idempotent producer's epoch, KIP-360).
            result = InitResult(ErrorCode.none, broker.producer_ids.next_id(), 0)
        else:
            timeout_ms = int(body.transaction_timeout.total_seconds() * 1000)
            result = broker.txn.init_producer_id(
                body.transactional_id,
                timeout_ms,
                int(getattr(body, "producer_id", -1)),
                int(getattr(body, "producer_epoch", -1)),
            )
    except OSError as exc:
        # The next block of producer ids could not be reserved on disk (a full disk), before
        # any id was handed out or any state changed. KAFKA_STORAGE_ERROR is retriable: the
        # client asks again, on a connection that stays open.
        log.warning("InitProducerId refused: no producer id block could be reserved: %s", exc)
        result = InitResult(ErrorCode.kafka_storage_error)

    def describe(r: InitResult) -> dict[str, Any]:
        return {
            "throttle_time": 0,
            "error_code": _fenced(request, r.error, 4),
            "producer_id": r.producer_id,
            "producer_epoch": r.producer_epoch,
        }

    return answer(broker, request, result, describe)


# --------------------------------------------------------------------- AddPartitionsToTxn
def handle_add_partitions_to_txn(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    txn_id = body.v3_and_below_transactional_id
    topics = [(t.name, [int(p) for p in t.partitions]) for t in body.v3_and_below_topics]
    unknown = {
        (name, p) for name, ps in topics for p in ps if broker.topics.partition(name, p) is None
    }

    def describe(errors: dict[tuple[str, int], ErrorCode]) -> dict[str, Any]:
        return {
            "throttle_time": 0,
            "results_by_topic_v3_and_below": [
                {
                    "name": name,
                    "results_by_partition": [
                        {
                            "partition_index": p,
                            "partition_error_code": _fenced(request, errors[name, p], 2),
                        }
                        for p in ps
                    ],
                }
                for name, ps in topics
            ],
        }

    every = [(name, p) for name, ps in topics for p in ps]
    if unknown:
        return broker.reply(
            request,
            describe(
                {
                    tp: ErrorCode.unknown_topic_or_partition
                    if tp in unknown
                    else ErrorCode.operation_not_attempted
                    for tp in every
                }
            ),
        )
    result = broker.txn.add_partitions(
        txn_id, int(body.v3_and_below_producer_id), int(body.v3_and_below_producer_epoch), every
    )
    return answer(broker, request, result, lambda error: describe(dict.fromkeys(every, error)))


def handle_add_offsets_to_txn(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    result = broker.txn.add_partitions(
        body.transactional_id,
        int(body.producer_id),
        int(body.producer_epoch),
        [offsets_partition(body.group_id)],
    )
    return answer(
        broker,
        request,
        result,
        lambda error: {"throttle_time": 0, "error_code": _fenced(request, error, 2)},
    )


# --------------------------------------------------------------------- EndTxn
def handle_end_txn(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    result = broker.txn.end_transaction(
        body.transactional_id, int(body.producer_id), int(body.producer_epoch), bool(body.committed)
    )
    return answer(
        broker,
        request,
        result,
        lambda error: {"throttle_time": 0, "error_code": _fenced(request, error, 2)},
    )


# --------------------------------------------------------------------- WriteTxnMarkers
def handle_write_txn_markers(broker: Broker, request: Request) -> Outcome:
    """Markers sent by a client. In Kafka WriteTxnMarkers is how the transaction coordinator
    tells partition leaders a transaction's outcome; a client sends it only to abort a hanging
    transaction (KIP-664: `Admin.abortTransaction`, `kafka-transactions.sh abort`, and
    `samsa txn abort`). samsa has one broker and its coordinator writes its markers itself, so
    every WriteTxnMarkers comes from a client, and:

    - a COMMIT is refused with CLUSTER_AUTHORIZATION_FAILED (what Kafka answers a client without
      ClusterAction), and nothing is written: only the coordinator decides a commit, or one
      request could make another producer's open transaction visible while that producer goes
      on to abort it;
    - an ABORT of a transaction the coordinator holds open is done by the coordinator, fencing
      the producer (`TransactionCoordinator.abort_from_client`), so the coordinator, the
      producer and every partition of the transaction agree on the outcome;
    - an ABORT of a transaction the coordinator does not hold (a hanging one) is written to the
      partition as Kafka writes it, if the producer has a transaction open there.

    Issue 16 (ACLs): once ACLs exist, a principal without ClusterAction on the cluster gets
    CLUSTER_AUTHORIZATION_FAILED for every partition here, before anything else, as in Kafka's
    `KafkaApis.handleWriteTxnMarkersRequest`. A COMMIT stays refused even with ClusterAction:
    no other broker sends samsa markers.
    """
    # Issue 16: the ClusterAction check goes here, once ACLs exist.
    now = broker.clock_ms()
    entries: list[dict[str, Any]] = []
    later: dict[int, Durable[ErrorCode]] = {}
    results = []
    for sent in request.payload.markers:
        marker = ClientMarker(
            int(sent.producer_id),
            int(sent.producer_epoch),
            bool(sent.transaction_result),
            int(sent.coordinator_epoch),
        )
        topics = []
        for topic in sent.topics:
            partitions = []
            for index in topic.partition_indexes:
                result = _client_marker(broker, marker, str(topic.name), int(index), now)
                entry = {"partition_index": index, "error_code": ErrorCode.none}
                if isinstance(result, Durable):
                    later[len(entries)] = result
                else:
                    entry["error_code"] = result
                entries.append(entry)
                partitions.append(entry)
            topics.append({"name": topic.name, "partitions": partitions})
        results.append({"producer_id": sent.producer_id, "topics": topics})

    def describe(done: dict[int, ErrorCode]) -> dict[str, Any]:
        for key, error in done.items():
            entries[key]["error_code"] = error
        return {"markers": results}

    done: dict[int, ErrorCode] | Durable[dict[int, ErrorCode]] = gather(later) if later else {}
    return answer(broker, request, done, describe)


@dataclass(frozen=True, slots=True)
class ClientMarker:
    """One marker of a WriteTxnMarkers request, as typed values."""

    producer_id: int
    producer_epoch: int
    commit: bool
    coordinator_epoch: int


def _client_marker(
    broker: Broker, marker: ClientMarker, topic: str, index: int, now: int
) -> ErrorCode | Durable[ErrorCode]:
    """One partition of a client's WriteTxnMarkers (see `handle_write_txn_markers`)."""
    if marker.commit:
        return ErrorCode.cluster_authorization_failed
    partition_log = broker.topics.partition(topic, index)
    if partition_log is None:
        return ErrorCode.unknown_topic_or_partition
    if marker.coordinator_epoch < COORDINATOR_EPOCH:
        return ErrorCode.transaction_coordinator_fenced
    decided = broker.txn.abort_from_client(
        marker.producer_id, marker.producer_epoch, (topic, index)
    )
    if decided is not None:
        return decided
    return _abort_hanging(partition_log, marker, now)


def _abort_hanging(
    partition_log: PartitionLog, marker: ClientMarker, now: int
) -> ErrorCode | Durable[ErrorCode]:
    """Write an ABORT marker for a transaction the coordinator does not hold. Kafka's rule: the
    marker's epoch is at least the producer's epoch here, else INVALID_PRODUCER_EPOCH. Where the
    producer has no transaction open nothing is written (Kafka would write a marker that closes
    nothing, and takes the producer's epoch here to whatever the client sent)."""
    try:
        partition_log.check_online()
        partition_log.producers.check_marker(marker.producer_id, marker.producer_epoch)
        producer = partition_log.producers.describe(marker.producer_id)
        if producer is None or not producer.in_transaction:
            return ErrorCode.none
        partition_log.append_marker(
            marker.producer_id, marker.producer_epoch, False, marker.coordinator_epoch, now
        )
    except (ProducerStateError, StorageError) as exc:
        return exc.error
    return Durable(
        [(partition_log, partition_log.log_end_offset)],
        lambda failed: ErrorCode.kafka_storage_error if failed else ErrorCode.none,
    )


# --------------------------------------------------------------------- KIP-664 tooling
def handle_describe_producers(broker: Broker, request: Request) -> Outcome:
    topics = []
    for topic in request.payload.topics:
        partitions = []
        for index in topic.partition_indexes:
            partition_log = broker.topics.partition(topic.name, index)
            if partition_log is None or partition_log.offline is not None:
                error = (
                    ErrorCode.unknown_topic_or_partition
                    if partition_log is None
                    else ErrorCode.kafka_storage_error
                )
                partitions.append(
                    {
                        "partition_index": index,
                        "error_code": error,
                        "error_message": None,
                        "active_producers": (),
                    }
                )
                continue
            partitions.append(
                {
                    "partition_index": index,
                    "error_code": ErrorCode.none,
                    "error_message": None,
                    "active_producers": [
                        {
                            "producer_id": e.producer_id,
                            "producer_epoch": e.producer_epoch,
                            "last_sequence": e.last_sequence,
                            "last_timestamp": e.last_timestamp,
                            "coordinator_epoch": e.coordinator_epoch,
                            "current_txn_start_offset": e.current_txn_start_offset,
                        }
                        for e in partition_log.producers.describe_all()
                    ],
                }
            )
        topics.append({"name": topic.name, "partitions": partitions})
    return broker.reply(request, {"throttle_time": 0, "topics": topics})


def handle_describe_transactions(broker: Broker, request: Request) -> Outcome:
    states = []
    for txn_id in request.payload.transactional_ids:
        meta = broker.txn.txns.get(txn_id)
        if meta is None:
            states.append(
                {
                    "error_code": ErrorCode.transactional_id_not_found,
                    "transactional_id": txn_id,
                    "transaction_state": "",
                    "transaction_timeout": 0,
                    "transaction_start_time": datetime.datetime.fromtimestamp(0, datetime.UTC),
                    "producer_id": -1,
                    "producer_epoch": -1,
                    "topics": (),
                }
            )
            continue
        by_topic: dict[str, list[int]] = {}
        for topic, index in sorted(meta.partitions):
            by_topic.setdefault(topic, []).append(index)
        states.append(
            {
                "error_code": ErrorCode.none,
                "transactional_id": txn_id,
                "transaction_state": meta.state.value,
                "transaction_timeout": meta.timeout_ms,
                "transaction_start_time": datetime.datetime.fromtimestamp(
                    max(meta.start_ms, 0) / 1000, datetime.UTC
                ),
                "producer_id": meta.producer_id,
                "producer_epoch": meta.producer_epoch,
                "topics": [{"topic": t, "partitions": ps} for t, ps in by_topic.items()],
            }
        )
    return broker.reply(request, {"throttle_time": 0, "transaction_states": states})


def handle_list_transactions(broker: Broker, request: Request) -> Outcome:
    body = request.payload
    known = {state.value for state in TxnState}
    state_filters = set(body.state_filters)
    pid_filters = set(body.producer_id_filters)
    duration_ms = int(getattr(body, "duration_filter", -1))
    now = broker.clock_ms()
    found = [
        {
            "transactional_id": meta.transactional_id,
            "producer_id": meta.producer_id,
            "transaction_state": meta.state.value,
        }
        for meta in broker.txn.txns.values()
        if (not state_filters or meta.state.value in state_filters)
        and (not pid_filters or meta.producer_id in pid_filters)
        and (duration_ms < 0 or (meta.start_ms >= 0 and now - meta.start_ms >= duration_ms))
    ]
    return broker.reply(
        request,
        {
            "throttle_time": 0,
            "error_code": ErrorCode.none,
            "unknown_state_filters": sorted(state_filters - known),
            "transaction_states": found,
        },
    )
