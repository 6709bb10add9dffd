"""The kill -9 campaign of test_faults.py run on the applications of issue 20
(samsa/streams/examples/pipelines.py): a windowed aggregation, a group_by pipeline (through a
repartition topic) and a stream-table join. Under exactly_once each one's output equals what a
failure-free pass gives; under at_least_once the same faults show duplicates or wrong totals.
The default suite runs one compact exactly_once case of each; the at_least_once contrasts and
the longer campaigns are slow tests (--run-slow)."""

from __future__ import annotations

import json
import time
from typing import Any

import confluent_kafka
import pytest

from samsa.streams import StreamsError
from samsa.streams.examples import pipelines
from samsa.testing.topics import create_topic, placed

from . import support
from .support import Backend
from .test_faults import run_with_faults
from .test_units import FakeContext

SEED = 20261206
# The compact cases keep their stores on disk (--state-dir): exactly_once must discard them
# after each kill -9 and restore from the changelog, and use their checkpoints after a clean
# hand-over.
COMPACT = {
    "records": 1600,
    "rate_per_s": 400.0,
    "workers_n": 2,
    "kill_every_s": 1.0,
    "state_dir": True,
}
CAMPAIGN = {"records": 6000, "rate_per_s": 400.0, "workers_n": 3, "kill_every_s": 3.0}
ACCOUNTS = 25  # make_inputs' accounts in test_faults


def disordered(input_id: int) -> int:
    """Record timestamps 10 ms apart, most of them up to 240 ms early (within the windows'
    200 ms grace or not, depending on how far their window's end is), every 13th 1.5 s early
    (late: past its window's end plus grace)."""
    early = 1500 if input_id % 13 == 0 else (input_id % 7) * 40
    return BASE_MS + input_id * 10 - early


BASE_MS = int(time.time() * 1000) - 3_600_000


