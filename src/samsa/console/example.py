"""A log worth looking at: every kind of batch the console tells apart, written by real clients.

`build(bootstrap)` writes, with confluent-kafka, to topic `orders` (one partition) and `audit`:

- plain records (no idempotence) and idempotent ones;
- a committed transaction (`committer`) over both topics, with the offsets of group `copier`
  committed inside it (send_offsets_to_transaction);
- an aborted transaction (`aborter`);
- a fenced producer: `zombie` writes, then a new producer with the same transactional id
  starts, so the coordinator aborts the zombie's transaction with a bumped epoch;
- a consumer group `billing` with a live member that committed offset 2 (so it lags);
- last, an open transaction (`open`) over both topics that holds the LSO.

The open transaction's producer and the group's consumer stay alive in the returned `Example`
until `close()`. The console's tests and `samsa.console.screenshots` use it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import confluent_kafka

from samsa.testing.topics import create_topics

ORDERS, AUDIT = "orders", "audit"
GROUP, TXN_GROUP = "billing", "copier"
TIMEOUT_S = 15.0
QUIET = {"log_level": 0}
OPEN_TXN_TIMEOUT_MS = 600_000  # longer than any test or screenshot run


@dataclass
class Example:
    bootstrap: str
    open_producer: confluent_kafka.Producer
    member: confluent_kafka.Consumer
    offsets: dict[str, int] = field(default_factory=dict)  # what was written where (names)

    def commit_open(self) -> None:
        self.open_producer.commit_transaction(TIMEOUT_S)

    def close(self) -> None:
        self.member.close()
        self.open_producer.flush(TIMEOUT_S)


def producer(bootstrap: str, **config: Any) -> confluent_kafka.Producer:
    return confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 0, **QUIET, **config}
    )


def _send(p: confluent_kafka.Producer, topic: str, *values: str) -> None:
    for value in values:
        p.produce(topic, value.encode(), key=value.split("-")[0].encode())
    if p.flush(TIMEOUT_S):
        raise RuntimeError(f"records to {topic} not delivered")


def transactional(bootstrap: str, transactional_id: str, **config: Any) -> confluent_kafka.Producer:
    p = producer(bootstrap, **{"transactional.id": transactional_id, **config})
    p.init_transactions(TIMEOUT_S)
    return p


def build(bootstrap: str) -> Example:
    create_topics(bootstrap, {ORDERS: 1, AUDIT: 1})
    _send(
        producer(bootstrap, **{"enable.idempotence": False, "acks": 1}),
        ORDERS,
        "plain-1",
        "plain-2",
    )
    _send(producer(bootstrap, **{"enable.idempotence": True}), ORDERS, "idem-1", "idem-2", "idem-3")

    committer = transactional(bootstrap, "committer")
    committer.begin_transaction()
    _send(committer, ORDERS, "paid-1", "paid-2", "paid-3")
    _send(committer, AUDIT, "paid-audit")
    copier = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": TXN_GROUP, **QUIET}
    )
    committer.send_offsets_to_transaction(
        [confluent_kafka.TopicPartition(ORDERS, 0, 5)],
        copier.consumer_group_metadata(),
        TIMEOUT_S,
    )
    copier.close()
    committer.commit_transaction(TIMEOUT_S)

    aborter = transactional(bootstrap, "aborter")
    aborter.begin_transaction()
    _send(aborter, ORDERS, "refund-1", "refund-2")
    aborter.abort_transaction(TIMEOUT_S)

    zombie = transactional(bootstrap, "zombie")
    zombie.begin_transaction()
    _send(zombie, ORDERS, "zombie-1", "zombie-2")
    successor = transactional(bootstrap, "zombie")  # fences the zombie: its txn is aborted
    successor.begin_transaction()
    _send(successor, ORDERS, "successor-1")
    successor.commit_transaction(TIMEOUT_S)

    member = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "client.id": "billing-1",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **QUIET,
        }
    )
    member.subscribe([ORDERS])
    deadline = time.monotonic() + TIMEOUT_S
    while not member.assignment():
        if time.monotonic() > deadline:
            raise RuntimeError(f"group {GROUP} did not assign {ORDERS} in time")
        member.poll(0.1)
    member.commit(offsets=[confluent_kafka.TopicPartition(ORDERS, 0, 2)], asynchronous=False)

    open_producer = transactional(
        bootstrap, "open", **{"transaction.timeout.ms": OPEN_TXN_TIMEOUT_MS}
    )
    open_producer.begin_transaction()
    _send(open_producer, ORDERS, "pending-1", "pending-2")
    _send(open_producer, AUDIT, "pending-audit")
    return Example(bootstrap, open_producer, member)
