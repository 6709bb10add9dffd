"""Fuzzing samsa's transaction and group coordinators with flows of requests that carry the
ids the broker handed out (`fuzz_flows`), against a real `samsa serve`.

Every request of a flow is checked as `fuzz_target` says (it is answered, decodes, carries only
Kafka's error codes, the connection stays open) and after each flow the broker still serves
another client with its control data intact, within its memory and descriptor bounds. Beyond
that, transactions must stay atomic whatever order the requests come in:
- a record is visible to read_committed readers only if EndTxn(commit) of its transaction was
  answered without error; every other transactional record, aborted or left open, is not;
- after a flow, InitProducerId for each of its transactional ids ends whatever it left open
  (Kafka aborts an ongoing transaction there), and then no transaction holds the last stable
  offset of any partition back.
The last test reads the whole topic with a read_committed confluent-kafka consumer and compares
what it sees with what the flows were told was committed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from kio.schema.add_offsets_to_txn.v3.request import AddOffsetsToTxnRequest
from kio.schema.add_partitions_to_txn.v3.request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
)
from kio.schema.delete_groups.v2.request import DeleteGroupsRequest
from kio.schema.describe_groups.v5.request import DescribeGroupsRequest
from kio.schema.describe_transactions.v0.request import DescribeTransactionsRequest
from kio.schema.end_txn.v4.request import EndTxnRequest
from kio.schema.errors import ErrorCode
from kio.schema.heartbeat.v4.request import HeartbeatRequest
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.join_group.v9.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.leave_group.v2.request import LeaveGroupRequest as LeaveGroupRequestV2
from kio.schema.leave_group.v5.request import LeaveGroupRequest, MemberIdentity
from kio.schema.offset_commit.v8.request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kio.schema.offset_fetch.v7.request import OffsetFetchRequest, OffsetFetchRequestTopic
from kio.schema.sync_group.v5.request import SyncGroupRequest, SyncGroupRequestAssignment
from kio.schema.txn_offset_commit.v3.request import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestPartition,
    TxnOffsetCommitRequestTopic,
)
from kio.schema.types import GroupId, ProducerId, TopicName, TransactionalId
from kio.schema.write_txn_markers.v1.request import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
)
from kio.static.primitive import i16, i32, i32Timedelta, i64

from samsa.protocol.batch import TRANSACTIONAL_FLAG
from samsa.protocol.batch_writer import record_batch

from .fuzz_flows import FLOW_PARTITIONS, Flow, Op, Skew, Step, flows
from .fuzz_requests import TOPIC_NAMES, at_version
from .fuzz_target import (
    RESPONSE_TIMEOUT_S,
    SOAK_TIMEOUT_S,
    Target,
    check_after,
    consume_all,
    crash_and_restart,
    exchange,
    fetch_batch,
    log_ends,
    running_target,
    runs,
)
from .wire import Conn, produce_request

FLOWS = "samsa-fuzz-flows"  # never named by the request fuzzing
assert FLOWS not in TOPIC_NAMES
TRANSACTION_TIMEOUT_MS = 60_000
SESSION_TIMEOUT_MS = 6_000  # group.min.session.timeout.ms
REBALANCE_TIMEOUT_MS = 300  # how long a join waits for members that do not rejoin
INIT_TRIES = 100  # InitProducerId retried while the coordinator completes an abort
INIT_PAUSE_S = 0.02
LAST_STABLE_WAIT_S = 5.0
# The steps whose answer changes what the flow knows (each has a top-level error code).
LEARNS_FROM = (Op.INIT_PRODUCER_ID, Op.END_TXN, Op.LEAVE)
LEAVE_GROUP_MEMBERS_VERSION = 3  # KIP-345: LeaveGroup v3+ names members in an array
FLOWS_RUN, FLOWS_SOAK = runs(300)
RETRIABLE_INIT = (
    ErrorCode.concurrent_transactions,
    ErrorCode.coordinator_load_in_progress,
    ErrorCode.not_coordinator,
)


@dataclasses.dataclass(repr=False)
class Ledger:
    """What the flows were told, across all flows of the module."""

    committed: set[bytes] = dataclasses.field(default_factory=set)
    uncommitted: set[bytes] = dataclasses.field(default_factory=set)
    flows: int = 0
    origins: dict[bytes, str] = dataclasses.field(default_factory=dict)  # for failure messages

    def __repr__(self) -> str:  # what Hypothesis prints with a failing case
        return f"Ledger(after {self.flows} flows)"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with running_target(tmp_path_factory, {FLOWS: FLOW_PARTITIONS}) as running:
        yield running


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger()


@dataclasses.dataclass
class Member:
    member_id: str
    generation: int
    leader: bool


class FlowRun:
    """One flow's steps against the broker, with the ids it was handed so far."""

    def __init__(self, target: Target, ledger: Ledger, flow: Flow) -> None:
        self.target = target
        self.ledger = ledger
        self.flow = flow
        self.name = f"fz-flow-{ledger.flows}"
        self.producers: dict[int, tuple[int, int]] = {}  # txn: (producer id, epoch)
        self.sequences: dict[tuple[int, int], int] = {}  # (txn, partition): next sequence
        self.members: dict[int, Member] = {}
        self.pending: dict[int, list[bytes]] = {}  # txn: records of its open transaction
        self.txns_used: set[int] = set()

    def txn_id(self, txn: int) -> str:
        return f"fz-flow-txn-{txn}" if self.flow.shared else f"{self.name}-txn-{txn}"

    def group_id(self, group: int) -> str:
        return f"fz-flow-group-{group}" if self.flow.shared else f"{self.name}-group-{group}"

    def producer(self, step: Step) -> tuple[int, int]:
        producer_id, epoch = self.producers.get(step.txn, (-1, -1))
        if step.skew is Skew.EPOCH_BEHIND:
            epoch -= 1
        elif step.skew is Skew.EPOCH_AHEAD:
            epoch = min(epoch + 1, 2**15 - 1)
        elif step.skew is Skew.OTHER_PRODUCER:
            producer_id += 1
        return producer_id, epoch

    def member(self, step: Step) -> Member:
        member = self.members.get(step.group, Member("", -1, False))
        if step.skew is Skew.GENERATION_BEHIND:
            return dataclasses.replace(member, generation=member.generation - 1)
        if step.skew is Skew.GENERATION_AHEAD:
            return dataclasses.replace(member, generation=member.generation + 1)
        if step.skew is Skew.UNKNOWN_MEMBER:
            return dataclasses.replace(member, member_id="fz-no-such-member")
        if step.skew is Skew.NO_MEMBER:
            return dataclasses.replace(member, member_id="")
        return member

    def send(self, step: Step, request: Any) -> Any:
        """`request` (a kio request of the API's highest served version) at the step's."""
        return exchange(self.target, at_version(request, step.version))

    # ------------------------------------------------------------------------- steps
    def run(self, index: int, step: Step) -> None:
        op = step.op
        if op in (Op.INIT_PRODUCER_ID, Op.ADD_PARTITIONS, Op.PRODUCE, Op.END_TXN):
            self.txns_used.add(step.txn)
        if op is Op.JOIN:
            self.join(step)
        elif op in (Op.PRODUCE, Op.PRODUCE_PLAIN):
            self.produce(index, step)
        else:
            response = self.send(step, self.request(index, step))
            if op in LEARNS_FROM and response is not None and response.error_code == 0:
                self.answered(step, response)

    def answered(self, step: Step, response: Any) -> None:
        """What a step's successful response changes in what the flow knows."""
        if step.op is Op.INIT_PRODUCER_ID:
            self.producers[step.txn] = (int(response.producer_id), int(response.producer_epoch))
            self.pending.pop(step.txn, None)  # an open transaction was aborted
        elif step.op is Op.END_TXN:
            ended = self.pending.pop(step.txn, [])
            if step.commit:
                self.ledger.uncommitted.difference_update(ended)
                self.ledger.committed.update(ended)
        elif step.op is Op.LEAVE:
            self.members.pop(step.group, None)

    def request(self, index: int, step: Step) -> Any:
        """The step's request, at the API's highest served version."""
        txn_id, group_id = (
            TransactionalId(self.txn_id(step.txn)),
            GroupId(self.group_id(step.group)),
        )
        producer_id, epoch = self.producer(step)
        member = self.member(step)
        op = step.op
        if op is Op.INIT_PRODUCER_ID:
            return InitProducerIdRequest(
                transactional_id=txn_id,
                transaction_timeout=i32Timedelta.parse(
                    timedelta(milliseconds=TRANSACTION_TIMEOUT_MS)
                ),
                producer_id=ProducerId(producer_id),
                producer_epoch=i16(epoch),
            )
        if op is Op.ADD_PARTITIONS:
            return AddPartitionsToTxnRequest(
                v3_and_below_transactional_id=txn_id,
                v3_and_below_producer_id=ProducerId(producer_id),
                v3_and_below_producer_epoch=i16(epoch),
                v3_and_below_topics=(
                    AddPartitionsToTxnTopic(
                        name=TopicName(FLOWS), partitions=(i32(step.partition),)
                    ),
                ),
            )
        if op is Op.ADD_OFFSETS:
            return AddOffsetsToTxnRequest(
                transactional_id=txn_id,
                producer_id=ProducerId(producer_id),
                producer_epoch=i16(epoch),
                group_id=group_id,
            )
        if op is Op.TXN_OFFSET_COMMIT:
            partition = TxnOffsetCommitRequestPartition(
                partition_index=i32(step.partition),
                committed_offset=i64(index),
                committed_leader_epoch=i32(-1),
                committed_metadata="",
            )
            return TxnOffsetCommitRequest(
                transactional_id=txn_id,
                group_id=group_id,
                producer_id=ProducerId(producer_id),
                producer_epoch=i16(epoch),
                generation_id=i32(member.generation),
                member_id=member.member_id,
                group_instance_id=None,
                topics=(
                    TxnOffsetCommitRequestTopic(name=TopicName(FLOWS), partitions=(partition,)),
                ),
            )
        if op is Op.END_TXN:
            return EndTxnRequest(
                transactional_id=txn_id,
                producer_id=ProducerId(producer_id),
                producer_epoch=i16(epoch),
                committed=step.commit,
            )
        if op is Op.ABORT_MARKER:
            marker = WritableTxnMarker(
                producer_id=ProducerId(producer_id),
                producer_epoch=i16(epoch),
                transaction_result=False,
                topics=(
                    WritableTxnMarkerTopic(
                        name=TopicName(FLOWS), partition_indexes=(i32(step.partition),)
                    ),
                ),
                coordinator_epoch=i32(0),
            )
            return WriteTxnMarkersRequest(markers=(marker,))
        if op is Op.SYNC:
            assignment = SyncGroupRequestAssignment(member_id=member.member_id, assignment=b"")
            return SyncGroupRequest(
                group_id=group_id,
                generation_id=i32(member.generation),
                member_id=member.member_id,
                group_instance_id=None,
                protocol_type="consumer",
                protocol_name="range",
                assignments=(assignment,) if member.leader else (),
            )
        if op is Op.HEARTBEAT:
            return HeartbeatRequest(
                group_id=group_id,
                generation_id=i32(member.generation),
                member_id=member.member_id,
                group_instance_id=None,
            )
        if op is Op.OFFSET_COMMIT:
            committed = OffsetCommitRequestPartition(
                partition_index=i32(step.partition),
                committed_offset=i64(index),
                committed_leader_epoch=i32(-1),
                committed_metadata="",
            )
            return OffsetCommitRequest(
                group_id=group_id,
                generation_id_or_member_epoch=i32(member.generation),
                member_id=member.member_id,
                group_instance_id=None,
                topics=(OffsetCommitRequestTopic(name=TopicName(FLOWS), partitions=(committed,)),),
            )
        if op is Op.OFFSET_FETCH:
            wanted = OffsetFetchRequestTopic(
                name=TopicName(FLOWS), partition_indexes=(i32(step.partition),)
            )
            return OffsetFetchRequest(group_id=group_id, topics=(wanted,), require_stable=True)
        if op is Op.LEAVE:
            if step.version < LEAVE_GROUP_MEMBERS_VERSION:  # one member id, no array
                return LeaveGroupRequestV2(group_id=group_id, member_id=member.member_id)
            identity = MemberIdentity(member_id=member.member_id, group_instance_id=None)
            return LeaveGroupRequest(group_id=group_id, members=(identity,))
        if op is Op.DESCRIBE_GROUP:
            return DescribeGroupsRequest(groups=(group_id,), include_authorized_operations=False)
        if op is Op.DELETE_GROUP:
            return DeleteGroupsRequest(groups_names=(group_id,))
        if op is Op.DESCRIBE_TXN:
            return DescribeTransactionsRequest(transactional_ids=(txn_id,))
        raise ValueError(f"no request for {op}")

    def join(self, step: Step) -> None:
        member = self.member(step)
        request = JoinGroupRequest(
            group_id=GroupId(self.group_id(step.group)),
            session_timeout=i32Timedelta.parse(timedelta(milliseconds=SESSION_TIMEOUT_MS)),
            rebalance_timeout=i32Timedelta.parse(timedelta(milliseconds=REBALANCE_TIMEOUT_MS)),
            member_id=member.member_id,
            group_instance_id=None,
            protocol_type="consumer",
            protocols=(JoinGroupRequestProtocol(name="range", metadata=b""),),
            reason=None,
        )
        response = self.send(step, request)
        if response is not None and response.error_code == ErrorCode.member_id_required:
            # KIP-394 (v4+): join again with the member id the broker handed out.
            response = self.send(step, replace(request, member_id=response.member_id))
        if response is not None and response.error_code == ErrorCode.none:
            member_id = str(response.member_id)
            self.members[step.group] = Member(
                member_id, int(response.generation_id), response.leader == member_id
            )

    def produce(self, index: int, step: Step) -> None:
        transactional = step.op is Op.PRODUCE
        producer_id, epoch = self.producer(step)
        value = f"{self.name}-{index}".encode()
        sequence = self.sequences.get((step.txn, step.partition), 0)
        if step.skew is Skew.SEQUENCE_GAP:
            sequence += 1
        elif step.skew is Skew.SEQUENCE_REPEAT:
            sequence -= 1
        batch = record_batch(
            [value],
            timestamp_ms=int(time.time() * 1000),
            producer_id=producer_id if transactional else -1,
            producer_epoch=epoch if transactional else -1,
            base_sequence=sequence if transactional else -1,
            attributes=TRANSACTIONAL_FLAG if transactional else 0,
        )
        request = produce_request(FLOWS, {step.partition: batch})
        if transactional:
            request = replace(request, transactional_id=TransactionalId(self.txn_id(step.txn)))
        response = self.send(step, request)
        [result] = response.responses[0].partition_responses
        if result.error_code != ErrorCode.none:
            return
        with Conn(self.target.broker.bootstrap, timeout_s=RESPONSE_TIMEOUT_S) as conn:
            stored, _ = fetch_batch(conn, FLOWS, step.partition, int(result.base_offset))
        if value not in stored:
            return  # a duplicate: answered with the offset of the batch it repeats
        self.ledger.origins[value] = f"{self.flow!r} step {index} as {producer_id}/{epoch}"
        if not transactional or producer_id < 0:
            # A transactional batch without a producer id is stored as Kafka stores it: no
            # marker can name it, so every reader takes it as committed.
            self.ledger.committed.add(value)
            return
        self.sequences[(step.txn, step.partition)] = sequence + 1
        self.pending.setdefault(step.txn, []).append(value)
        self.ledger.uncommitted.add(value)

    # ------------------------------------------------------------------------- afterwards
    def end_everything(self) -> None:
        """InitProducerId for each transactional id the flow used ends its open transaction;
        then nothing holds the last stable offset back."""
        for txn in sorted(self.txns_used):
            request = InitProducerIdRequest(
                transactional_id=TransactionalId(self.txn_id(txn)),
                transaction_timeout=i32Timedelta.parse(
                    timedelta(milliseconds=TRANSACTION_TIMEOUT_MS)
                ),
                producer_id=ProducerId(-1),
                producer_epoch=i16(-1),
            )
            codes = []
            for _ in range(INIT_TRIES):
                response = exchange(self.target, request)
                codes.append(ErrorCode(response.error_code))
                if response.error_code not in RETRIABLE_INIT:
                    break
                time.sleep(INIT_PAUSE_S)
            assert codes[-1] == ErrorCode.none, f"{self.txn_id(txn)}: {codes}"
        deadline = time.monotonic() + LAST_STABLE_WAIT_S
        with Conn(self.target.broker.bootstrap, timeout_s=RESPONSE_TIMEOUT_S) as conn:
            while True:
                ends = log_ends(conn, FLOWS, FLOW_PARTITIONS)
                stable = log_ends(conn, FLOWS, FLOW_PARTITIONS, committed=True)
                if stable == ends or time.monotonic() > deadline:
                    break
                time.sleep(INIT_PAUSE_S)
        assert stable == ends, f"last stable offsets {stable} held back from {ends}"


