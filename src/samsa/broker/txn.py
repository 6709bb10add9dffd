"""Transaction APIs: FindCoordinator, InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
WriteTxnMarkers, and the KIP-664 tooling (DescribeProducers, DescribeTransactions,
ListTransactions). The decisions are the coordinator's; this module speaks the wire."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kio.schema.add_offsets_to_txn.v3.request import AddOffsetsToTxnRequest
from kio.schema.add_offsets_to_txn.v3.response import AddOffsetsToTxnResponse
from kio.schema.add_partitions_to_txn.v3.request import AddPartitionsToTxnRequest
from kio.schema.add_partitions_to_txn.v3.response import (
    AddPartitionsToTxnPartitionResult,
    AddPartitionsToTxnResponse,
    AddPartitionsToTxnTopicResult,
)
from kio.schema.describe_producers.v0.request import DescribeProducersRequest
from kio.schema.describe_producers.v0.response import (
    DescribeProducersResponse,
    PartitionResponse,
    ProducerState,
    TopicResponse,
)
from kio.schema.describe_transactions.v0.request import DescribeTransactionsRequest
from kio.schema.describe_transactions.v0.response import (
    DescribeTransactionsResponse,
    TopicData,
)
from kio.schema.describe_transactions.v0.response import (
    TransactionState as DescribedTransaction,
)
from kio.schema.end_txn.v4.request import EndTxnRequest
from kio.schema.end_txn.v4.response import EndTxnResponse
from kio.schema.errors import ErrorCode
from kio.schema.find_coordinator.v3.request import (
    FindCoordinatorRequest as FindCoordinatorRequestV3,
)
from kio.schema.find_coordinator.v3.response import (
    FindCoordinatorResponse as FindCoordinatorResponseV3,
)
from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest
from kio.schema.find_coordinator.v4.response import Coordinator, FindCoordinatorResponse
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.init_producer_id.v4.response import InitProducerIdResponse
from kio.schema.list_transactions.v1.request import ListTransactionsRequest
from kio.schema.list_transactions.v1.response import ListTransactionsResponse
from kio.schema.list_transactions.v1.response import TransactionState as ListedTransaction
from kio.schema.types import BrokerId, ProducerId, TopicName, TransactionalId
from kio.schema.write_txn_markers.v1.request import WritableTxnMarker, WriteTxnMarkersRequest
from kio.schema.write_txn_markers.v1.response import (
    WritableTxnMarkerPartitionResult,
    WritableTxnMarkerResult,
    WritableTxnMarkerTopicResult,
    WriteTxnMarkersResponse,
)
from kio.static.primitive import i16, i32, i32Timedelta, i64
from kio.static.protocol import RequestPayload

from samsa.broker import authz
from samsa.broker.answers import answer
from samsa.broker.authz import INTERNAL_TOPICS, Kind, Op
from samsa.broker.outcomes import Outcome
from samsa.broker.routing import NO_THROTTLE, reply, timestamp, to_ms
from samsa.coordinator.txn.coordinator import COORDINATOR_EPOCH, InitResult
from samsa.coordinator.txn.states import TxnState
from samsa.durability import Durable, gather
from samsa.log.partition import PartitionLog, StorageError
from samsa.protocol import versions
from samsa.protocol.codec import Request
from samsa.ratelog import RateLimitedLog
from samsa.state.producers import ProducerDescription, ProducerStateError

if TYPE_CHECKING:
    from samsa.broker.core import Broker

log = logging.getLogger("samsa.broker")
# Repeats per request or retry while the disk fails: one line per interval.
_limited = RateLimitedLog(log)

KEY_TYPE_GROUP = 0
KEY_TYPE_TRANSACTION = 1
# FindCoordinator v4 asks for several keys at once (KIP-699); before, for one `key`.
BATCHED_KEYS_VERSION_MIN = 4
OFFSETS_TOPIC = "__consumer_offsets"


def offsets_partition(group_id: str) -> tuple[str, int]:
    """Where a group's offsets live; samsa's offsets topic has one partition."""
    return OFFSETS_TOPIC, 0


def _fenced(request: Request[RequestPayload], error: ErrorCode, fenced_from: int) -> ErrorCode:
    """PRODUCER_FENCED exists from `fenced_from`; older versions get INVALID_PRODUCER_EPOCH."""
    if error == ErrorCode.producer_fenced and request.api_version < fenced_from:
        return ErrorCode.invalid_producer_epoch
    return error


# --------------------------------------------------------------------- FindCoordinator
def find_coordinator_view(request: Request[RequestPayload]) -> FindCoordinatorRequest:
    """Before v4 a request asks for one `key`: as Kafka's `FindCoordinatorRequest` does, it is
    taken as the one coordinator key of a batch."""
    if request.api_version >= BATCHED_KEYS_VERSION_MIN:
        return versions.convert(request.payload, FindCoordinatorRequest)
    old = versions.convert(request.payload, FindCoordinatorRequestV3)
    return FindCoordinatorRequest(key_type=old.key_type, coordinator_keys=(old.key,))


def handle_find_coordinator(broker: Broker, request: Request[FindCoordinatorRequest]) -> Outcome:
    body = request.payload
    known = body.key_type in (KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION)
    found = tuple(
        _refused_coordinator(key, refusal)
        if (refusal := _find_refusal(broker, request, body.key_type, key)) is not None
        else _coordinator(broker, request.listener, key, known)
        for key in body.coordinator_keys
    )
    if request.api_version >= BATCHED_KEYS_VERSION_MIN:
        return reply(
            request, FindCoordinatorResponse(throttle_time=NO_THROTTLE, coordinators=found)
        )
    (one,) = found  # the view's one key
    return reply(
        request,
        FindCoordinatorResponseV3(
            throttle_time=NO_THROTTLE,
            error_code=one.error_code,
            error_message=one.error_message,
            node_id=one.node_id,
            host=one.host,
            port=one.port,
        ),
    )


def _find_refusal(
    broker: Broker, request: Request[FindCoordinatorRequest], key_type: int, key: str
) -> ErrorCode | None:
    """KafkaApis.getCoordinator: DESCRIBE on the group or on the transactional id."""
    if key_type == KEY_TYPE_GROUP and not authz.allowed(
        broker, request, Op.DESCRIBE, Kind.GROUP, key
    ):
        return ErrorCode.group_authorization_failed
    if key_type == KEY_TYPE_TRANSACTION and not authz.allowed(
        broker, request, Op.DESCRIBE, Kind.TRANSACTIONAL_ID, key
    ):
        return ErrorCode.transactional_id_authorization_failed
    return None


def _refused_coordinator(key: str, error: ErrorCode) -> Coordinator:
    return Coordinator(
        key=key,
        node_id=BrokerId(-1),
        host="",
        port=i32(-1),
        error_code=error,
        error_message=authz.MESSAGES[error],
    )


def _coordinator(broker: Broker, listener: str, key: str, known: bool) -> Coordinator:
    """This broker coordinates every group and transaction; any other key type is refused."""
    endpoint = broker.endpoint_for(listener)
    return Coordinator(
        key=key,
        node_id=BrokerId(broker.node_id if known else -1),
        host=endpoint.host if known else "",
        port=i32(endpoint.port if known else -1),
        error_code=ErrorCode.none if known else ErrorCode.invalid_request,
        error_message=None if known else "unknown key type",
    )


# --------------------------------------------------------------------- InitProducerId
def handle_init_producer_id(broker: Broker, request: Request[InitProducerIdRequest]) -> Outcome:
    body = request.payload
    result: InitResult | Durable[InitResult]
    try:
        refusal = _init_refusal(broker, request)
        if refusal is not None:
            result = InitResult(refusal)
        elif body.transactional_id is None:
            # Idempotent only: always a fresh id at epoch 0, whatever a v3+ request carries
            # (this is how librdkafka bumps an idempotent producer's epoch, KIP-360).
            result = InitResult(ErrorCode.none, broker.producer_ids.next_id(), 0)
        else:
            result = broker.txn.init_producer_id(
                body.transactional_id,
                to_ms(body.transaction_timeout),
                body.producer_id,
                body.producer_epoch,
            )
    except OSError as exc:
        # The next block of producer ids could not be reserved on disk (a full disk), before
        # any id was handed out or any state changed. KAFKA_STORAGE_ERROR is retriable: the
        # client asks again, on a connection that stays open.
        _limited.warning("InitProducerId refused: no producer id block could be reserved: %s", exc)
        result = InitResult(ErrorCode.kafka_storage_error)

    def describe(r: InitResult) -> InitProducerIdResponse:
        return InitProducerIdResponse(
            throttle_time=NO_THROTTLE,
            error_code=_fenced(request, r.error, 4),
            producer_id=ProducerId(r.producer_id),
            producer_epoch=i16(r.producer_epoch),
        )

    return answer(request, result, describe)


def _init_refusal(broker: Broker, request: Request[InitProducerIdRequest]) -> ErrorCode | None:
    """KafkaApis.handleInitProducerIdRequest: WRITE on the transactional id; without one
    (idempotence), IDEMPOTENT_WRITE on the cluster or WRITE on some topic (KIP-679)."""
    transactional_id = request.payload.transactional_id
    if transactional_id is not None:
        if not authz.allowed(broker, request, Op.WRITE, Kind.TRANSACTIONAL_ID, transactional_id):
            return ErrorCode.transactional_id_authorization_failed
    elif not (
        authz.cluster_allowed(broker, request, Op.IDEMPOTENT_WRITE)
        or authz.allowed_any(broker, request, Op.WRITE, Kind.TOPIC)
    ):
        return ErrorCode.cluster_authorization_failed
    return None


def _writes_txn(broker: Broker, request: Request[Any], transactional_id: str) -> bool:
    return authz.allowed(broker, request, Op.WRITE, Kind.TRANSACTIONAL_ID, transactional_id)


# --------------------------------------------------------------------- AddPartitionsToTxn
def handle_add_partitions_to_txn(
    broker: Broker, request: Request[AddPartitionsToTxnRequest]
) -> Outcome:
    body = request.payload
    topics = [(t.name, t.partitions) for t in body.v3_and_below_topics]
    unknown = {
        (name, p) for name, ps in topics for p in ps if broker.topics.partition(name, p) is None
    }

    def describe(errors: dict[tuple[str, int], ErrorCode]) -> AddPartitionsToTxnResponse:
        return AddPartitionsToTxnResponse(
            throttle_time=NO_THROTTLE,
            results_by_topic_v3_and_below=tuple(
                AddPartitionsToTxnTopicResult(
                    name=name,
                    results_by_partition=tuple(
                        AddPartitionsToTxnPartitionResult(
                            partition_index=p,
                            partition_error_code=_fenced(request, errors[name, p], 2),
                        )
                        for p in ps
                    ),
                )
                for name, ps in topics
            ),
        )

    every: list[tuple[str, int]] = [(name, p) for name, ps in topics for p in ps]
    # KafkaApis.handleAddPartitionsToTxnRequest (v3 and below, from clients): WRITE on the
    # transactional id, then WRITE on each topic; an internal topic is never added.
    if not _writes_txn(broker, request, body.v3_and_below_transactional_id):
        return reply(
            request, describe(dict.fromkeys(every, ErrorCode.transactional_id_authorization_failed))
        )
    writable = authz.allowed_names(
        broker, request, Op.WRITE, Kind.TOPIC, (n for n, _ in topics if n not in INTERNAL_TOPICS)
    )
    refused = {(name, p) for name, p in every if name not in writable}
    if unknown or refused:
        return reply(
            request,
            describe(
                {
                    tp: ErrorCode.topic_authorization_failed
                    if tp in refused
                    else ErrorCode.unknown_topic_or_partition
                    if tp in unknown
                    else ErrorCode.operation_not_attempted
                    for tp in every
                }
            ),
        )
    result = broker.txn.add_partitions(
        body.v3_and_below_transactional_id,
        body.v3_and_below_producer_id,
        body.v3_and_below_producer_epoch,
        every,
        early=True,
    )
    return answer(request, result, lambda error: describe(dict.fromkeys(every, error)))


def handle_add_offsets_to_txn(broker: Broker, request: Request[AddOffsetsToTxnRequest]) -> Outcome:
    body = request.payload
    # KafkaApis.handleAddOffsetsToTxnRequest: WRITE on the transactional id, READ on the group.
    if not _writes_txn(broker, request, body.transactional_id):
        refusal = ErrorCode.transactional_id_authorization_failed
    elif not authz.allowed(broker, request, Op.READ, Kind.GROUP, body.group_id):
        refusal = ErrorCode.group_authorization_failed
    else:
        refusal = None
    if refusal is not None:
        return reply(
            request, AddOffsetsToTxnResponse(throttle_time=NO_THROTTLE, error_code=refusal)
        )
    result = broker.txn.add_partitions(
        body.transactional_id,
        body.producer_id,
        body.producer_epoch,
        [offsets_partition(body.group_id)],
    )
    return answer(
        request,
        result,
        lambda error: AddOffsetsToTxnResponse(
            throttle_time=NO_THROTTLE, error_code=_fenced(request, error, 2)
        ),
    )


# --------------------------------------------------------------------- EndTxn
def handle_end_txn(broker: Broker, request: Request[EndTxnRequest]) -> Outcome:
    body = request.payload
    if not _writes_txn(broker, request, body.transactional_id):  # as KafkaApis
        refused = ErrorCode.transactional_id_authorization_failed
        return reply(request, EndTxnResponse(throttle_time=NO_THROTTLE, error_code=refused))
    result = broker.txn.end_transaction(
        body.transactional_id, body.producer_id, body.producer_epoch, body.committed
    )
    return answer(
        request,
        result,
        lambda error: EndTxnResponse(
            throttle_time=NO_THROTTLE, error_code=_fenced(request, error, 2)
        ),
    )


# --------------------------------------------------------------------- WriteTxnMarkers
def handle_write_txn_markers(broker: Broker, request: Request[WriteTxnMarkersRequest]) -> Outcome:
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

    With an authorizer, a principal without Alter or ClusterAction on the cluster gets
    CLUSTER_AUTHORIZATION_FAILED for every partition, before anything else, as in Kafka's
    `KafkaApis.handleWriteTxnMarkersRequest`. A COMMIT stays refused even with ClusterAction:
    no other broker sends samsa markers.
    """
    now = broker.clock_ms()
    markers = request.payload.markers
    # KafkaApis: ALTER on the cluster (KIP-664's admin abort), else CLUSTER_ACTION.
    allowed = authz.cluster_allowed(broker, request, Op.ALTER) or authz.cluster_allowed(
        broker, request, Op.CLUSTER_ACTION
    )
    results = [
        _client_marker(broker, ClientMarker.sent(sent), topic.name, index, now)
        if allowed
        else ErrorCode.cluster_authorization_failed
        for sent in markers
        for topic in sent.topics
        for index in topic.partition_indexes
    ]
    later = {key: result for key, result in enumerate(results) if isinstance(result, Durable)}

    def describe(done: dict[int, ErrorCode]) -> WriteTxnMarkersResponse:
        errors = iter(
            done[key] if isinstance(result, Durable) else result
            for key, result in enumerate(results)
        )
        return WriteTxnMarkersResponse(
            markers=tuple(
                WritableTxnMarkerResult(
                    producer_id=sent.producer_id,
                    topics=tuple(
                        WritableTxnMarkerTopicResult(
                            name=topic.name,
                            partitions=tuple(
                                WritableTxnMarkerPartitionResult(
                                    partition_index=index, error_code=next(errors)
                                )
                                for index in topic.partition_indexes
                            ),
                        )
                        for topic in sent.topics
                    ),
                )
                for sent in markers
            )
        )

    done: dict[int, ErrorCode] | Durable[dict[int, ErrorCode]] = gather(later) if later else {}
    return answer(request, done, describe)


