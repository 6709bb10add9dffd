"""One in-process worker against an embedded samsa broker: what it reports, and what it leaves
behind when it stops."""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from samsa.admin.client import AdminClient
from samsa.streams import App, KeyValueStore
from samsa.testing.embedded import embedded_broker

RECORDS = 300
DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    with embedded_broker(settings={"num.partitions": "3"}) as broker:
        yield broker.bootstrap


def client_threads() -> int:
    """librdkafka's threads in this process (it names them rdk:main, rdk:broker1, ...)."""
    tasks = f"/proc/{os.getpid()}/task"
    count = 0
    for task in os.listdir(tasks):
        with open(f"{tasks}/{task}/comm") as comm:
            count += comm.read().startswith("rdk:")
    return count


def balances_app(bootstrap: str, guarantee: str, name: str, interval_ms: int = 100) -> App:
    app = App(
        name,
        bootstrap_servers=bootstrap,
        processing_guarantee=guarantee,
        commit_interval_ms=interval_ms,
        instance_id="only",
    )
    source = app.topic(f"{name}-in", key="str", value="json")
    out = app.topic(f"{name}-out", key="str", value="json")
    store = app.store("balances")

    def apply(key: str, value: dict[str, Any], state: KeyValueStore) -> list[Any]:
        balance = int(state.get(key, 0)) + int(value["amount"])
        state.put(key, balance)
        return [(key, balance)]

    app.stream(source).process(apply, store).to(out)
    return app


def fill(bootstrap: str, topic: str, records: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(records):
        producer.produce(topic, json.dumps({"amount": 1}).encode(), f"a{i % 7}".encode())
    assert producer.flush(30) == 0


def test_exactly_once_adds_the_changelog_to_the_transaction_before_the_commit(
    bootstrap: str,
) -> None:
    """The first store write of a transaction goes to the changelog at once, so the producer's
    AddPartitionsToTxn for it is not left to the commit (where it would queue behind
    AddOffsetsToTxn). Seen from the coordinator: the open transaction holds the changelog
    partition well before the first commit is due (8 s, inside the 10 s transaction timeout)."""
    name = "early-changelog"
    fill(bootstrap, f"{name}-in", 1)
    worker = balances_app(bootstrap, "exactly_once", name, interval_ms=8_000).worker()
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        topics: set[str] = set()
        with AdminClient(bootstrap) as admin:
            while f"{name}-balances-changelog" not in topics and worker.commits == 0:
                time.sleep(0.05)
                state = admin.describe_transactions([f"{name}-only"]).transaction_states[0]
                topics = {t.topic for t in state.topics}
        assert worker.commits == 0, "the commit came first: the changelog was left to it"
        assert state.transaction_state == "Ongoing"
        assert f"{name}-balances-changelog" in topics
    finally:
        worker.stop()
        thread.join(DEADLINE_S)
    assert worker.committed == 1


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_stopped_worker_releases_its_clients_without_the_cyclic_gc(
    bootstrap: str, guarantee: str
) -> None:
    name = f"worker-{guarantee}"
    fill(bootstrap, f"{name}-in", RECORDS)
    gc.collect()
    before = client_threads()  # other tests' clients, if any still run
    gc.disable()  # a producer-worker cycle would now keep the clients' threads alive
    try:
        worker = balances_app(bootstrap, guarantee, name).worker()
        thread = threading.Thread(target=worker.run)
        thread.start()
        deadline = time.monotonic() + DEADLINE_S
        while worker.committed < RECORDS and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.01)
        worker.stop()
        thread.join(DEADLINE_S)
        assert worker.committed == RECORDS
        assert worker.commits >= 1 and worker.commit_seconds > 0
        del worker, thread
        deadline = time.monotonic() + 5
        while client_threads() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client_threads() == before, "the stopped worker's clients are still running"
    finally:
        gc.enable()
