"""Checks a verify history for Jepsen's queue anomalies and Kafka's transactional guarantees.

Theory of operation: the final reads (a fresh consumer at each isolation level, after the run
and after every fault has healed) are the ground truth of what each partition holds. Every
acknowledgment and every poll during the run is compared against them and against what the
producers know of their transactions:

- a transaction is *committed* if a commit of it returned ok, *aborted* if an abort returned ok
  (or its producer crashed and a successor with the same transactional.id was fenced in), and
  *unknown* otherwise (its commit timed out): unknown ones must still be all or nothing;
- a value *must be visible* if its send was acknowledged outside a transaction, or its
  transaction committed.

A consumer's reads of a partition are split into stretches at each assign, seek or revoke: a
stretch must move forward (no nonmonotonic poll) without jumping over a value its isolation level
shows (no poll skip).
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from samsa.verify.history import COMMITTED, OK, UNCOMMITTED, Op

LOST_WRITE = "lost-write"
UNSEEN = "unseen"
DUPLICATE = "duplicate"
INCONSISTENT_OFFSETS = "inconsistent-offsets"
ABORTED_READ = "aborted-read"  # Jepsen's G1a
INTERMEDIATE_READ = "intermediate-read"
NON_ATOMIC_TXN = "non-atomic-txn"
LSO_READ = "read-past-lso"
NONMONOTONIC_SEND = "nonmonotonic-send"
NONMONOTONIC_POLL = "nonmonotonic-poll"
POLL_SKIP = "poll-skip"
COPY_LOST = "copy-lost"
COPY_DUPLICATE = "copy-duplicate"

CLASSES = (
    LOST_WRITE,
    UNSEEN,
    DUPLICATE,
    INCONSISTENT_OFFSETS,
    ABORTED_READ,
    INTERMEDIATE_READ,
    NON_ATOMIC_TXN,
    LSO_READ,
    NONMONOTONIC_SEND,
    NONMONOTONIC_POLL,
    POLL_SKIP,
    COPY_LOST,
    COPY_DUPLICATE,
)

DESCRIPTIONS = {
    LOST_WRITE: "an acknowledged (or committed) send is missing from the final read",
    UNSEEN: "an acknowledged send no consumer polled during the run",
    DUPLICATE: "one value at several offsets",
    INCONSISTENT_OFFSETS: "one offset holds several values",
    ABORTED_READ: "G1a: read_committed returned a value of an aborted transaction",
    INTERMEDIATE_READ: "read_committed saw part of a transaction's records in a partition",
    NON_ATOMIC_TXN: "the final read shows part of a transaction",
    LSO_READ: "read_committed returned a value before its transaction's commit was sent",
    NONMONOTONIC_SEND: "a producer's later send landed at a lower offset",
    NONMONOTONIC_POLL: "a consumer moved backwards without a seek",
    POLL_SKIP: "a consumer jumped over offsets holding values it should have read",
    COPY_LOST: "a copier's committed input offset passed a value never copied",
    COPY_DUPLICATE: "a value copied twice in committed output",
}

# A copier writes "<input value>|<copier>.<n>": the input value is everything before the bar.
COPY_SEPARATOR = "|"
EXAMPLES_MAX = 20


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str
    detail: str
    ops: tuple[int, ...] = ()


@dataclass(slots=True)
class Result:
    anomalies: dict[str, list[Anomaly]] = field(
        default_factory=lambda: {kind: [] for kind in CLASSES}
    )

    def add(self, kind: str, detail: str, ops: Iterable[int] = ()) -> None:
        self.anomalies[kind].append(Anomaly(kind, detail, tuple(sorted(set(ops)))))

    def counts(self) -> dict[str, int]:
        return {kind: len(found) for kind, found in self.anomalies.items()}

    @property
    def valid(self) -> bool:
        return not any(self.anomalies.values())


@dataclass(slots=True)
class _Txn:
    name: str
    sends: list[Op] = field(default_factory=list)
    fate: str = "unknown"  # committed | aborted | unknown
    commit_start: float | None = None
    end_ops: list[int] = field(default_factory=list)


def _txns(ops: list[Op]) -> dict[str, _Txn]:
    txns: dict[str, _Txn] = {}
    for op in ops:
        if op.txn is None:
            continue
        txn = txns.setdefault(op.txn, _Txn(op.txn))
        if op.kind == "send":
            txn.sends.append(op)
        elif op.kind == "txn":
            txn.end_ops.append(op.index)
            if op.action == "commit":
                if txn.commit_start is None or op.start < txn.commit_start:
                    txn.commit_start = op.start
                if op.outcome == OK:
                    txn.fate = "committed"
            elif op.action in ("abort", "crash") and op.outcome == OK and txn.fate != "committed":
                txn.fate = "aborted"
    return txns


def _final(ops: list[Op], isolation: str) -> dict[str, dict[int, str]]:
    """partition -> offset -> value, from the final reads at this isolation level."""
    found: dict[str, dict[int, str]] = defaultdict(dict)
    for op in ops:
        if op.kind == "final-read" and op.isolation == isolation:
            for partition, offset, value in op.reads or ():
                found[partition][offset] = value
    return found


def check(ops: list[Op]) -> Result:
    result = Result()
    txns = _txns(ops)
    committed = _final(ops, COMMITTED)
    uncommitted = _final(ops, UNCOMMITTED)
    committed_values = {v: (p, o) for p, at in committed.items() for o, v in at.items()}
    sends = {op.value: op for op in ops if op.kind == "send" and op.value is not None}
    _check_offsets(ops, result)
    _check_writes(ops, sends, txns, committed_values, result)
    _check_reads(ops, sends, txns, result)
    _check_txns(txns, committed_values, result)
    _check_sends(ops, result)
    _check_stretches(ops, sends, txns, committed, uncommitted, result)
    _check_copies(ops, committed, result)
    return result


def _check_offsets(ops: list[Op], result: Result) -> None:
    """Acknowledgments, polls and final reads must agree: (partition, offset) <-> value."""
    values_at: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)
    offsets_of: dict[str, dict[tuple[str, int], int]] = defaultdict(dict)
    for op in ops:
        observed: list[tuple[str, int, str]] = []
        if op.kind == "send" and op.outcome == OK and op.offset is not None:
            assert op.partition is not None and op.value is not None
            observed.append((op.partition, op.offset, op.value))
        elif op.kind in ("poll", "final-read"):
            observed.extend(op.reads or ())
        for partition, offset, value in observed:
            values_at[partition, offset].setdefault(value, op.index)
            offsets_of[value].setdefault((partition, offset), op.index)
    for (partition, offset), values in values_at.items():
        if len(values) > 1:
            result.add(
                INCONSISTENT_OFFSETS,
                f"{partition}@{offset} holds {sorted(values)}",
                values.values(),
            )
    for value, where in offsets_of.items():
        if len(where) > 1:
            places = ", ".join(f"{p}@{o}" for p, o in sorted(where))
            result.add(DUPLICATE, f"{value} at {places}", where.values())


def _must_be_visible(send: Op, txns: dict[str, _Txn]) -> bool:
    if send.txn is None:
        return send.outcome == OK
    return txns[send.txn].fate == "committed"


def _check_writes(
    ops: list[Op],
    sends: dict[str, Op],
    txns: dict[str, _Txn],
    committed_values: dict[str, tuple[str, int]],
    result: Result,
) -> None:
    polled: set[str] = set()
    for op in ops:
        if op.kind == "poll":
            polled.update(value for _, _, value in op.reads or ())
    for value, send in sends.items():
        if not _must_be_visible(send, txns):
            continue
        ops_of = [send.index, *(txns[send.txn].end_ops if send.txn else ())]
        if value not in committed_values:
            where = f"{send.partition}@{send.offset}" if send.offset is not None else "unacked"
            result.add(LOST_WRITE, f"{value} ({where}, txn {send.txn}) not in final read", ops_of)
        elif value not in polled:
            result.add(UNSEEN, f"{value} ({send.partition}) never polled during the run", ops_of)


def _check_reads(
    ops: list[Op], sends: dict[str, Op], txns: dict[str, _Txn], result: Result
) -> None:
    """read_committed must not return aborted values, nor values whose commit was not yet
    requested when the poll returned (the broker served them past the LSO)."""
    for op in ops:
        if op.kind not in ("poll", "final-read") or op.isolation != COMMITTED:
            continue
        for partition, offset, value in op.reads or ():
            send = sends.get(value)
            if send is None or send.txn is None:
                continue
            txn = txns[send.txn]
            if txn.fate == "aborted":
                result.add(
                    ABORTED_READ,
                    f"{op.process} read {value} ({partition}@{offset}) of aborted txn {txn.name}",
                    [op.index, send.index, *txn.end_ops],
                )
            elif op.kind == "poll" and (txn.commit_start is None or op.end < txn.commit_start):
                when = "never" if txn.commit_start is None else f"at {txn.commit_start:.3f} s"
                result.add(
                    LSO_READ,
                    f"{op.process} read {value} of txn {txn.name} at {op.end:.3f} s; "
                    f"its commit was sent {when}",
                    [op.index, send.index, *txn.end_ops],
                )


def _check_txns(
    txns: dict[str, _Txn], committed_values: dict[str, tuple[str, int]], result: Result
) -> None:
    for txn in txns.values():
        values = {send.value for send in txn.sends}
        visible = {v for v in values if v in committed_values}
        if visible and visible != values:
            result.add(
                NON_ATOMIC_TXN,
                f"txn {txn.name} ({txn.fate}): visible {sorted(str(v) for v in visible)}, "
                f"missing {sorted(str(v) for v in values - visible)}",
                [*(s.index for s in txn.sends), *txn.end_ops],
            )


def _check_sends(ops: list[Op], result: Result) -> None:
    """A producer's sends to one partition land in the order it made them."""
    by_producer: dict[tuple[str, str], list[Op]] = defaultdict(list)
    for op in ops:
        if op.kind == "send" and op.offset is not None and op.offset >= 0 and op.outcome == OK:
            assert op.partition is not None
            by_producer[op.process, op.partition].append(op)
    for (process, partition), sent in by_producer.items():
        sent.sort(key=lambda s: s.seq if s.seq is not None else s.index)
        for before, after in itertools.pairwise(sent):
            assert before.offset is not None and after.offset is not None
            if after.offset <= before.offset:
                result.add(
                    NONMONOTONIC_SEND,
                    f"{process} sent {after.value} after {before.value} to {partition}, "
                    f"at {after.offset} <= {before.offset}",
                    [before.index, after.index],
                )


