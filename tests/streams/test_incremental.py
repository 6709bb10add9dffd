"""Incremental rebalancing (issue 20): with the KIP-848 consumer group protocol
(`group_protocol="consumer"`; the broker's range assignor keeps partition p of every input
topic together), an instance joining takes partitions from the running one without stopping
it: the running instance gives up only the partitions that move, commits its open
transaction for them first (KIP-447: with its current group metadata), and goes on processing
the rest. With the classic (eager) protocol, as a contrast, it gives up everything first."""

from __future__ import annotations

import threading
import time
from typing import Any

import confluent_kafka
import pytest

from samsa.streams import App, KeyValueStore, Worker
from samsa.testing.topics import create_topic

from . import support
from .support import Backend

PARTITIONS = 4
DEADLINE_S = 60.0


def app_for(backend: Backend, name: str, group_protocol: str) -> App:
    # The consumer protocol's session timing is the broker's (librdkafka refuses it here).
    timing = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    app = App(
        name,
        bootstrap_servers=backend.bootstrap,
        group_protocol=group_protocol,
        consumer_config=timing if group_protocol == "classic" else {},
    )
    store = app.store("counts")

    def count(key: str, _value: Any, state: KeyValueStore) -> list[Any]:
        state.put(key, int(state.get(key, 0)) + 1)
        return [(key, state.get(key))]

    source = app.topic(f"{name}-in", key="str", value="json", partitions=PARTITIONS)
    app.stream(source).process(count, store).to(app.topic(f"{name}-out", key="str", value="json"))
    return app


class Feeder(threading.Thread):
    """Produces to every partition of the input until stopped."""

    def __init__(self, backend: Backend, topic: str) -> None:
        super().__init__(daemon=True)
        self.producer = confluent_kafka.Producer({"bootstrap.servers": backend.bootstrap})
        self.topic = topic
        self.stopping = threading.Event()
        self.sent = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            for p in range(PARTITIONS):
                key = f"p{p}-k{self.sent % 10}".encode()  # each key in one partition
                self.producer.produce(self.topic, b"{}", key, partition=p)
                self.sent += 1
            self.producer.poll(0)
            time.sleep(0.01)
        self.producer.flush(30)


def start(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run)
    thread.start()
    return thread


def wait_for(condition: Any, *workers: Worker) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, [w.rebalances for w in workers]
        time.sleep(0.05)


def owned(worker: Worker) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for event, tps in worker.rebalances:
        found = found | set(tps) if event == "assigned" else found - set(tps)
    return found


@pytest.mark.parametrize(
    "group_protocol", ["consumer", pytest.param("classic", marks=pytest.mark.slow)]
)
def test_a_joining_instance_does_not_stop_the_running_one(
    samsa: Backend, group_protocol: str
) -> None:
    name = f"join-{group_protocol}"
    create_topic(samsa.bootstrap, f"{name}-in", PARTITIONS)
    app = app_for(samsa, name, group_protocol)
    feeder = Feeder(samsa, f"{name}-in")
    feeder.start()
    first = app.worker(instance_id="first")
    second = app.worker(instance_id="second")
    threads = [start(first)]
    try:
        wait_for(lambda: len(owned(first)) == PARTITIONS and first.commits > 3, first)
        before = list(first.rebalances)
        threads.append(start(second))
        wait_for(
            lambda: owned(second) and len(owned(first) | owned(second)) == PARTITIONS, first, second
        )
        wait_for(lambda: not owned(first) & owned(second), first, second)
        moved = owned(second)
        during = first.rebalances[len(before) :]
        revoked = {tp for event, tps in during if event == "revoked" for tp in tps}
        if group_protocol == "consumer":
            assert revoked == moved, during  # only what moved; the rest never stopped
            assert not [tps for event, tps in during if event == "assigned" and tps], during
        else:
            assert len(revoked) == PARTITIONS, during  # eager: everything, then some back
        processed = first.processed
        wait_for(lambda: first.processed > processed + 50)
        feeder.stopping.set()
        feeder.join(30)
        wait_for(lambda: first.committed + second.committed == feeder.sent)
    finally:
        feeder.stopping.set()
        for worker in (first, second):
            worker.stop()
        for thread in threads:
            thread.join(DEADLINE_S)
    assert first.aborts == second.aborts == 0
    # Every input counted once: the last count of each key (one input partition each, one
    # output partition each) adds up to the inputs.
    last: dict[bytes, int] = {}
    for _partition, key, value in support.read_all(
        samsa.bootstrap, f"{name}-out", "read_committed", 1.0
    ):
        assert key is not None and value is not None
        last[key] = int(value)
    assert sum(last.values()) == feeder.sent