@dataclass(frozen=True, slots=True)
class ClientMarker:
    """One marker of a WriteTxnMarkers request, as typed values."""

    producer_id: int
    producer_epoch: int
    commit: bool
    coordinator_epoch: int

    @staticmethod
    def sent(marker: WritableTxnMarker) -> ClientMarker:
        return ClientMarker(
            marker.producer_id,
            marker.producer_epoch,
            marker.transaction_result,
            marker.coordinator_epoch,
        )


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
def handle_describe_producers(
    broker: Broker, request: Request[DescribeProducersRequest]
) -> Outcome:
    asked = request.payload.topics
    # KafkaApis.handleDescribeProducersRequest: READ on each topic.
    readable = authz.allowed_names(broker, request, Op.READ, Kind.TOPIC, (t.name for t in asked))
    topics = tuple(
        TopicResponse(
            name=topic.name,
            partitions=tuple(
                _producers(broker.topics.partition(topic.name, index), index)
                if topic.name in readable
                else _no_producers(index, ErrorCode.topic_authorization_failed)
                for index in topic.partition_indexes
            ),
        )
        for topic in asked
    )
    return reply(request, DescribeProducersResponse(throttle_time=NO_THROTTLE, topics=topics))


def _no_producers(index: i32, error: ErrorCode) -> PartitionResponse:
    return PartitionResponse(
        partition_index=index, error_code=error, error_message=None, active_producers=()
    )


