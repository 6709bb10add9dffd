"""A store restored from its compacted changelog equals the store restored from the same
changelog before compaction: the runtime's restore path (`samsa.streams.restore`, a real
read_committed consumer) against a real broker whose cleaner compacts the changelog, written
as the runtime writes it (transactions, some aborted, deletes as tombstones)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer

from samsa.streams.restore import restore
from samsa.streams.serde import BytesSerde
from samsa.streams.settings import Settings
from samsa.streams.store import KeyValueStore, StoreSpec
from samsa.testing import EmbeddedBroker, topics

CHANGELOG = "app-store-changelog"
KEYS = 40
TRANSACTIONS = 120
DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as started:
        yield started


def restored(broker: EmbeddedBroker) -> tuple[dict[bytes, bytes], int]:
    settings = Settings(application_id="app", bootstrap_servers=broker.bootstrap)
    consumer = Consumer(settings.restore_consumer())
    store = KeyValueStore(StoreSpec("store", BytesSerde(), BytesSerde()), 0)
    try:
        applied = restore(consumer, [(CHANGELOG, store)], 30_000)
    finally:
        consumer.close()
    return dict(store.items()), applied


def test_a_store_restores_the_same_from_its_compacted_changelog(broker: EmbeddedBroker) -> None:
    topics.create_topic(
        broker.bootstrap,
        CHANGELOG,
        1,
        {
            "cleanup.policy": "compact",
            "segment.bytes": "4096",
            "min.cleanable.dirty.ratio": "0.01",
        },
        timeout_s=DEADLINE_S,
    )
    rng = random.Random(19)
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": "app-0", "linger.ms": 5}
    )
    producer.init_transactions(DEADLINE_S)
    expected: dict[bytes, bytes] = {}  # the store the committed transactions make
    committed_records = 0
    for n in range(TRANSACTIONS):
        producer.begin_transaction()
        writes = []
        for _ in range(rng.randint(1, 6)):
            key = b"k%d" % rng.randrange(KEYS)
            value = None if rng.random() < 0.15 else b"v%d" % n
            producer.produce(CHANGELOG, value, key, partition=0)
            writes.append((key, value))
        if rng.random() < 0.2:
            producer.abort_transaction(DEADLINE_S)
            continue
        producer.commit_transaction(DEADLINE_S)
        committed_records += len(writes)
        for key, value in writes:
            if value is None:
                expected.pop(key, None)
            else:
                expected[key] = value
    # Restored while the cleaner works on it, and again once it has compacted it.
    deadline = time.monotonic() + 20
    while True:
        store, applied = restored(broker)
        assert store == expected
        if applied < committed_records / 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert applied < committed_records / 2, (committed_records, applied)
    producer.flush(DEADLINE_S)
