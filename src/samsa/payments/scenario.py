"""One run of the whole payment system on an embedded broker, under faults, then the audit.

checkout (idempotent producer) -> `orders` -> validation (transactional read-process-write)
-> `payments` -> payment consumers (subprocesses; exactly-once or naive) -> gateway (HTTP)
-> ledger (database) and `payment-results`.

Faults, all seeded: lost acknowledgments of Produce requests (the chaos proxy drops the
response after the broker wrote the batch), payment consumers `kill -9`'d between charge and
commit, gateway failures before charging, timeouts after charging and slow responses, and one
broker restart while payments are flowing.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import confluent_kafka
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from samsa.chaos import EmbeddedChaosProxy, Schedule, proxied_broker
from samsa.effects.db import PostgresDatabase, open_database
from samsa.payments import ledger
from samsa.payments.audit import Audit, audit
from samsa.payments.gateway import Gateway, GatewayClient, GatewayFault, GatewayFaults
from samsa.payments.model import ORDERS, PAYMENTS, RESULTS, Order, generate_orders
from samsa.payments.validation import Validator
from samsa.payments.worker import client_config
from samsa.payments.workers import WorkerPool, WorkerSettings
from samsa.progress import QUIET, Progress
from samsa.protocol.apis import ApiKey

log = logging.getLogger("samsa.payments")

PARTITIONS = 2
DROP_RESPONSE_PROBABILITY = 0.03
GATEWAY_FAIL_BEFORE_PROBABILITY = 0.02
GATEWAY_TIMEOUT_AFTER_PROBABILITY = 0.015
GATEWAY_SLOW_PROBABILITY = 0.05
GATEWAY_SLOW_MS = (20, 150)
GATEWAY_HANG_S = 0.6
CLIENT_TIMEOUT_S = 0.4
ORDERS_PER_KILL = 400
RESTART_AT_FRACTION = 0.4
DEADLINE_S_BASE = 90.0
DEADLINE_S_PER_ORDER = 0.25
READ_TIMEOUT_S = 30.0

MODES = ("exactly-once", "naive")


@dataclass(slots=True)
class Outcome:
    mode: str
    audit: Audit
    faults: dict[str, int]
    completed: bool  # every order reached `payment-results` before the deadline
    elapsed_s: float
    payments_per_s: float
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            **self.audit.as_dict(),
            "faults": self.faults,
            "completed": self.completed,
            "elapsed_s": round(self.elapsed_s, 2),
            "payments_per_s": round(self.payments_per_s, 1),
            **self.details,
        }


def run(
    mode: str,
    order_count: int,
    seed: int,
    *,
    faults: bool = True,
    postgres: str | None = None,
    progress: Progress = QUIET,
) -> Outcome:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    workdir = tempfile.mkdtemp(prefix="samsa-payments-")
    schema = f"samsa_payments_{mode.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    try:
        with proxied_broker(data_dir=f"{workdir}/broker") as (broker, proxy):
            return _run(
                mode, order_count, seed, faults, postgres, schema, workdir, broker, proxy, progress
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if postgres is not None:
            _drop_schemas(postgres, [schema, schema + "_gw"])


def _run(
    mode: str,
    order_count: int,
    seed: int,
    with_faults: bool,
    postgres: str | None,
    schema: str,
    workdir: str,
    broker: Any,
    proxy: EmbeddedChaosProxy,
    progress: Progress,
) -> Outcome:
    bootstrap = proxy.bootstrap
    progress.phase(f"{mode}: starting the gateway and {PARTITIONS} payment workers")
    _create_topics(bootstrap)
    orders = generate_orders(order_count, seed)
    db_url = postgres or f"{workdir}/payments.db"
    db_schema = schema if postgres else None
    database = open_database(db_url, db_schema)
    ledger.create(database)
    gateway_db = open_database(
        postgres or f"{workdir}/gateway.db", schema + "_gw" if postgres else None
    )
    gateway_faults = _gateway_faults(seed) if with_faults else GatewayFaults(seed)
    kills_per_worker = 1 + order_count // ORDERS_PER_KILL if with_faults else 0
    per_worker = max(1, order_count // PARTITIONS)
    with Gateway(gateway_db, faults=gateway_faults) as gateway:
        pool = WorkerPool(
            WorkerSettings(
                mode=mode,
                bootstrap=bootstrap,
                gateway=gateway.url,
                db=db_url,
                db_schema=db_schema,
                client_timeout_s=CLIENT_TIMEOUT_S if with_faults else 5.0,
                kills_per_worker=kills_per_worker,
                kill_every=max(2, per_worker // (kills_per_worker + 1)),
                seed=seed,
            ),
            PARTITIONS,
        )
        stop = threading.Event()
        pool.start()
        try:
            validator = Validator(bootstrap, PARTITIONS, client_config=_quiet())
            validation = threading.Thread(target=validator.run, args=(stop,), daemon=True)
            validation.start()
            if with_faults:
                proxy.set_schedule(
                    Schedule(
                        seed,
                        drop_response_probability=DROP_RESPONSE_PROBABILITY,
                        api_keys=[int(ApiKey.PRODUCE)],
                    )
                )
                proxy.drop_next_response(api_key=int(ApiKey.PRODUCE))
            started = time.monotonic()
            progress.phase(f"{mode}: checkout produces {order_count} orders")
            checkout_errors = _checkout(bootstrap, orders)
            progress.phase(f"{mode}: orders paid (results in payment-results)", total=order_count)
            restarts, completed = _await_results(
                bootstrap, order_count, broker if with_faults else None, started, progress
            )
            elapsed = time.monotonic() - started
            stop.set()
            validation.join(READ_TIMEOUT_S)
        finally:  # also on Ctrl-C: the workers are stopped before the broker they talk to
            progress.phase(f"{mode}: stopping the payment workers")
            stop.set()
            pool.stop()
        proxy.set_schedule(None)
        charges = GatewayClient(gateway.url).charges()
        gateway_counts = gateway_faults.counts()
    stats = proxy.stats()
    progress.phase(f"{mode}: auditing orders, charges, ledger and results")
    order_records = _read_orders(bootstrap)
    result_ids = _read_result_ids(bootstrap)
    entries = ledger.entries(database)
    database.close()
    gateway_db.close()
    fault_counts = {
        "lost_acks": stats.dropped_responses,
        "consumer_kills": pool.kills["A"] + pool.kills["B"],
        "consumer_kills_after_charge": pool.kills["A"],
        "consumer_kills_before_commit": pool.kills["B"],
        "gateway_fail_before_charge": gateway_counts[GatewayFault.FAIL_BEFORE_CHARGE.value],
        "gateway_timeout_after_charge": gateway_counts[GatewayFault.TIMEOUT_AFTER_CHARGE.value],
        "gateway_slow": gateway_counts[GatewayFault.SLOW.value],
        "broker_restarts": restarts,
    }
    return Outcome(
        mode=mode,
        audit=audit(order_records, charges, entries, result_ids),
        faults=fault_counts,
        completed=completed,
        elapsed_s=elapsed,
        payments_per_s=order_count / elapsed if elapsed > 0 else 0.0,
        details={
            "checkout_delivery_errors": checkout_errors,
            "validation_aborts": validator.aborts,
            "unexpected_worker_exits": pool.kills["unexpected_exit"],
            "consumer_stats": pool.stats,
        },
    )


def _quiet() -> dict[str, Any]:
    config = client_config("")
    del config["bootstrap.servers"]
    return config


def _gateway_faults(seed: int) -> GatewayFaults:
    return GatewayFaults(
        seed,
        fail_before_charge_probability=GATEWAY_FAIL_BEFORE_PROBABILITY,
        timeout_after_charge_probability=GATEWAY_TIMEOUT_AFTER_PROBABILITY,
        slow_probability=GATEWAY_SLOW_PROBABILITY,
        slow_ms_range=GATEWAY_SLOW_MS,
        hang_s=GATEWAY_HANG_S,
        # Each kind once early on, so even a short run meets all of them.
        first_at={
            GatewayFault.FAIL_BEFORE_CHARGE: 3,
            GatewayFault.TIMEOUT_AFTER_CHARGE: 5,
            GatewayFault.SLOW: 7,
        },
    )


def _create_topics(bootstrap: str) -> None:
    admin = AdminClient({**client_config(bootstrap)})
    topics = [NewTopic(ORDERS, PARTITIONS), NewTopic(PAYMENTS, PARTITIONS), NewTopic(RESULTS, 1)]
    for future in admin.create_topics(topics, operation_timeout=READ_TIMEOUT_S).values():
        future.result(READ_TIMEOUT_S)


def _checkout(bootstrap: str, orders: list[Order]) -> int:
    """The checkout service: an idempotent producer, so a retry after a lost acknowledgment is
    recognised by the broker. Small batches, so the fault schedule meets many requests."""
    producer = confluent_kafka.Producer(
        {
            **client_config(bootstrap),
            "enable.idempotence": True,
            "linger.ms": 2,
            "batch.num.messages": 10,
            "retry.backoff.ms": 10,
        }
    )
    errors = []

    def report(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(error)

    for order in orders:
        producer.produce(ORDERS, order.encode(), key=order.order_id, on_delivery=report)
        producer.poll(0)
    while producer.flush(10.0) > 0:
        pass
    return len(errors)


def _await_results(
    bootstrap: str, expected: int, broker: Any, started: float, progress: Progress
) -> tuple[int, bool]:
    """Read `payment-results` until every order has one; restart the broker once on the way.
    Returns (broker restarts, completed)."""
    consumer = _reader(bootstrap, RESULTS, 1)
    seen: set[str] = set()
    restarts = 0
    deadline = started + DEADLINE_S_BASE + DEADLINE_S_PER_ORDER * expected
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            batch: list[Any] = consumer.consume(500, 0.2)
            for message in batch:
                if message.error() is None:
                    seen.add(json.loads(message.value())["order_id"])
            progress.update(len(seen))
            if broker is not None and restarts == 0 and len(seen) >= expected * RESTART_AT_FRACTION:
                broker.restart()
                restarts += 1
    finally:
        consumer.close()
    return restarts, len(seen) >= expected


def _reader(bootstrap: str, topic: str, partitions: int) -> confluent_kafka.Consumer:
    consumer = confluent_kafka.Consumer(
        {
            **client_config(bootstrap),
            "group.id": f"audit-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign(
        [
            confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
            for p in range(partitions)
        ]
    )
    return consumer


def _read_all(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    """Every committed record of the topic, up to its end offsets now."""
    consumer = _reader(bootstrap, topic, partitions)
    try:
        ends = {}
        for p in range(partitions):
            _, high = consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, p), READ_TIMEOUT_S
            )
            ends[p] = high
        values: list[bytes] = []
        positions = dict.fromkeys(range(partitions), 0)
        deadline = time.monotonic() + READ_TIMEOUT_S
        while any(positions[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            messages: list[Any] = consumer.consume(1000, 0.2)
            for message in messages:
                if message.error() is None:
                    values.append(message.value())
                    positions[message.partition()] = message.offset() + 1
            for tp in consumer.position(consumer.assignment()):
                if tp.offset >= 0:
                    positions[tp.partition] = max(positions[tp.partition], tp.offset)
        return values
    finally:
        consumer.close()


def _read_orders(bootstrap: str) -> list[Order]:
    return [Order.decode(value) for value in _read_all(bootstrap, ORDERS, PARTITIONS)]


def _read_result_ids(bootstrap: str) -> set[str]:
    return {json.loads(value)["order_id"] for value in _read_all(bootstrap, RESULTS, 1)}


def _drop_schemas(url: str, schemas: list[str]) -> None:
    database = PostgresDatabase(url)
    try:
        with database.transaction() as tx:
            for schema in schemas:
                tx.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        database.close()
