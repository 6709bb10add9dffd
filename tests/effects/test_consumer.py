"""The idempotent consumer against a real broker (embedded samsa, confluent-kafka) and the real
gateway: at most one effect per key through duplicates, crashes and races."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest

from samsa.effects import Attempt, DedupStore, IdempotentConsumer, SQLiteDatabase
from samsa.payments.gateway import Gateway, GatewayClient
from samsa.testing.embedded import EmbeddedBroker

from .conftest import Databases
from .support import committed, consumer, create_topic, produce

DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(str(tmp_path_factory.mktemp("broker"))) as broker:
        yield broker


def payments(count: int, copies: int) -> list[dict[str, Any]]:
    """`count` payments, each present `copies` times (as after producer retries upstream)."""
    return [
        {"idempotency_key": f"pay_{i}", "order_id": f"ord_{i}", "amount": 100 + i}
        for _ in range(copies)
        for i in range(count)
    ]


def drain(idempotent: IdempotentConsumer, until: Any) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not until() and time.monotonic() < deadline:
        idempotent.poll_once()
    assert until(), "the consumer did not finish in time"


def test_duplicates_in_the_topic_run_the_handler_once(
    broker: EmbeddedBroker, databases: Databases
) -> None:
    topic = create_topic(broker.bootstrap)
    produce(broker.bootstrap, topic, payments(10, 3))
    runs: Counter[str] = Counter()

    def handler(message: Any, attempt: Attempt) -> dict[str, Any]:
        runs[attempt.key] += 1
        return {"amount": json.loads(message.value())["amount"]}

    kafka = consumer(broker.bootstrap, "dup")
    kafka.subscribe([topic])
    idempotent = IdempotentConsumer(kafka, DedupStore(databases.open()), handler, owner="c1")
    drain(idempotent, lambda: idempotent.stats.processed + idempotent.stats.skipped == 30)
    kafka.close()
    assert runs == Counter({f"pay_{i}": 1 for i in range(10)})
    assert (idempotent.stats.processed, idempotent.stats.skipped) == (10, 20)
    assert committed(broker.bootstrap, "dup", topic) == 30


class Crash(BaseException):
    """Stands for the process dying right after the external call."""


def test_crash_between_charge_and_record_is_resolved_by_the_gateway_key(
    broker: EmbeddedBroker, tmp_path: Path, databases: Databases
) -> None:
    topic = create_topic(broker.bootstrap)
    produce(broker.bootstrap, topic, payments(5, 1))
    with Gateway(SQLiteDatabase(str(tmp_path / "gateway.db"))) as gateway:
        calls: list[tuple[str, int, bool]] = []

        def make_handler(crash_on: str | None) -> Any:
            client = GatewayClient(gateway.url)

            def handler(message: Any, attempt: Attempt) -> dict[str, Any]:
                payment = json.loads(message.value())
                params = {
                    "amount": payment["amount"],
                    "currency": "usd",
                    "card": "4242424242424242",
                    "order_id": payment["order_id"],
                }
                response = client.charge(params, attempt.key)
                calls.append((attempt.key, attempt.number, response.replayed))
                if attempt.key == crash_on:
                    raise Crash
                return {"charge_id": response.body["id"]}

            return handler

        store = DedupStore(databases.open())
        first = consumer(broker.bootstrap, "crash")
        first.subscribe([topic])
        dying = IdempotentConsumer(first, store, make_handler("pay_2"), owner="c1")
        with pytest.raises(Crash):
            drain(dying, lambda: False)
        first.close()  # nothing committed past pay_1
        second = consumer(broker.bootstrap, "crash")
        second.subscribe([topic])
        survivor = IdempotentConsumer(second, store, make_handler(None), owner="c2")
        drain(survivor, lambda: survivor.stats.processed + survivor.stats.skipped >= 3)
        second.close()
        charges = GatewayClient(gateway.url).charges()
    assert sorted(c["order_id"] for c in charges) == [f"ord_{i}" for i in range(5)]
    assert ("pay_2", 1, False) in calls  # charged, then crashed before the record
    assert ("pay_2", 2, True) in calls  # the takeover's call was a replay, not a charge
    assert committed(broker.bootstrap, "crash", topic) == 5


def test_two_consumers_racing_run_each_key_once(
    broker: EmbeddedBroker, databases: Databases
) -> None:
    """Two consumers in different groups read the same payments at the same time (a zombie and
    its replacement, say): each key's handler runs once; both end up with every outcome."""
    topic = create_topic(broker.bootstrap)
    count = 40
    produce(broker.bootstrap, topic, payments(count, 1))
    runs: Counter[str] = Counter()
    lock = threading.Lock()

    def handler(message: Any, attempt: Attempt) -> dict[str, Any]:
        with lock:
            runs[attempt.key] += 1
        time.sleep(0.005)  # an external call: widens the window for a race
        return {"by": threading.current_thread().name}

    consumers = []
    for n in range(2):
        kafka = consumer(broker.bootstrap, f"race-{n}")
        kafka.subscribe([topic])
        consumers.append(
            IdempotentConsumer(
                kafka, DedupStore(databases.open()), handler, owner=f"c{n}", retry_backoff_s=0.01
            )
        )

    def run(idempotent: IdempotentConsumer) -> None:
        drain(idempotent, lambda: idempotent.stats.processed + idempotent.stats.skipped == count)
        idempotent.consumer.close()

    threads = [
        threading.Thread(target=run, args=(c,), name=f"c{n}") for n, c in enumerate(consumers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S + 5)
    assert runs == Counter({f"pay_{i}": 1 for i in range(count)})
    assert sum(c.stats.processed for c in consumers) == count
    assert all(c.stats.processed + c.stats.skipped == count for c in consumers)


def test_offsets_commit_only_after_the_record(broker: EmbeddedBroker, databases: Databases) -> None:
    """A handler that fails for good leaves the offset where it was: nothing past an unrecorded
    message is committed."""
    topic = create_topic(broker.bootstrap)
    produce(broker.bootstrap, topic, payments(4, 1))

    def handler(message: Any, attempt: Attempt) -> dict[str, Any]:
        if attempt.key == "pay_2":
            raise ValueError("the external system rejected the call")
        return {}

    kafka = consumer(broker.bootstrap, "stuck")
    kafka.subscribe([topic])
    store = DedupStore(databases.open())
    idempotent = IdempotentConsumer(kafka, store, handler, owner="c1")
    with pytest.raises(ValueError):
        drain(idempotent, lambda: False)
    kafka.close()
    assert committed(broker.bootstrap, "stuck", topic) in (2, confluent_kafka.OFFSET_INVALID)
    recorded = [store.get(f"pay_{i}") for i in range(4)]
    assert [r is not None and r.status.value == "done" for r in recorded] == [
        True,
        True,
        False,
        False,
    ]
