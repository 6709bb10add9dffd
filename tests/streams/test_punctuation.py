"""Punctuation (issue 20) with in-process workers against one embedded samsa broker: a
stream-time punctuator fires at each multiple of its interval that the records' timestamps
cross, with the task's stores; a wall-clock one fires with no records at all, and its outputs
and store writes are committed in a transaction of their own."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import confluent_kafka
import pytest

from samsa.streams import App, KeyValueStore
from samsa.testing.embedded import embedded_broker
from samsa.testing.topics import create_topic

from .test_errors import read, run_until


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    with embedded_broker(settings={"num.partitions": "1"}) as broker:
        yield broker.bootstrap


def counting_app(bootstrap: str, name: str, time_kind: str, every_ms: int) -> App:
    app = App(name, bootstrap_servers=bootstrap, instance_id="one")
    counts = app.store("counts")

    def count(key: str, _value: Any, state: KeyValueStore) -> None:
        state.put(key, int(state.get(key, 0)) + 1)

    def report(now_ms: int, state: KeyValueStore) -> list[Any]:
        found = dict(state.items())
        for key in found:
            state.delete(key)  # each report counts what came since the last one
        return [("report", {"at": now_ms, "counts": found})]

    source = app.topic(f"{name}-in", key="str", value="json")
    app.stream(source).process(count, counts)
    out = app.topic(f"{name}-out", key="str", value="json")
    app.punctuate(report, every_ms=every_ms, stores=[counts], to=out, time=time_kind)
    return app


def reports(bootstrap: str, topic: str) -> list[Any]:
    return [json.loads(m.value()) for m in read(bootstrap, topic)]


def test_stream_time_punctuation_follows_the_record_timestamps(bootstrap: str) -> None:
    name = "stream-time"
    create_topic(bootstrap, f"{name}-in", 1)
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    base = (int(time.time() * 1000) // 1000 - 600) * 1000  # a whole second, 10 minutes ago
    stamps = [base + 100, base + 900, base + 1000, base + 1500, base + 3200, base + 3300]
    for n, stamp in enumerate(stamps):
        producer.produce(f"{name}-in", b"{}", f"k{n % 2}".encode(), timestamp=stamp)
    assert producer.flush(30) == 0
    worker = counting_app(bootstrap, name, "stream_time", 1000).worker()
    assert run_until(worker, lambda: worker.committed == len(stamps)) is None
    # Called when stream time reaches base+1000 (the record at base+1000 is counted first)
    # and base+3200 (one call for the two intervals jumped over); base+4000 is not reached.
    assert reports(bootstrap, f"{name}-out") == [
        {"at": base + 1000, "counts": {"k0": 2, "k1": 1}},
        {"at": base + 3200, "counts": {"k0": 1, "k1": 1}},
    ]


def test_wall_clock_punctuation_commits_without_records(bootstrap: str) -> None:
    name = "wall-clock"
    create_topic(bootstrap, f"{name}-in", 1)
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    for n in range(5):
        producer.produce(f"{name}-in", b"{}", f"k{n % 2}".encode())
    assert producer.flush(30) == 0
    worker = counting_app(bootstrap, name, "wall_clock_time", 200).worker()
    assigned_at: list[float] = []

    def ran_a_while() -> bool:
        """1.2 s of 200 ms intervals after the task was assigned."""
        if not assigned_at and worker.rebalances:
            assigned_at.append(time.monotonic())
        return bool(assigned_at) and time.monotonic() - assigned_at[0] > 1.2

    assert run_until(worker, ran_a_while) is None
    found = reports(bootstrap, f"{name}-out")
    assert len(found) >= 4, found
    # Called with the time of the call, once in each 200 ms interval.
    intervals = [r["at"] // 200 for r in found]
    assert intervals == sorted(set(intervals))
    merged: dict[str, int] = {}
    for report in found:
        for key, n in report["counts"].items():
            merged[key] = merged.get(key, 0) + n
    assert merged == {"k0": 3, "k1": 2}
    # The store was emptied by committed punctuations: its changelog's last word on each key
    # is a tombstone.
    latest = {m.key(): m.value() for m in read(bootstrap, f"{name}-counts-changelog")}
    assert latest == {b"k0": None, b"k1": None}