def read_input(bootstrap: str) -> dict[int, list[tuple[str, Any, int]]]:
    """The input as the workers saw it: per partition, (key, value, timestamp) in order."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reference-{time.monotonic_ns()}",
            "enable.partition.eof": True,
            "log_level": 0,
        }
    )
    partitions = consumer.list_topics(support.INPUT, timeout=10).topics[support.INPUT].partitions
    consumer.assign(
        [
            confluent_kafka.TopicPartition(support.INPUT, p, confluent_kafka.OFFSET_BEGINNING)
            for p in partitions
        ]
    )
    found: dict[int, list[tuple[str, Any, int]]] = {p: [] for p in partitions}
    pending = set(partitions)
    try:
        while pending:
            for m in consumer.consume(1000, 1.0):
                partition = placed(m)[0]
                if m.error() is not None:
                    pending.discard(partition)  # the partition's end
                    continue
                key, value = m.key(), m.value()
                assert key is not None and value is not None
                found[partition].append((key.decode(), json.loads(value), m.timestamp()[1]))
    finally:
        consumer.close()
    return found


def by_key(records: list[tuple[int, bytes | None, bytes | None]]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for _p, key, value in records:
        assert key is not None and value is not None
        found.setdefault(key.decode(), []).append(json.loads(value))
    return found


def windowed_reference(bootstrap: str) -> dict[str, list[Any]]:
    """A failure-free pass: the topology itself, fed each input partition in order; per
    output topic and key, the outputs."""
    root = pipelines.windowed._sources[support.INPUT][1]
    want: dict[str, list[Any]] = {}
    for records in read_input(bootstrap).values():
        ctx = FakeContext()
        for key, value, timestamp in records:
            ctx.timestamp_ms = timestamp
            root.push(ctx, key, value)
        for topic, key, value in ctx.emitted:
            want.setdefault(f"{topic}/{key}", []).append(value)
    return want


def faulted(stats: Any, size: dict[str, Any]) -> None:
    """The run saw faults (else it would show nothing about them): a compact run at least
    one, a campaign at least five."""
    minimum = 1 if size is COMPACT else 5
    assert stats["harness_kills"] + stats["self_crashes"] >= minimum, stats


def run_windowed(backend: Backend, guarantee: str, size: dict[str, Any]) -> tuple[Any, Any]:
    stats = run_with_faults(
        backend,
        guarantee,
        SEED,
        app="samsa.streams.examples.pipelines:windowed",
        group="windowed",
        timestamp=disordered,
        **size,
    )
    faulted(stats, size)
    got: dict[str, list[Any]] = {}
    for topic in ("account-windows", "account-max"):  # every update; final results only
        found = by_key(support.read_all(backend.bootstrap, topic, "read_committed"))
        got.update({f"{topic}/{key}": outputs for key, outputs in found.items()})
    return got, windowed_reference(backend.bootstrap)


def check_campaign(got: dict[str, Any], want: dict[str, Any], guarantee: str) -> None:
    """exactly_once: the failure-free outputs; at_least_once: more than those (repeats)."""
    if guarantee == "exactly_once":
        assert got == want
    else:
        extra = sum(map(len, got.values())) - sum(map(len, want.values()))
        print(f"at_least_once: {extra} extra outputs")
        assert got != want and extra > 0


def test_windowed_aggregation_exactly_once_under_kill9(samsa: Backend) -> None:
    got, want = run_windowed(samsa, "exactly_once", COMPACT)
    assert got == want
    updates = sum(len(v) for k, v in want.items() if k.startswith("account-windows/"))
    assert updates < 1600, "no late record dropped"
    assert any(k.startswith("account-max/") for k in want), "no window closed"


@pytest.mark.slow
@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_windowed_aggregation_campaign(samsa: Backend, guarantee: str) -> None:
    check_campaign(*run_windowed(samsa, guarantee, CAMPAIGN), guarantee)


def regrouped_check(backend: Backend, inputs: list[tuple[str, dict[str, int]]]) -> list[str]:
    """What is wrong with the region totals: each input once, each total its predecessor
    plus the input's amount (so nothing applied twice), the last one the region's sum."""
    amounts = {value["id"]: value["amount"] for _account, value in inputs}
    sums: dict[str, int] = {}
    for account, value in inputs:
        name = pipelines.region(account, value)
        sums[name] = sums.get(name, 0) + value["amount"]
    got = by_key(support.read_all(backend.bootstrap, "region-totals", "read_committed"))
    ids = [o["id"] for outputs in got.values() for o in outputs]
    problems = []
    if sorted(ids) != sorted(amounts):
        problems.append(f"{len(ids)} outputs, {len(set(ids))} distinct, {len(amounts)} inputs")
    for name, outputs in got.items():
        total = 0
        for output in outputs:
            total += amounts[output["id"]]
            if output["total"] != total:
                problems.append(f"{name}: total {output['total']} after id {output['id']}")
                break
        if outputs[-1]["total"] != sums[name]:
            problems.append(f"{name}: final {outputs[-1]['total']}, sum {sums[name]}")
    return problems


def run_regrouped(backend: Backend, guarantee: str, size: dict[str, Any]) -> list[str]:
    records = int(size["records"])

    def caught_up() -> bool:
        found = support.read_all(backend.bootstrap, "region-totals", "read_committed", 0.5)
        return len(found) >= records

    stats = run_with_faults(
        backend,
        guarantee,
        SEED,
        app="samsa.streams.examples.pipelines:regrouped",
        group="regrouped",
        caught_up=caught_up,
        **size,
    )
    faulted(stats, size)
    return regrouped_check(backend, stats["inputs"])


def test_group_by_pipeline_exactly_once_under_kill9(samsa: Backend) -> None:
    assert run_regrouped(samsa, "exactly_once", COMPACT) == []


@pytest.mark.slow
@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_group_by_pipeline_campaign(samsa: Backend, guarantee: str) -> None:
    problems = run_regrouped(samsa, guarantee, CAMPAIGN)
    print(guarantee, problems[:5])
    assert (problems == []) == (guarantee == "exactly_once")


def owner(account: str) -> str:
    return f"owner of {account}"


def run_enriched(backend: Backend, guarantee: str, size: dict[str, Any]) -> tuple[Any, Any]:
    create_topic(backend.bootstrap, "accounts", backend.partitions, {"cleanup.policy": "compact"})
    producer = confluent_kafka.Producer({"bootstrap.servers": backend.bootstrap})
    for n in range(ACCOUNTS):
        account = f"acct-{n}"
        producer.produce("accounts", json.dumps({"owner": owner(account)}), account)
    assert producer.flush(30) == 0
    stats = run_with_faults(
        backend,
        guarantee,
        SEED,
        app="samsa.streams.examples.pipelines:enriched",
        group="enriched",
        **size,
    )
    faulted(stats, size)
    want: dict[str, list[Any]] = {}
    for account, value in stats["inputs"]:
        want.setdefault(account, []).append({**value, "owner": owner(account)})
    got = by_key(support.read_all(backend.bootstrap, "owned-transactions", "read_committed"))
    return got, want


def test_stream_table_join_exactly_once_under_kill9(samsa: Backend) -> None:
    got, want = run_enriched(samsa, "exactly_once", COMPACT)
    assert got == want


@pytest.mark.slow
@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_stream_table_join_campaign(samsa: Backend, guarantee: str) -> None:
    check_campaign(*run_enriched(samsa, guarantee, CAMPAIGN), guarantee)


def test_a_join_of_topics_not_co_partitioned_is_refused_at_start(samsa: Backend) -> None:
    create_topic(samsa.bootstrap, "accounts", 2)
    samsa.create_input()  # 3 partitions
    worker = pipelines.enriched.worker(bootstrap_servers=samsa.bootstrap, instance_id="x")
    with pytest.raises(StreamsError, match=r"transactions \(3 partitions\) and accounts \(2"):
        worker.run()