def _producers(partition_log: PartitionLog | None, index: i32) -> PartitionResponse:
    if partition_log is None:
        return _no_producers(index, ErrorCode.unknown_topic_or_partition)
    if partition_log.offline is not None:
        return _no_producers(index, ErrorCode.kafka_storage_error)
    return PartitionResponse(
        partition_index=index,
        error_code=ErrorCode.none,
        error_message=None,
        active_producers=tuple(_producer_state(e) for e in partition_log.producers.describe_all()),
    )


def _producer_state(producer: ProducerDescription) -> ProducerState:
    return ProducerState(
        producer_id=ProducerId(producer.producer_id),
        producer_epoch=i32(producer.producer_epoch),
        last_sequence=i32(producer.last_sequence),
        last_timestamp=i64(producer.last_timestamp),
        coordinator_epoch=i32(producer.coordinator_epoch),
        current_txn_start_offset=i64(producer.current_txn_start_offset),
    )


def _undescribed(txn_id: TransactionalId, error: ErrorCode, producer: int) -> DescribedTransaction:
    """A transactional id answered with an error; `producer` fills its producer id and epoch."""
    return DescribedTransaction(
        error_code=error,
        transactional_id=txn_id,
        transaction_state="",
        transaction_timeout=_timeout(0),
        transaction_start_time=timestamp(0),
        producer_id=ProducerId(producer),
        producer_epoch=i16(producer),
        topics=(),
    )


