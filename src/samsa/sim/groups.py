"""Consumer groups and transactional offset commits in the simulation (`samsa sim --groups`).

`OffsetCommitter` is the offset side of a consume-transform-produce client (KIP-447): a member
of `GROUP` (JoinGroup with MEMBER_ID_REQUIRED, SyncGroup, Heartbeat) that commits its position
inside transactions: AddOffsetsToTxn, TxnOffsetCommit under its member id and generation, then
EndTxn, commit or abort. Each transaction commits a new offset for the committer's own
partition: the transaction's number, so the offset names the transaction that wrote it. Its
session is the shortest the broker allows, so ticks expire members and zombies commit.

`check_offsets` is invariant 7 (offsets committed inside a transaction become visible exactly
when its COMMIT marker does), read through the broker's own OffsetFetch: a visible offset never
belongs to an aborted transaction, nor to one whose EndTxn was not sent yet, and never goes back;
after quiescence each committer's offset is its last committed transaction's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kio.schema.add_offsets_to_txn.v3.request import AddOffsetsToTxnRequest
from kio.schema.end_txn.v3.request import EndTxnRequest
from kio.schema.errors import ErrorCode
from kio.schema.heartbeat.v3.request import HeartbeatRequest
from kio.schema.join_group.v5.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.offset_fetch.v7.request import OffsetFetchRequest
from kio.schema.sync_group.v3.request import SyncGroupRequest, SyncGroupRequestAssignment
from kio.schema.txn_offset_commit.v3.request import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestPartition,
    TxnOffsetCommitRequestTopic,
)
from kio.schema.types import GroupId, ProducerId, TopicName, TransactionalId
from kio.static.primitive import i16, i32, i64

from samsa.protocol import codec
from samsa.protocol.apis import ApiKey
from samsa.sim.clients import (
    RETRIABLE,
    TXN_TIMEOUT_MS,
    Anomaly,
    Call,
    init_producer_id_call,
    ms,
)

if TYPE_CHECKING:
    from samsa.broker.outcomes import Outcome
    from samsa.sim.check import Checker

GROUP = GroupId("sim-group")
SESSION_TIMEOUT_MS = 6_000  # group.min.session.timeout.ms: ticks do expire members
COMMIT_ODDS = 0.67
REBALANCE_TIMEOUT_MS = 3_000
PAUSE_ODDS = 0.3
OFFSET_FETCH_VERSION = 7
FENCED = (
    ErrorCode.producer_fenced,
    ErrorCode.invalid_producer_epoch,
    ErrorCode.invalid_txn_state,
    ErrorCode.invalid_producer_id_mapping,
)
# A TxnOffsetCommit refused for the member (KIP-447): abort, then rejoin.
NOT_A_MEMBER = (
    ErrorCode.unknown_member_id,
    ErrorCode.illegal_generation,
    ErrorCode.fenced_instance_id,
    ErrorCode.rebalance_in_progress,
)
RETRY = (*RETRIABLE, ErrorCode.concurrent_transactions, ErrorCode.coordinator_load_in_progress)


@dataclass
class OffsetTxn:
    number: int  # also the offset it commits
    commit: bool
    end_sent: bool = False
    decision: str | None = None  # "commit" / "abort" once the client knows


@dataclass
class OffsetCommitter:
    name: str
    rng: random.Random
    partition: tuple[str, int]  # the offset it commits, in GROUP
    producer_id: int = -1
    epoch: int = -1
    member_id: str = ""
    generation: int = -1
    members: list[str] = field(default_factory=list)  # the leader's view of the last join
    stage: str = "init"
    rejoin: bool = False  # after the open transaction ends
    beat_due: bool = True  # a heartbeat before the next transaction
    # What the run covered: generations joined, and commits refused as from a zombie.
    generations_joined: int = 0
    zombie_commits: int = 0
    stopping: bool = False
    txn: OffsetTxn | None = None
    txns: list[OffsetTxn] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)

    # ----------------------------------------------------------------- requests
    def next_call(self, now_ms: int) -> Call | None:
        if self.stage == "idle":
            if self.beat_due:  # as a consumer's poll loop: a rebalance is noticed here
                return self._heartbeat()
            # Sometimes the next heartbeat is late (a long pause in processing): meanwhile the
            # member may be expired, or the group rebalanced without it, and it is a zombie.
            self.beat_due = self.rng.random() >= PAUSE_ODDS
            self.txn = OffsetTxn(len(self.txns), self.rng.random() < COMMIT_ODDS)
            self.txns.append(self.txn)
            self.stage = "add"
        build_call = {
            "init": self._init,
            "join": self._join,
            "sync": self._sync,
            "add": self._add_offsets,
            "offsets": self._txn_offset_commit,
            "end": self._end,
        }.get(self.stage)
        return build_call() if build_call is not None else None

    def _init(self) -> Call:
        return init_producer_id_call(self.name, TXN_TIMEOUT_MS)

    def _join(self) -> Call:
        return Call(
            JoinGroupRequest(
                group_id=GROUP,
                session_timeout=ms(SESSION_TIMEOUT_MS),
                rebalance_timeout=ms(REBALANCE_TIMEOUT_MS),
                member_id=self.member_id,
                group_instance_id=None,
                protocol_type="consumer",
                protocols=(JoinGroupRequestProtocol(name="range", metadata=b"\x00\x00"),),
            )
        )

    def _sync(self) -> Call:
        assignments = tuple(
            SyncGroupRequestAssignment(member_id=member, assignment=b"") for member in self.members
        )
        return Call(
            SyncGroupRequest(
                group_id=GROUP,
                generation_id=i32(self.generation),
                member_id=self.member_id,
                group_instance_id=None,
                assignments=assignments,
            )
        )

    def _heartbeat(self) -> Call:
        return Call(
            HeartbeatRequest(
                group_id=GROUP,
                generation_id=i32(self.generation),
                member_id=self.member_id,
                group_instance_id=None,
            )
        )

    def _add_offsets(self) -> Call:
        return Call(
            AddOffsetsToTxnRequest(
                transactional_id=TransactionalId(self.name),
                producer_id=ProducerId(self.producer_id),
                producer_epoch=i16(self.epoch),
                group_id=GROUP,
            )
        )

    def _txn_offset_commit(self) -> Call:
        assert self.txn is not None
        topic, index = self.partition
        committed = TxnOffsetCommitRequestPartition(
            partition_index=i32(index),
            committed_offset=i64(self.txn.number),
            committed_leader_epoch=i32(-1),
            committed_metadata="",
        )
        return Call(
            TxnOffsetCommitRequest(
                transactional_id=TransactionalId(self.name),
                group_id=GROUP,
                producer_id=ProducerId(self.producer_id),
                producer_epoch=i16(self.epoch),
                generation_id=i32(self.generation),
                member_id=self.member_id,
                group_instance_id=None,
                topics=(
                    TxnOffsetCommitRequestTopic(name=TopicName(topic), partitions=(committed,)),
                ),
            )
        )

    def _end(self) -> Call:
        assert self.txn is not None
        self.txn.end_sent = True
        return Call(
            EndTxnRequest(
                transactional_id=TransactionalId(self.name),
                producer_id=ProducerId(self.producer_id),
                producer_epoch=i16(self.epoch),
                committed=self.txn.commit,
            )
        )

    # ----------------------------------------------------------------- responses
    def on_response(self, call: Call, response: Any) -> None:
        handle = {
            ApiKey.INIT_PRODUCER_ID: self._on_init,
            ApiKey.JOIN_GROUP: self._on_join,
            ApiKey.SYNC_GROUP: self._on_sync,
            ApiKey.HEARTBEAT: self._on_heartbeat,
        }.get(ApiKey(call.api_key))
        if handle is not None:
            handle(response)
            return
        if call.api_key == ApiKey.TXN_OFFSET_COMMIT:
            error = response.topics[0].partitions[0].error_code
        else:
            error = response.error_code
        self._on_transactional(call, error)

    def _on_init(self, response: Any) -> None:
        if response.error_code in RETRY:
            return
        if response.error_code != ErrorCode.none:
            self._unexpected("InitProducerId", response.error_code)
            return
        self.producer_id, self.epoch = int(response.producer_id), int(response.producer_epoch)
        self._next("join" if self.generation < 0 else "idle")

    def _on_join(self, response: Any) -> None:
        error = response.error_code
        if error in (ErrorCode.member_id_required, ErrorCode.unknown_member_id):
            self.member_id = response.member_id if error == ErrorCode.member_id_required else ""
            return
        if error != ErrorCode.none:
            return  # rejoin (a rebalance in progress, a retriable error)
        self.member_id, self.generation = response.member_id, int(response.generation_id)
        self.generations_joined += 1
        self.members = [m.member_id for m in response.members]  # empty unless leader
        self._next("sync")

    def _on_sync(self, response: Any) -> None:
        if response.error_code == ErrorCode.none:
            self._next("idle")
        elif response.error_code in RETRY:
            return
        else:
            self._lost_membership(response.error_code)

    def _on_heartbeat(self, response: Any) -> None:
        if response.error_code == ErrorCode.none:
            self.beat_due = False
        elif response.error_code not in RETRY:
            self._lost_membership(response.error_code)

    def _lost_membership(self, error: ErrorCode) -> None:
        if error == ErrorCode.unknown_member_id:
            self.member_id = ""
        self.generation = -1
        self._next("join")

    def _on_transactional(self, call: Call, error: ErrorCode) -> None:
        if error in RETRY:
            return  # the same request again
        if error in FENCED:
            self._fenced()
            return
        txn = self.txn
        if txn is None:
            return
        if call.api_key == ApiKey.TXN_OFFSET_COMMIT and error in NOT_A_MEMBER:
            self.zombie_commits += 1
            txn.commit, self.rejoin, self.stage = False, True, "end"  # a zombie: abort, rejoin
            if error == ErrorCode.unknown_member_id:
                self.member_id = ""
            return
        if error != ErrorCode.none:
            self._unexpected(f"api {call.api_key}", error)
            return
        if call.api_key == ApiKey.ADD_OFFSETS_TO_TXN:
            self.stage = "offsets"
        elif call.api_key == ApiKey.TXN_OFFSET_COMMIT:
            self.stage = "end"
        else:
            txn.decision = "commit" if txn.commit else "abort"
            self.txn = None
            self._next("join" if self.rejoin else "idle")
            self.rejoin = False

    def _fenced(self) -> None:
        """The coordinator aborted the transaction (a timeout), unless its EndTxn(commit) may
        already have been written: then only the log can tell."""
        txn = self.txn
        if txn is not None and txn.decision is None and not (txn.end_sent and txn.commit):
            txn.decision = "abort"
        self.txn, self.producer_id, self.epoch = None, -1, -1
        self._next("init")

    def _unexpected(self, what: str, error: ErrorCode) -> None:
        self.anomalies.append(Anomaly("committer-error", f"{self.name}: {what}: {error!r}"))
        self._fenced()

    def _next(self, stage: str) -> None:
        """Move on, unless quiescence stopped the client between transactions."""
        self.stage = "done" if self.stopping and self.txn is None else stage

    def on_lost(self) -> None:
        """Response lost: the same request is sent again."""

    def stop(self) -> None:
        """Quiescence: finish the open transaction, start no other."""
        self.stopping = True
        if self.txn is None:
            self.stage = "done"

    @property
    def busy(self) -> bool:
        return self.stage != "done"


# --------------------------------------------------------------------- invariant 7
class OffsetsCheck:
    """Invariant 7 for every `OffsetCommitter` of the world, through OffsetFetch."""

    def __init__(self, checker: Checker) -> None:
        self.checker = checker
        self.seen: dict[tuple[str, int], int] = {}

    def committers(self) -> list[OffsetCommitter]:
        return [c for c in self.checker.world.clients if isinstance(c, OffsetCommitter)]

    def fetch(self) -> dict[tuple[str, int], int]:
        """The committed offsets of GROUP, read as a consumer reads them."""
        request = OffsetFetchRequest(group_id=GROUP, topics=None, require_stable=False)
        frame = codec.encode_request(1, "checker", request)
        outcome: Outcome = self.checker.world.broker.handle_frame(frame[4:])
        payload = getattr(outcome, "payload", None)
        if payload is None:
            raise RuntimeError(f"OffsetFetch answered {outcome!r}")
        encoded = codec.encode_response(1, payload)
        response = codec.decode_response(ApiKey.OFFSET_FETCH, OFFSET_FETCH_VERSION, encoded[4:])[1]
        return {
            (str(topic.name), int(p.partition_index)): int(p.committed_offset)
            for topic in response.topics
            for p in topic.partitions
        }

    def observe(self) -> None:
        """Nothing aborted or not yet ended is visible; nothing visible goes back."""
        committers = self.committers()
        if not committers:
            return
        found = self.fetch()
        for committer in committers:
            offset = found.get(committer.partition, -1)
            if offset < 0:
                continue
            if offset < self.seen.get(committer.partition, -1):
                self.checker.fail("offset-went-back", f"{committer.name}: {offset}")
            self.seen[committer.partition] = offset
            if offset >= len(committer.txns):
                self.checker.fail("unknown-offset", f"{committer.name}: {offset}")
                continue
            txn = committer.txns[offset]
            if txn.decision == "abort" or (txn.end_sent and not txn.commit):
                self.checker.fail("aborted-offset-visible", f"{committer.name} txn {offset}")
            elif not txn.end_sent:
                self.checker.fail("offset-visible-before-commit", f"{committer.name} {offset}")

    def final(self) -> None:
        """After quiescence each committer's offset is its last committed transaction's."""
        self.seen.clear()  # a restart may precede: the final read starts afresh
        self.observe()
        found = self.fetch()
        for committer in self.committers():
            committed = [t.number for t in committer.txns if t.decision == "commit"]
            unknown = [
                t.number for t in committer.txns if t.decision is None and t.end_sent and t.commit
            ]
            offset = found.get(committer.partition, -1)
            last = max(committed, default=-1)
            if offset != last and offset not in [n for n in unknown if n > last]:
                self.checker.fail(
                    "committed-offset-not-visible",
                    f"{committer.name}: visible {offset}, last committed {last}",
                )
