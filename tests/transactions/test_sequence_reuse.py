"""A transaction whose sequences repeat an aborted transaction's is not lost (librdkafka).

The scenario `samsa verify` found (seed 1, a fault every 2 s), made deterministic with the chaos
proxy: transaction B's batch reaches the broker and is written, its response is swallowed and
the connection cut, and the broker goes away before librdkafka can retry. The application
aborts B; librdkafka purges B's records as if never sent ("Purged in queue") and gives the
next transaction, C, the same epoch and the same sequences. Kafka's duplicate rule would answer
C's batch with B's offsets and write nothing, and C would commit without its records. samsa
refuses the reused sequences with UNKNOWN_PRODUCER_ID: librdkafka aborts C, bumps its epoch,
and the application's retry of C commits C's records, once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import confluent_kafka
import pytest
from confluent_kafka import KafkaError, KafkaException

from samsa.chaos import proxied_broker
from samsa.protocol.apis import ApiKey
from samsa.protocol.batch import iter_batches
from samsa.testing.topics import create_topics

from .support import read_confluent

pytestmark = pytest.mark.interop

TOPIC = "reuse"
RECORDS = 3
BROKER_AWAY_S = 1.5


def produce(producer: confluent_kafka.Producer, label: str, reports: list[Any]) -> None:
    for i in range(RECORDS):
        producer.produce(
            TOPIC,
            f"{label}{i}".encode(),
            partition=0,
            on_delivery=lambda error, _m: reports.append(error),
        )


def test_reused_sequences_after_an_abort_are_not_taken_for_retries() -> None:
    with proxied_broker() as (broker, proxy):
        create_topics(proxy.bootstrap, {TOPIC: 1})
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": proxy.bootstrap,
                "transactional.id": "reuse-tx",
                "linger.ms": 0,
                "log_level": 0,
            }
        )
        producer.init_transactions(30)
        producer.begin_transaction()
        producer.produce(TOPIC, b"A0", partition=0)
        producer.commit_transaction(30)

        # B: written by the broker, answered to nobody; then the broker is away for a while.
        b_reports: list[Any] = []
        producer.begin_transaction()
        proxy.drop_next_response(ApiKey.PRODUCE)
        produce(producer, "B", b_reports)
        deadline = time.monotonic() + 10
        while proxy.stats().dropped_responses < 1:
            assert time.monotonic() < deadline, "B's produce never reached the broker"
            producer.poll(0.005)
        broker.stop()
        restart = threading.Timer(BROKER_AWAY_S, broker.start)
        restart.start()
        producer.abort_transaction(60)
        restart.join()
        assert [e.code() if e else None for e in b_reports] == [KafkaError._PURGE_QUEUE] * RECORDS

        # C, retried as an application does after an abortable error.
        refused = []
        for _attempt in range(3):
            c_reports: list[Any] = []
            producer.begin_transaction()
            produce(producer, "C", c_reports)
            try:
                producer.commit_transaction(30)
                break
            except KafkaException as exc:
                error = exc.args[0]
                assert error.txn_requires_abort(), f"not abortable: {error}"
                refused.append(error.code())
                producer.abort_transaction(30)
        else:
            pytest.fail(f"C never committed; refusals {refused}")

        assert refused == [KafkaError.UNKNOWN_PRODUCER_ID]  # the reuse was caught, once
        assert broker.server is not None
        log = broker.server.broker.topics.partition(TOPIC, 0)
        assert log is not None
        ends = {(TOPIC, 0): log.log_end_offset}
        committed = read_confluent(broker.bootstrap, [(TOPIC, 0)], "read_committed", ends)
        assert committed[(TOPIC, 0)] == [b"A0", b"C0", b"C1", b"C2"]
        data = log.read(0, 1 << 20, log.log_end_offset, True)
        epochs = [h.producer_epoch for _, h in iter_batches(data) if not h.is_control]
        assert epochs == [0, 0, 1]  # A, B (aborted), C after the epoch bump
