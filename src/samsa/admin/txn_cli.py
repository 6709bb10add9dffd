"""`samsa txn`: list, describe, find hanging and abort transactions (KIP-664's
kafka-transactions.sh, for samsa).

    samsa txn --bootstrap HOST:PORT list
    samsa txn --bootstrap HOST:PORT describe --transactional-id ID
    samsa txn --bootstrap HOST:PORT find-hanging [--min-age-ms MS]
    samsa txn --bootstrap HOST:PORT abort --topic T --partition P --producer-id PID

A *hanging* transaction holds a partition's last stable offset (LSO) back, so read_committed
consumers stall (KAFKA-9144). `find-hanging` asks every partition for its producers with an open
transaction (DescribeProducers); `abort` sends an ABORT marker for the partition
(WriteTxnMarkers) with the producer's epoch and coordinator epoch as the partition reports them.
For a hanging transaction the broker writes it to the partition, which closes the transaction
there and releases the LSO. For one the coordinator still holds open (`find-hanging` says
`ongoing`), the broker's coordinator aborts the whole transaction, in every partition, and
fences its producer, as a transaction timeout does.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from kio.schema.describe_transactions.v0.response import (
    TransactionState as DescribedTransaction,
)
from kio.schema.errors import ErrorCode

from samsa.admin.client import READ_COMMITTED, READ_UNCOMMITTED, AdminClient, AdminError

OPEN_STATES = ("Ongoing", "PrepareCommit", "PrepareAbort", "PrepareEpochFence")


def register(subparsers: Any) -> None:
    """Add the `txn` subcommand to the `samsa` parser; its handler is `args.handler`."""
    parser = subparsers.add_parser(
        "txn",
        help="list, describe and abort transactions (KIP-664)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", metavar="HOST:PORT")
    actions = parser.add_subparsers(dest="txn_command", required=True)
    actions.add_parser("list", help="every transactional id, its state and open partitions")
    describe = actions.add_parser("describe", help="one transactional id in detail")
    describe.add_argument("--transactional-id", required=True)
    hanging = actions.add_parser(
        "find-hanging", help="producers with an open transaction, per partition"
    )
    hanging.add_argument(
        "--min-age-ms", type=int, default=0, help="only transactions open at least this long"
    )
    abort = actions.add_parser("abort", help="write an ABORT marker for a producer's open txn")
    abort.add_argument("--topic", required=True)
    abort.add_argument("--partition", type=int, required=True)
    abort.add_argument("--producer-id", type=int, required=True)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    now_ms = time.time_ns() // 1_000_000
    try:
        with AdminClient(args.bootstrap) as client:
            if args.txn_command == "list":
                return _list(client, now_ms, out)
            if args.txn_command == "describe":
                return _describe(client, args.transactional_id, now_ms, out)
            if args.txn_command == "find-hanging":
                return _find_hanging(client, args.min_age_ms, now_ms, out)
            if args.txn_command == "abort":
                return _abort(client, args.topic, args.partition, args.producer_id, out)
    except AdminError as exc:
        print(f"samsa txn: {exc}", file=sys.stderr)
        return 1
    return 2


# --------------------------------------------------------------------- list and describe
@dataclass(frozen=True, slots=True)
class TxnRow:
    transactional_id: str
    state: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    age_ms: int | None  # only for an open transaction
    partitions: list[str]
    start_ms: int = -1

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def timeout_used(self) -> float:
        """Age as a fraction of the timeout (1.0: the coordinator should abort it now)."""
        if self.age_ms is None or self.timeout_ms <= 0:
            return 0.0
        return self.age_ms / self.timeout_ms

    @property
    def overdue(self) -> bool:
        return self.timeout_used > 1.0


def row_of(state: DescribedTransaction, now_ms: int) -> TxnRow:
    """One DescribeTransactions answer (without error) as a row."""
    start_ms = int(state.transaction_start_time.timestamp() * 1000)
    open_txn = state.transaction_state in OPEN_STATES
    return TxnRow(
        transactional_id=str(state.transactional_id),
        state=state.transaction_state,
        producer_id=int(state.producer_id),
        producer_epoch=int(state.producer_epoch),
        timeout_ms=_ms(state.transaction_timeout),
        age_ms=now_ms - start_ms if open_txn and start_ms > 0 else None,
        partitions=[f"{topic.topic}-{p}" for topic in state.topics for p in topic.partitions],
        start_ms=start_ms,
    )


def describe_all(client: AdminClient, ids: list[str], now_ms: int) -> list[TxnRow]:
    if not ids:
        return []
    return [
        row_of(state, now_ms)
        for state in client.describe_transactions(ids).transaction_states
        if state.error_code == ErrorCode.none
    ]


def _ms(value: datetime.timedelta | int) -> int:
    if isinstance(value, datetime.timedelta):
        return int(value.total_seconds() * 1000)
    return int(value)


def _print_rows(rows: list[TxnRow], out: TextIO) -> None:
    print(
        f"{'TRANSACTIONAL ID':<30} {'STATE':<15} {'PRODUCER ID':>11} {'EPOCH':>5} "
        f"{'TIMEOUT MS':>10} {'AGE MS':>8}  PARTITIONS",
        file=out,
    )
    for row in rows:
        age = "-" if row.age_ms is None else str(row.age_ms)
        print(
            f"{row.transactional_id:<30} {row.state:<15} {row.producer_id:>11} "
            f"{row.producer_epoch:>5} {row.timeout_ms:>10} {age:>8}  "
            f"{','.join(row.partitions) or '-'}",
            file=out,
        )


def _list(client: AdminClient, now_ms: int, out: TextIO) -> int:
    listed = client.list_transactions()
    ids = sorted(str(t.transactional_id) for t in listed.transaction_states)
    _print_rows(describe_all(client, ids, now_ms), out)
    return 0


def _describe(client: AdminClient, transactional_id: str, now_ms: int, out: TextIO) -> int:
    states = client.describe_transactions([transactional_id]).transaction_states
    if not states or states[0].error_code != ErrorCode.none:
        error = states[0].error_code.name if states else "no answer"
        print(f"samsa txn: {transactional_id!r}: {error}", file=sys.stderr)
        return 1
    _print_rows(describe_all(client, [transactional_id], now_ms), out)
    return 0


# --------------------------------------------------------------------- find hanging
@dataclass(frozen=True, slots=True)
class OpenTxn:
    """A producer with an open transaction on a partition, and what it holds back."""

    topic: str
    partition: int
    producer_id: int
    producer_epoch: int
    coordinator_epoch: int
    start_offset: int
    last_write_age_ms: int
    last_stable_offset: int
    high_watermark: int
    # Does the coordinator know of it (an ongoing transaction of that producer id with this
    # partition)? If not, nothing will ever end it but `abort`.
    coordinator_knows: bool


def open_transactions(client: AdminClient, now_ms: int) -> list[OpenTxn]:
    partitions = client.topic_partitions()
    producers = client.describe_producers(partitions)
    high = client.list_offsets(partitions, READ_UNCOMMITTED)
    stable = client.list_offsets(partitions, READ_COMMITTED)
    ongoing: set[tuple[int, str]] = set()
    listed = client.list_transactions(states=OPEN_STATES)
    ids = [str(t.transactional_id) for t in listed.transaction_states]
    for row in describe_all(client, ids, now_ms):
        ongoing.update((row.producer_id, p) for p in row.partitions)
    found = []
    for topic in producers.topics:
        for partition in topic.partitions:
            for producer in partition.active_producers:
                if int(producer.current_txn_start_offset) < 0:
                    continue
                where = (str(topic.name), int(partition.partition_index))
                found.append(
                    OpenTxn(
                        topic=where[0],
                        partition=where[1],
                        producer_id=int(producer.producer_id),
                        producer_epoch=int(producer.producer_epoch),
                        coordinator_epoch=int(producer.coordinator_epoch),
                        start_offset=int(producer.current_txn_start_offset),
                        last_write_age_ms=now_ms - int(producer.last_timestamp),
                        last_stable_offset=stable.get(where, -1),
                        high_watermark=high.get(where, -1),
                        coordinator_knows=(
                            int(producer.producer_id),
                            f"{where[0]}-{where[1]}",
                        )
                        in ongoing,
                    )
                )
    return found


def _find_hanging(client: AdminClient, min_age_ms: int, now_ms: int, out: TextIO) -> int:
    print(
        f"{'TOPIC':<24} {'PARTITION':>9} {'PRODUCER ID':>11} {'EPOCH':>5} {'START OFFSET':>12} "
        f"{'LSO':>8} {'HW':>8} {'AGE MS':>8}  COORDINATOR",
        file=out,
    )
    for txn in open_transactions(client, now_ms):
        if txn.last_write_age_ms < min_age_ms:
            continue
        print(
            f"{txn.topic:<24} {txn.partition:>9} {txn.producer_id:>11} {txn.producer_epoch:>5} "
            f"{txn.start_offset:>12} {txn.last_stable_offset:>8} {txn.high_watermark:>8} "
            f"{txn.last_write_age_ms:>8}  {'ongoing' if txn.coordinator_knows else 'HANGING'}",
            file=out,
        )
    return 0


# --------------------------------------------------------------------- abort
def _abort(client: AdminClient, topic: str, partition: int, producer_id: int, out: TextIO) -> int:
    response = client.describe_producers({topic: [partition]})
    found = None
    for t in response.topics:
        for p in t.partitions:
            if p.error_code != ErrorCode.none:
                print(f"samsa txn: {topic}-{partition}: {p.error_code.name}", file=sys.stderr)
                return 1
            found = next((a for a in p.active_producers if int(a.producer_id) == producer_id), None)
    if found is None or int(found.current_txn_start_offset) < 0:
        print(
            f"samsa txn: producer {producer_id} has no open transaction on {topic}-{partition}",
            file=sys.stderr,
        )
        return 1
    # A partition no coordinator has written a marker to reports coordinator epoch -1; the
    # lowest real coordinator epoch is 0 (Kafka's AbortTransactionHandler does the same).
    written = client.write_txn_markers(
        topic,
        partition,
        producer_id,
        int(found.producer_epoch),
        max(int(found.coordinator_epoch), 0),
        commit=False,
    )
    errors = [
        p.error_code
        for marker in written.markers
        for t in marker.topics
        for p in t.partitions
        if p.error_code != ErrorCode.none
    ]
    if errors:
        print(f"samsa txn: abort failed: {errors[0].name}", file=sys.stderr)
        return 1
    stable = client.list_offsets({topic: [partition]}, READ_COMMITTED).get((topic, partition), -1)
    print(
        f"aborted producer {producer_id} epoch {int(found.producer_epoch)} on {topic}-{partition} "
        f"(transaction from offset {int(found.current_txn_start_offset)}); "
        f"last stable offset now {stable}",
        file=out,
    )
    return 0
