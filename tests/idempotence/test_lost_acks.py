"""Idempotent producers of three clients through lost acknowledgments and cut connections.

Each client writes N unique records (value i to partition i % 3) through a chaos proxy that, on a
seeded schedule, drops Produce responses after the broker wrote the batch and cuts connections
before or after forwarding a Produce request. With idempotence the log must hold every record
exactly once, in send order per partition, at the offset the client was told; the same run with
idempotence off (acks=all, retries) must show duplicates, which proves the faults really made the
clients retry batches the broker had already written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from samsa.chaos import FaultStats, Schedule, proxied_broker
from samsa.demo.guarantees import PARTITIONS, ProduceResult, read_topic, record_values
from samsa.protocol.apis import ApiKey
from samsa.testing.topics import create_topic

from .clients import CLIENTS

RECORDS = 3000
SEED = 20_240_503
TOPIC = "idempotence"
DROP_RESPONSE_PROBABILITY = 0.05
CUT_PROBABILITY = 0.05


@dataclass
class Run:
    seed: int
    values: list[bytes]
    result: ProduceResult
    log: dict[int, list[bytes]]
    stats: FaultStats

    def describe(self) -> str:
        return (
            f"seed {self.seed}; faults: dropped responses {self.stats.dropped_responses}, "
            f"cuts {self.stats.cuts}"
        )


def run_through_faults(
    client: str, idempotent: bool, seed: int = SEED, records: int = RECORDS
) -> Run:
    values = record_values(records, prefix=client)
    schedule = Schedule(
        seed,
        drop_response_probability=DROP_RESPONSE_PROBABILITY,
        cut_probability=CUT_PROBABILITY,
        api_keys=[int(ApiKey.PRODUCE)],
    )
    with proxied_broker() as (_broker, proxy):
        create_topic(proxy.bootstrap, TOPIC, PARTITIONS)
        proxy.set_schedule(schedule)
        try:
            result = CLIENTS[client](proxy.bootstrap, TOPIC, values, idempotent)
        finally:
            proxy.set_schedule(None)
        stats = proxy.stats()
        log = read_topic(proxy.bootstrap, TOPIC)
    return Run(seed, values, result, log, stats)


def sent_order(values: Sequence[bytes], partition: int) -> list[bytes]:
    return [value for index, value in enumerate(values) if index % PARTITIONS == partition]


def duplicates(log: dict[int, list[bytes]]) -> int:
    copies = Counter(value for values in log.values() for value in values)
    return sum(count - 1 for count in copies.values())


def assert_faults_bit(run: Run) -> None:
    # Both kinds of fault happened, or the run proves nothing.
    assert run.stats.dropped_responses > 0, run.describe()
    assert run.stats.cuts > 0, run.describe()


def assert_all_acknowledged(run: Run) -> None:
    result = run.result
    assert not result.fatal_errors, f"fatal error: {result.fatal_errors[:3]}; {run.describe()}"
    assert not result.delivery_errors, (
        f"{len(result.delivery_errors)} failed deliveries, first {result.delivery_errors[:3]}; "
        f"{run.describe()}"
    )
    assert result.unflushed == 0, run.describe()
    assert len(result.acknowledged) == len(run.values), run.describe()


def assert_exactly_once_in_order(run: Run) -> None:
    for partition in range(PARTITIONS):
        stored = run.log[partition]
        expected = sent_order(run.values, partition)
        assert len(stored) == len(expected) and stored == expected, (
            f"partition {partition}: {len(stored)} records stored, {len(expected)} sent, "
            f"{duplicates({partition: stored})} duplicates, "
            f"{len(set(expected) - set(stored))} missing; {run.describe()}"
        )
        # Each acknowledgment, including one answered for a recognised retry, names the offset
        # where the record really is.
        wrong = [
            (value, run.result.acknowledged[value], offset)
            for offset, value in enumerate(stored)
            if run.result.acknowledged[value] != (partition, offset)
        ]
        assert not wrong, f"acknowledged at the wrong offset: {wrong[:3]}; {run.describe()}"


@pytest.mark.parametrize("client", list(CLIENTS))
def test_idempotent_producer_writes_each_record_once_in_order(client: str) -> None:
    run = run_through_faults(client, idempotent=True)
    assert_faults_bit(run)
    assert_all_acknowledged(run)
    assert_exactly_once_in_order(run)


# kafka-python's run is the slowest (about 30 s); the other clients show the same by default.
@pytest.mark.parametrize(
    "client",
    [pytest.param(c, marks=pytest.mark.slow) if c == "kafka-python" else c for c in CLIENTS],
)
def test_without_idempotence_the_same_faults_duplicate(client: str) -> None:
    run = run_through_faults(client, idempotent=False)
    assert_faults_bit(run)
    assert_all_acknowledged(run)
    # At least once: nothing acknowledged is missing...
    stored = {value for values in run.log.values() for value in values}
    assert stored == set(run.values), run.describe()
    # ... but retried batches were written again.
    print(f"{client}: {duplicates(run.log)} duplicates; {run.describe()}")
    assert duplicates(run.log) > 0, run.describe()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 9))
@pytest.mark.parametrize("client", list(CLIENTS))
def test_idempotent_soak(client: str, seed: int) -> None:
    run = run_through_faults(client, idempotent=True, seed=seed, records=10_000)
    assert_faults_bit(run)
    assert_all_acknowledged(run)
    assert_exactly_once_in_order(run)