@dataclass(slots=True)
class _Stretch:
    """One consumer's reads of one partition between two assign/seek/revoke operations."""

    process: str
    partition: str
    isolation: str
    start: int  # the known position it began at, -1 if unknown
    reads: list[tuple[int, str, int]] = field(default_factory=list)  # offset, value, op index


def _stretches(ops: list[Op]) -> list[_Stretch]:
    done: list[_Stretch] = []
    open_: dict[tuple[str, str], _Stretch] = {}
    starts: dict[tuple[str, str], int] = {}
    for op in ops:
        if op.kind in ("assign", "seek", "revoke"):
            for partition, position in (op.offsets or {}).items():
                key = (op.process, partition)
                if key in open_:
                    done.append(open_.pop(key))
                starts[key] = position if op.kind != "revoke" else -1
        elif op.kind == "poll":
            isolation = op.isolation or COMMITTED
            for partition, offset, value in op.reads or ():
                key = (op.process, partition)
                stretch = open_.get(key)
                if stretch is None:
                    stretch = open_[key] = _Stretch(
                        op.process, partition, isolation, starts.pop(key, -1)
                    )
                stretch.reads.append((offset, value, op.index))
    done.extend(open_.values())
    return done


def _check_stretches(
    ops: list[Op],
    sends: dict[str, Op],
    txns: dict[str, _Txn],
    committed: dict[str, dict[int, str]],
    uncommitted: dict[str, dict[int, str]],
    result: Result,
) -> None:
    offsets_by_partition = {
        isolation: {p: sorted(at) for p, at in final.items()}
        for isolation, final in ((COMMITTED, committed), (UNCOMMITTED, uncommitted))
    }
    # Where each transaction's values sit in each partition, from the final uncommitted read.
    txn_offsets: dict[tuple[str, str], list[int]] = defaultdict(list)
    for partition, at in uncommitted.items():
        for offset, value in at.items():
            send = sends.get(value)
            if send is not None and send.txn is not None:
                txn_offsets[send.txn, partition].append(offset)
    for stretch in _stretches(ops):
        visible = offsets_by_partition[stretch.isolation].get(stretch.partition, [])
        final = (committed if stretch.isolation == COMMITTED else uncommitted).get(
            stretch.partition, {}
        )
        previous = stretch.start - 1 if stretch.start >= 0 else None
        previous_op: int | None = None
        for offset, _value, index in stretch.reads:
            if previous is not None and offset <= previous:
                result.add(
                    NONMONOTONIC_POLL,
                    f"{stretch.process} read {stretch.partition}@{offset} after @{previous}",
                    [i for i in (previous_op, index) if i is not None],
                )
            elif previous is not None:
                low = bisect.bisect_right(visible, previous)
                high = bisect.bisect_left(visible, offset)
                if high > low:
                    skipped = visible[low:high]
                    shown = ", ".join(f"@{o}={final[o]}" for o in skipped[:5])
                    result.add(
                        POLL_SKIP,
                        f"{stretch.process} ({stretch.isolation}) jumped from "
                        f"{stretch.partition}@{previous} to @{offset} over {len(skipped)} "
                        f"value(s): {shown}",
                        [i for i in (previous_op, index) if i is not None],
                    )
            previous, previous_op = offset, index
        if stretch.isolation == COMMITTED:
            _check_intermediate(stretch, sends, txns, txn_offsets, result)