def handle_describe_transactions(
    broker: Broker, request: Request[DescribeTransactionsRequest]
) -> Outcome:
    states = []
    for txn_id in request.payload.transactional_ids:
        meta = broker.txn.txns.get(txn_id)
        # KafkaApis.handleDescribeTransactionsRequest: DESCRIBE on the transactional id, and
        # only the topics the client may describe.
        if not authz.allowed(broker, request, Op.DESCRIBE, Kind.TRANSACTIONAL_ID, txn_id):
            states.append(_undescribed(txn_id, ErrorCode.transactional_id_authorization_failed, 0))
            continue
        if meta is None:
            states.append(_undescribed(txn_id, ErrorCode.transactional_id_not_found, -1))
            continue
        by_topic: dict[str, list[i32]] = {}
        for topic, index in sorted(meta.partitions):
            if authz.allowed(broker, request, Op.DESCRIBE, Kind.TOPIC, topic):
                by_topic.setdefault(topic, []).append(i32(index))
        states.append(
            DescribedTransaction(
                error_code=ErrorCode.none,
                transactional_id=txn_id,
                transaction_state=meta.state.value,
                transaction_timeout=_timeout(meta.timeout_ms),
                transaction_start_time=timestamp(max(meta.start_ms, 0)),
                producer_id=ProducerId(meta.producer_id),
                producer_epoch=i16(meta.producer_epoch),
                topics=tuple(
                    TopicData(topic=TopicName(t), partitions=tuple(ps))
                    for t, ps in by_topic.items()
                ),
            )
        )
    return reply(
        request,
        DescribeTransactionsResponse(throttle_time=NO_THROTTLE, transaction_states=tuple(states)),
    )


