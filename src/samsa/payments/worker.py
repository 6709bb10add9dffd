"""The payment consumer, as a process of its own (so the demo can `kill -9` it):

    python -m samsa.payments.worker --bootstrap HOST:PORT --gateway URL --db URL
        --mode exactly-once|naive --partition P --owner NAME [--kill-at N --kill-point A|B]

exactly-once: `IdempotentConsumer` (claim the idempotency key, charge the gateway with it,
record the outcome and the ledger entry in one transaction, produce the result, commit).
naive: at-least-once with no dedup and no key: charge, retry on any failure, write the ledger,
produce the result, commit.

Crash points, for the demo: when told to (`--kill-at N`: at the N-th new payment), the worker
prints `CRASH-POINT <point> <key>` and waits to be killed by its parent; point A is right after
the gateway answered (before anything is recorded), point B after the record, before the offset
commit. Either way Kafka redelivers the payment.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import confluent_kafka

from samsa import lifecycle
from samsa.effects import Attempt, DedupStore, IdempotentConsumer, RetryLater, Tx, open_database
from samsa.payments import ledger
from samsa.payments.gateway.client import GatewayClient, GatewayUnreachable
from samsa.payments.model import PAYMENTS, RESULTS, Order, result

NAIVE_RETRY_BACKOFF_S = 0.02
LEASE_MS = 10_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class CrashPoints:
    def __init__(self, kill_at: int, point: str) -> None:
        self.kill_at = kill_at
        self.point = point
        self.seen = 0

    def new_payment(self) -> None:
        self.seen += 1

    def reach(self, point: str, key: str) -> None:
        if self.kill_at > 0 and self.seen == self.kill_at and point == self.point:
            print(f"CRASH-POINT {point} {key}", flush=True)
            time.sleep(3600)  # the parent's SIGKILL ends this


def outcome_of(response_status: int, body: Any) -> dict[str, Any] | None:
    """The terminal outcome of a gateway answer, or None if it must be retried."""
    if response_status == 200:
        return {"status": "charged", "charge_id": body["id"], "amount": body["amount"]}
    if response_status == 402:
        return {"status": "declined", "charge_id": None, "amount": 0}
    if response_status in (409, 429) or response_status >= 500:
        return None
    return {"status": "failed", "charge_id": None, "amount": 0, "code": response_status}


def client_config(bootstrap: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "reconnect.backoff.ms": 10,
        "reconnect.backoff.max.ms": 200,
        "metadata.recovery.strategy": "none",
        "log_level": 0,
    }


def run_exactly_once(args: argparse.Namespace, stop: threading.Event) -> None:
    database = open_database(args.db, args.db_schema)
    ledger.create(database)
    store = DedupStore(database, namespace="payments")
    gateway = GatewayClient(args.gateway, args.client_timeout_s)
    crash = CrashPoints(args.kill_at, args.kill_point)
    consumer, producer = _clients(args, "payments-exactly-once")

    def handle(message: Any, attempt: Attempt) -> dict[str, Any]:
        order = Order.decode(message.value())
        if attempt.number == 1:
            crash.new_payment()
        try:
            response = gateway.charge(order.charge_params(), order.idempotency_key)
        except GatewayUnreachable as exc:
            raise RetryLater(str(exc)) from exc
        outcome = outcome_of(response.status, response.body)
        if outcome is None:
            raise RetryLater(f"gateway answered {response.status}")
        crash.reach("A", order.idempotency_key)
        return outcome

    def record_also(tx: Tx, message: Any, outcome: dict[str, Any]) -> None:
        order = Order.decode(message.value())
        entry = ledger.Entry(
            order.order_id,
            order.idempotency_key,
            outcome["status"],
            outcome["charge_id"],
            outcome["amount"],
        )
        ledger.insert(tx, entry, now_ms())

    def after(message: Any, outcome: dict[str, Any], replayed: bool) -> None:
        order = Order.decode(message.value())
        producer.produce(RESULTS, result(order, outcome["status"], charge_id=outcome["charge_id"]))
        if not replayed:
            crash.reach("B", order.idempotency_key)

    idempotent = IdempotentConsumer(
        consumer,
        store,
        handle,
        owner=args.owner,
        lease_ms=LEASE_MS,
        record_also=record_also,
        after=after,
        before_commit=lambda: _flush(producer),
    )
    idempotent.run(stop)
    _flush(producer)
    consumer.close()
    print("STATS " + json.dumps(_stats(idempotent)), flush=True)


def _stats(consumer: IdempotentConsumer) -> dict[str, int]:
    s = consumer.stats
    return {"processed": s.processed, "skipped": s.skipped, "takeovers": s.takeovers}


def run_naive(args: argparse.Namespace, stop: threading.Event) -> None:
    database = open_database(args.db, args.db_schema)
    ledger.create(database)
    gateway = GatewayClient(args.gateway, args.client_timeout_s)
    crash = CrashPoints(args.kill_at, args.kill_point)
    consumer, producer = _clients(args, "payments-naive")
    while not stop.is_set():
        messages: list[Any] = consumer.consume(50, 0.2)
        for message in messages:
            if message.error() is not None:
                continue
            order = Order.decode(message.value())
            crash.new_payment()
            outcome = None
            while outcome is None:  # at-least-once: retry until the gateway answers
                try:
                    response = gateway.charge(order.charge_params())  # no idempotency key
                    outcome = outcome_of(response.status, response.body)
                except GatewayUnreachable:
                    pass
                if outcome is None:
                    time.sleep(NAIVE_RETRY_BACKOFF_S)
            crash.reach("A", order.idempotency_key)
            entry = ledger.Entry(
                order.order_id,
                order.idempotency_key,
                outcome["status"],
                outcome["charge_id"],
                outcome["amount"],
            )
            with database.transaction() as tx:
                ledger.insert(tx, entry, now_ms())
            producer.produce(RESULTS, result(order, outcome["status"], charge_id=entry.charge_id))
            crash.reach("B", order.idempotency_key)
            _flush(producer)
            _commit(consumer, message)
    _flush(producer)
    consumer.close()


def _commit(consumer: confluent_kafka.Consumer, message: Any) -> None:
    tp = confluent_kafka.TopicPartition(message.topic(), message.partition(), message.offset() + 1)
    for _ in range(50):
        try:
            consumer.commit(offsets=[tp], asynchronous=False)
            return
        except confluent_kafka.KafkaException:
            time.sleep(0.1)


def _flush(producer: confluent_kafka.Producer) -> None:
    while producer.flush(10.0) > 0:
        pass


def _clients(
    args: argparse.Namespace, group: str
) -> tuple[confluent_kafka.Consumer, confluent_kafka.Producer]:
    consumer = confluent_kafka.Consumer(
        {
            **client_config(args.bootstrap),
            "group.id": group,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    committed = consumer.committed([confluent_kafka.TopicPartition(PAYMENTS, args.partition)], 30)
    start = committed[0].offset if committed[0].offset >= 0 else confluent_kafka.OFFSET_BEGINNING
    consumer.assign([confluent_kafka.TopicPartition(PAYMENTS, args.partition, start)])
    producer = confluent_kafka.Producer(
        {**client_config(args.bootstrap), "enable.idempotence": True, "linger.ms": 2}
    )
    return consumer, producer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samsa.payments.worker")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--db-schema", default=None)
    parser.add_argument("--mode", choices=["exactly-once", "naive"], required=True)
    parser.add_argument("--partition", type=int, required=True)
    parser.add_argument("--owner", required=True)
    parser.add_argument("--client-timeout-s", type=float, default=5.0)
    parser.add_argument("--kill-at", type=int, default=0)
    parser.add_argument("--kill-point", choices=["A", "B"], default="A")
    args = parser.parse_args(argv)
    stop = threading.Event()
    lifecycle.supervise(stop)  # SIGTERM stops it; it exits when its parent is gone
    print("READY", flush=True)
    if args.mode == "exactly-once":
        run_exactly_once(args, stop)
    else:
        run_naive(args, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