def _check_intermediate(
    stretch: _Stretch,
    sends: dict[str, Op],
    txns: dict[str, _Txn],
    txn_offsets: dict[tuple[str, str], list[int]],
    result: Result,
) -> None:
    """A read_committed stretch that covers a transaction's records in this partition must
    show all of them or none."""
    if not stretch.reads:
        return
    first = stretch.start if stretch.start >= 0 else stretch.reads[0][0]
    last = max(offset for offset, _, _ in stretch.reads)
    seen_by_txn: dict[str, set[int]] = defaultdict(set)
    ops_by_txn: dict[str, list[int]] = defaultdict(list)
    for offset, value, index in stretch.reads:
        send = sends.get(value)
        if send is not None and send.txn is not None:
            seen_by_txn[send.txn].add(offset)
            ops_by_txn[send.txn].append(index)
    for name, seen in seen_by_txn.items():
        offsets = txn_offsets.get((name, stretch.partition), [])
        if not offsets or min(offsets) < first or max(offsets) > last:
            continue
        if seen != set(offsets):
            result.add(
                INTERMEDIATE_READ,
                f"{stretch.process} read {len(seen)} of {len(offsets)} records of txn {name} "
                f"({txns[name].fate}) in {stretch.partition}, offsets {sorted(seen)} of "
                f"{sorted(offsets)}",
                ops_by_txn[name],
            )


def _check_copies(ops: list[Op], committed: dict[str, dict[int, str]], result: Result) -> None:
    """Exactly-once copying: every committed input value below the copiers' committed offsets
    appears once in the committed output."""
    group_offsets: dict[str, int] = {}
    for op in ops:
        if op.kind == "group-offsets" and op.outcome == OK:
            group_offsets.update(op.offsets or {})
    copies: dict[str, list[str]] = defaultdict(list)
    for partition, at in committed.items():
        for offset, value in at.items():
            source, sep, _ = value.partition(COPY_SEPARATOR)
            if sep:
                copies[source].append(f"{partition}@{offset}")
    for source, where in copies.items():
        if len(where) > 1:
            result.add(COPY_DUPLICATE, f"{source} copied to {', '.join(sorted(where))}")
    for partition, end in group_offsets.items():
        for offset, value in sorted(committed.get(partition, {}).items()):
            if offset >= end:
                break
            if value not in copies:
                result.add(
                    COPY_LOST,
                    f"{value} ({partition}@{offset}) is below the copiers' committed offset "
                    f"{end} but was never copied",
                )