def _timeout(ms: int) -> i32Timedelta:
    return i32Timedelta.parse(datetime.timedelta(milliseconds=ms))


def handle_list_transactions(broker: Broker, request: Request[ListTransactionsRequest]) -> Outcome:
    body = request.payload
    known = {state.value for state in TxnState}
    state_filters = set(body.state_filters)
    pid_filters = set(body.producer_id_filters)
    duration_ms = body.duration_filter
    now = broker.clock_ms()
    found = tuple(
        ListedTransaction(
            transactional_id=TransactionalId(meta.transactional_id),
            producer_id=ProducerId(meta.producer_id),
            transaction_state=meta.state.value,
        )
        for meta in broker.txn.txns.values()
        # KafkaApis.handleListTransactionsRequest: only those the client may describe.
        if authz.allowed(broker, request, Op.DESCRIBE, Kind.TRANSACTIONAL_ID, meta.transactional_id)
        and (not state_filters or meta.state.value in state_filters)
        and (not pid_filters or meta.producer_id in pid_filters)
        and (duration_ms < 0 or (meta.start_ms >= 0 and now - meta.start_ms >= duration_ms))
    )
    return reply(
        request,
        ListTransactionsResponse(
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.none,
            unknown_state_filters=tuple(sorted(state_filters - known)),
            transaction_states=found,
        ),
    )
