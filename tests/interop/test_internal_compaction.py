"""The coordinators' logs are compacted: `__consumer_offsets` keeps the latest commit per
group and partition and loses deleted groups, `__transaction_state` the latest state per
transactional id and loses expired ids; after a restart the coordinators hold exactly what they
held before (real clients, a real broker, small internal segments so they roll)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from kio.records.readers import read_batch

from samsa.testing import EmbeddedBroker

from .support import DEADLINE_S, create_topic
from .test_configs import set_cluster_default

pytestmark = pytest.mark.interop

GROUPS = [f"g{i}" for i in range(4)]
COMMITS_PER_GROUP = 150


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    settings = {
        "offsets.topic.segment.bytes": "4000",
        "transaction.state.log.segment.bytes": "4000",
        "transactional.id.expiration.ms": "1500",
        "transaction.remove.expired.transaction.cleanup.interval.ms": "300",
    }
    with EmbeddedBroker(settings=settings) as started:
        yield started


def records(broker: EmbeddedBroker, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    def read() -> list[tuple[bytes | None, bytes | None]]:
        assert broker.server is not None
        log = broker.server.broker.topics.partition(topic, 0)
        assert log is not None
        found: list[tuple[bytes | None, bytes | None]] = []
        for header, data in log.batches(log.log_start_offset, log.high_watermark):
            if not header.is_control:
                found.extend((r.key, r.value) for r in read_batch(data, 0)[0].records)
        return found

    return broker.call(read)


def wait_for(condition: object, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.1)


def test_coordinator_logs_are_compacted_and_restart_with_the_same_state(
    broker: EmbeddedBroker,
) -> None:
    # Tombstones may go at once once cleaned (Kafka's default keeps them a day).
    set_cluster_default(broker, "log.cleaner.delete.retention.ms", "0")
    create_topic(broker.bootstrap, "src", 2)
    last: dict[tuple[str, int], int] = {}
    for group in GROUPS:
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
        for n in range(COMMITS_PER_GROUP):
            partition = n % 2
            consumer.commit(offsets=[TopicPartition("src", partition, n)], asynchronous=False)
            last[(group, partition)] = n
        consumer.close()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    deleted = GROUPS[-1]
    admin.delete_consumer_groups([deleted], request_timeout=DEADLINE_S)[deleted].result(DEADLINE_S)
    # Transactions: one id that stays, one that goes idle and expires.
    producers = {}
    for transactional_id in ("tx-live", "tx-expiring"):
        producer = Producer(
            {"bootstrap.servers": broker.bootstrap, "transactional.id": transactional_id}
        )
        producer.init_transactions(DEADLINE_S)
        for n in range(20):
            producer.begin_transaction()
            producer.produce("src", b"v%d" % n, b"k", partition=0)
            producer.commit_transaction(DEADLINE_S)
        producers[transactional_id] = producer
    keep_alive = producers["tx-live"]
    # More commits roll the segments, so what is above gets compacted.
    filler = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "filler"})

    def offsets_compacted() -> bool:
        keys = [k for k, _ in records(broker, "__consumer_offsets")]
        return not any(deleted.encode() in (k or b"") for k in keys)

    def txns_compacted() -> bool:
        keys = [k for k, _ in records(broker, "__transaction_state")]
        return b"tx-expiring" not in keys and keys.count(b"tx-live") <= 5

    for n in range(400):
        if offsets_compacted() and txns_compacted():
            break
        # Keep writing, so the internal segments keep rolling and reach the cleaner.
        for _ in range(10):
            filler.commit(offsets=[TopicPartition("src", 0, n)], asynchronous=False)
        keep_alive.begin_transaction()
        keep_alive.produce("src", b"x", b"k", partition=0)
        keep_alive.commit_transaction(DEADLINE_S)
        time.sleep(0.05)
    filler.close()
    wait_for(txns_compacted, "the expired transactional id removed from __transaction_state")
    offsets_log = records(broker, "__consumer_offsets")
    assert not [k for k, _ in offsets_log if deleted.encode() in (k or b"")]
    # The groups' commits lie in cleaned segments now: one record per group and partition is
    # left of their 150 commits each (the filler's latest ones may still be in the active one).
    kept = [k for k, _ in offsets_log if k and b"filler" not in k]
    assert sorted(kept) == sorted(set(kept)) and len(kept) >= 2 * (len(GROUPS) - 1), kept
    broker.restart()
    for group in GROUPS[:-1]:
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
        committed = consumer.committed(
            [TopicPartition("src", 0), TopicPartition("src", 1)], timeout=DEADLINE_S
        )
        assert [tp.offset for tp in committed] == [last[(group, 0)], last[(group, 1)]]
        consumer.close()
    listed = admin.list_consumer_groups(request_timeout=DEADLINE_S).result(DEADLINE_S)
    assert deleted not in {g.group_id for g in listed.valid}

    def txn_ids() -> set[str]:
        assert broker.server is not None
        return set(broker.server.broker.txn.txns)

    assert broker.call(txn_ids) == {"tx-live"}
