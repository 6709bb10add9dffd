"""Hypothesis strategies for flows: sequences of transaction and consumer-group requests that
carry the ids the broker handed out earlier in the same flow (tests/protocol/test_flow_fuzz.py).

A request fuzzed on its own cannot guess a member id or a producer epoch, so it never gets past
the coordinators' first checks. A flow can: its steps name a transactional id, a group and a
partition by index, and the test fills in the producer id and epoch InitProducerId returned,
the member id and generation JoinGroup returned, the next sequence. Each step may be `Skew`ed:
one of those ids a little off (an epoch behind or ahead, another producer, a sequence gap or
repeat, a generation behind or ahead, an unknown or empty member id), which is what a zombie
producer, a restarted consumer or a buggy client sends. Steps come in any order and at any
served version, so a flow also commits before it began, produces after it ended, syncs without
joining, and so on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hypothesis import strategies as st

from samsa.protocol.apis import SERVED, ApiKey

FLOW_PARTITIONS = 2  # a step's partition index may also be this: one past the last
TXNS_PER_FLOW = 2
GROUPS_PER_FLOW = 2


class Op(enum.Enum):
    INIT_PRODUCER_ID = ApiKey.INIT_PRODUCER_ID
    ADD_PARTITIONS = ApiKey.ADD_PARTITIONS_TO_TXN
    PRODUCE = ApiKey.PRODUCE  # a transactional batch
    PRODUCE_PLAIN = -ApiKey.PRODUCE  # a batch outside any transaction
    ADD_OFFSETS = ApiKey.ADD_OFFSETS_TO_TXN
    TXN_OFFSET_COMMIT = ApiKey.TXN_OFFSET_COMMIT
    END_TXN = ApiKey.END_TXN
    ABORT_MARKER = ApiKey.WRITE_TXN_MARKERS  # KIP-664: a client aborting a hanging transaction
    JOIN = ApiKey.JOIN_GROUP
    SYNC = ApiKey.SYNC_GROUP
    HEARTBEAT = ApiKey.HEARTBEAT
    OFFSET_COMMIT = ApiKey.OFFSET_COMMIT
    OFFSET_FETCH = ApiKey.OFFSET_FETCH
    LEAVE = ApiKey.LEAVE_GROUP
    DESCRIBE_GROUP = ApiKey.DESCRIBE_GROUPS
    DELETE_GROUP = ApiKey.DELETE_GROUPS
    DESCRIBE_TXN = ApiKey.DESCRIBE_TRANSACTIONS

    @property
    def api_key(self) -> ApiKey:
        return ApiKey(abs(self.value))


class Skew(enum.Enum):
    NONE = "as handed out"
    EPOCH_BEHIND = "producer epoch - 1"
    EPOCH_AHEAD = "producer epoch + 1"
    OTHER_PRODUCER = "producer id + 1"
    SEQUENCE_GAP = "sequence + 1"
    SEQUENCE_REPEAT = "sequence - 1"
    GENERATION_BEHIND = "generation - 1"
    GENERATION_AHEAD = "generation + 1"
    UNKNOWN_MEMBER = "a member id never handed out"
    NO_MEMBER = "an empty member id"


@dataclass(frozen=True, slots=True)
class Step:
    op: Op
    version: int
    txn: int  # which of the flow's transactional ids
    group: int  # which of the flow's groups
    partition: int
    skew: Skew = Skew.NONE
    commit: bool = True  # EndTxn: commit or abort


@dataclass(frozen=True, slots=True)
class Flow:
    steps: tuple[Step, ...]
    shared: bool  # ids shared with other flows (stale state) rather than this flow's own


# What a transactional producer and a consumer do, in order; flows interleave and perturb them.
TXN_TEMPLATE = (
    Op.INIT_PRODUCER_ID,
    Op.ADD_PARTITIONS,
    Op.PRODUCE,
    Op.PRODUCE,
    Op.ADD_OFFSETS,
    Op.TXN_OFFSET_COMMIT,
    Op.END_TXN,
)
GROUP_TEMPLATE = (
    Op.JOIN,
    Op.SYNC,
    Op.HEARTBEAT,
    Op.OFFSET_COMMIT,
    Op.OFFSET_FETCH,
    Op.LEAVE,
)
Planned = tuple[Op, int, int, int]  # op, txn, group, partition


def _step(draw: st.DrawFn, op: Op, txn: int, group: int, partition: int) -> Step:
    served = SERVED[op.api_key]
    if draw(st.integers(0, 5)) == 5:  # another partition, maybe one that does not exist
        partition = draw(st.integers(0, FLOW_PARTITIONS))
    skewed = draw(st.integers(0, 3)) == 3  # one step in four, shrinking to none
    return Step(
        op,
        draw(st.integers(served.min, served.max)),
        txn,
        group,
        partition,
        draw(st.sampled_from(Skew)) if skewed else Skew.NONE,
        draw(st.booleans()),
    )


def _interleave(draw: st.DrawFn, first: list[Planned], second: list[Planned]) -> list[Planned]:
    merged: list[Planned] = []
    while first and second:
        merged.append((first if draw(st.booleans()) else second).pop(0))
    return merged + first + second


@st.composite
def flows(draw: st.DrawFn) -> Flow:
    """1-3 producers' and consumers' templates, interleaved; each step then kept, dropped,
    replaced by any other op or followed by one (shrinking towards kept)."""
    plan: list[Planned] = []
    templates = st.sampled_from([TXN_TEMPLATE, GROUP_TEMPLATE])
    for template in draw(st.lists(templates, min_size=1, max_size=3)):
        txn = draw(st.integers(0, TXNS_PER_FLOW - 1))
        group = draw(st.integers(0, GROUPS_PER_FLOW - 1))
        partition = draw(st.integers(0, FLOW_PARTITIONS - 1))
        plan = _interleave(draw, plan, [(op, txn, group, partition) for op in template])
    steps: list[Step] = []
    for op, txn, group, partition in plan:
        roll = draw(st.integers(0, 11))
        if roll == 11:
            continue
        if roll == 10:
            op = draw(st.sampled_from(Op))
        steps.append(_step(draw, op, txn, group, partition))
        if roll == 9:
            steps.append(_step(draw, draw(st.sampled_from(Op)), txn, group, partition))
    return Flow(tuple(steps), shared=draw(st.booleans()))