def run_flow(target: Target, ledger: Ledger, flow: Flow) -> None:
    ledger.flows += 1
    run = FlowRun(target, ledger, flow)
    try:
        for index, step in enumerate(flow.steps):
            run.run(index, step)
    except BaseException:
        # End what the failed flow left open, or every flow Hypothesis replays to shrink it
        # would fail on the last stable offset this one holds back.
        with contextlib.suppress(Exception):
            run.end_everything()
        raise
    run.end_everything()
    check_after(target)


@FLOWS_RUN
@given(flow=flows())
def test_flows(target: Target, ledger: Ledger, flow: Flow) -> None:
    run_flow(target, ledger, flow)


@pytest.mark.slow
@pytest.mark.timeout(SOAK_TIMEOUT_S)
@FLOWS_SOAK
@given(flow=flows())
def test_flows_soak(target: Target, ledger: Ledger, flow: Flow) -> None:
    run_flow(target, ledger, flow)


def test_zz_the_broker_recovers_from_kill_9_after_the_fuzzing(target: Target) -> None:
    crash_and_restart(target)
    with Conn(target.broker.bootstrap) as conn:
        ends = log_ends(conn, FLOWS, FLOW_PARTITIONS)
        assert log_ends(conn, FLOWS, FLOW_PARTITIONS, committed=True) == ends


def test_zz_read_committed_sees_exactly_the_committed_records(
    target: Target, ledger: Ledger
) -> None:
    """Runs last: a read_committed confluent-kafka consumer reads every partition to its end
    and sees every record the flows were told was committed, and none of the others."""
    assert ledger.committed and ledger.uncommitted, "the flows committed or aborted nothing"
    messages = consume_all(target, FLOWS, FLOW_PARTITIONS, committed=True)
    seen = {m.value() for m in messages}
    hidden = sorted(ledger.committed - seen)
    assert hidden == [], "committed records not visible:\n" + "\n".join(
        f"{value!r}: {ledger.origins[value]}" for value in hidden[:3]
    )
    visible = sorted(seen & ledger.uncommitted)
    assert visible == [], "uncommitted records visible:\n" + "\n".join(
        f"{value!r}: {ledger.origins[value]}" for value in visible[:3]
    )
