"""Offsets in the database (Kafka Connect sinks' exactly-once): the writes and the position
commit together, and every assignment seeks to the stored position, not Kafka's."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import confluent_kafka
import pytest

from samsa.effects import TransactionalSink, Tx
from samsa.testing.embedded import EmbeddedBroker

from .conftest import Databases
from .support import consumer, create_topic, produce

DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(str(tmp_path_factory.mktemp("broker"))) as broker:
        yield broker


class Crash(Exception):
    pass


def make_handler(crash_at: int | None) -> Any:
    def handler(tx: Tx, message: Any) -> None:
        n = json.loads(message.value())["n"]
        if n == crash_at:
            raise Crash(f"crash while writing {n}")
        tx.execute("INSERT INTO rows_seen (n) VALUES (?)", (n,))

    return handler


def rows(databases: Databases) -> list[int]:
    with databases.open().transaction() as tx:
        return sorted(int(row[0]) for row in tx.fetchall("SELECT n FROM rows_seen"))


def run_until(sink: TransactionalSink, done: Any) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not done() and time.monotonic() < deadline:
        sink.poll_once()
    assert done(), (
        f"the sink did not finish in time ({sink.applied} applied, {sink.consumer.assignment()})"
    )


def test_a_crash_mid_batch_loses_nothing_and_repeats_nothing(
    broker: EmbeddedBroker, databases: Databases
) -> None:
    topic = create_topic(broker.bootstrap, partitions=2)
    for partition in range(2):
        produce(broker.bootstrap, topic, [{"n": partition * 100 + i} for i in range(25)], partition)
    database = databases.open()
    with database.transaction() as tx:
        tx.execute("CREATE TABLE rows_seen (n INTEGER NOT NULL)")
    expected = sorted(p * 100 + i for p in range(2) for i in range(25))

    first = consumer(broker.bootstrap, "sink")
    sink = TransactionalSink(
        first, database, make_handler(crash_at=110), sink="rows", batch_messages_max=5
    )
    sink.subscribe([topic])
    with pytest.raises(Crash):
        run_until(sink, lambda: False)
    written_before = rows(databases)
    assert 110 not in written_before
    assert written_before  # some batches committed before the crash
    # What reached the database is exactly what the stored offsets cover.
    stored = sink.stored_offsets()
    assert len(written_before) == sum(stored.values())
    # Kafka's own committed offsets say "all done"; the sink must ignore them.
    first.commit(
        offsets=[confluent_kafka.TopicPartition(topic, p, 25) for p in range(2)],
        asynchronous=False,
    )
    first.close()

    second = consumer(broker.bootstrap, "sink")
    restarted = TransactionalSink(second, databases.open(), make_handler(None), sink="rows")
    restarted.subscribe([topic])  # on_assign seeks to the database's offsets
    run_until(restarted, lambda: len(rows(databases)) >= len(expected))
    second.close()
    assert rows(databases) == expected
    assert restarted.stored_offsets() == {(topic, 0): 25, (topic, 1): 25}


def test_manual_assignment_resumes_from_the_database(
    broker: EmbeddedBroker, databases: Databases
) -> None:
    topic = create_topic(broker.bootstrap)
    produce(broker.bootstrap, topic, [{"n": i} for i in range(10)])
    database = databases.open()
    with database.transaction() as tx:
        tx.execute("CREATE TABLE rows_seen (n INTEGER NOT NULL)")
    sink = TransactionalSink(
        consumer(broker.bootstrap, "manual"), database, make_handler(None), sink="manual"
    )
    sink.assign([confluent_kafka.TopicPartition(topic, 0)])
    run_until(sink, lambda: len(rows(databases)) == 10)
    sink.consumer.close()
    produce(broker.bootstrap, topic, [{"n": i} for i in range(10, 15)])
    again = TransactionalSink(
        consumer(broker.bootstrap, "manual"), databases.open(), make_handler(None), sink="manual"
    )
    again.assign([confluent_kafka.TopicPartition(topic, 0)])
    run_until(again, lambda: len(rows(databases)) >= 15)
    again.consumer.close()
    assert rows(databases) == list(range(15))
