"""The attacks of issue 16 with real clients (confluent-kafka) against a broker with ACLs: a
principal without rights cannot fence or abort another application's transactional id, read
the internal topics, or delete a topic; the owner's transaction commits as if nothing
happened. Principals come from `samsa.testing.principals` (by client id)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from kio.schema.errors import ErrorCode

from samsa.testing import EmbeddedBroker
from samsa.testing.principals import as_principals, authorizer_settings

pytestmark = pytest.mark.interop
TIMEOUT_S = 30.0
TXN_ID = "payments-tx"
TOPIC = "payments"


def allow(kind: ResourceType, name: str, op: AclOperation, who: str = "User:alice") -> AclBinding:
    return AclBinding(
        kind, name, ResourcePatternType.LITERAL, who, "*", op, AclPermissionType.ALLOW
    )


@pytest.fixture
def broker(tmp_path: object) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(str(tmp_path) + "/data", authorizer_settings()) as running:
        as_principals(
            running, {"admin": "User:admin", "alice": "User:alice", "mallory": "User:mallory"}
        )
        admin = AdminClient({"bootstrap.servers": running.bootstrap, "client.id": "admin"})
        for future in admin.create_topics([NewTopic(TOPIC, 1, 1)]).values():
            future.result(TIMEOUT_S)
        acls = [
            allow(ResourceType.TRANSACTIONAL_ID, TXN_ID, AclOperation.WRITE),
            allow(ResourceType.TOPIC, TOPIC, AclOperation.WRITE),
            allow(ResourceType.TOPIC, TOPIC, AclOperation.READ),
            allow(ResourceType.TOPIC, TOPIC, AclOperation.READ, "User:mallory"),
        ]
        for future in admin.create_acls(acls, request_timeout=TIMEOUT_S).values():
            future.result()
        yield running


def producer(broker: EmbeddedBroker, client: str, **config: Any) -> Producer:
    return Producer({"bootstrap.servers": broker.bootstrap, "client.id": client, **config})


def first_outcome(consumer: Consumer) -> bytes | int | None:
    """The first record's value or the first error about the assigned partition; the group's
    coordinator lookup is refused too (no Describe on the group) and passed over."""
    try:
        for _ in range(int(TIMEOUT_S)):
            message = consumer.poll(1.0)
            if message is None:
                continue
            error = message.error()
            if error is None:
                value: bytes | None = message.value()
                return value
            if error.code() != ErrorCode.group_authorization_failed:
                return int(error.code())
        return None
    finally:
        consumer.close()


def test_another_principal_cannot_fence_or_end_the_transaction(broker: EmbeddedBroker) -> None:
    owner = producer(broker, "alice", **{"transactional.id": TXN_ID})
    owner.init_transactions(TIMEOUT_S)
    owner.begin_transaction()
    owner.produce(TOPIC, b"charge-1")
    owner.flush(TIMEOUT_S)
    intruder = producer(broker, "mallory", **{"transactional.id": TXN_ID})
    with pytest.raises(KafkaException) as refused:
        intruder.init_transactions(TIMEOUT_S)
    error: KafkaError = refused.value.args[0]
    assert error.code() == ErrorCode.transactional_id_authorization_failed
    owner.commit_transaction(TIMEOUT_S)  # not fenced
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "client.id": "alice",
            "group.id": "unused",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(TOPIC, 0, 0)])
    assert first_outcome(consumer) == b"charge-1"


@pytest.mark.parametrize("internal", ["__consumer_offsets", "__transaction_state"])
def test_internal_topics_cannot_be_read(broker: EmbeddedBroker, internal: str) -> None:
    # Describe only, so the client finds the partition and its fetch is what is refused.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "client.id": "admin"})
    describe = allow(ResourceType.TOPIC, internal, AclOperation.DESCRIBE, "User:mallory")
    for future in admin.create_acls([describe], request_timeout=TIMEOUT_S).values():
        future.result()
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "client.id": "mallory", "group.id": "g"}
    )
    consumer.assign([TopicPartition(internal, 0, 0)])
    assert first_outcome(consumer) == ErrorCode.topic_authorization_failed


def test_topics_cannot_be_deleted_without_delete(broker: EmbeddedBroker) -> None:
    intruder = AdminClient({"bootstrap.servers": broker.bootstrap, "client.id": "mallory"})
    with pytest.raises(KafkaException) as refused:
        intruder.delete_topics([TOPIC], request_timeout=TIMEOUT_S)[TOPIC].result()
    assert refused.value.args[0].code() == ErrorCode.topic_authorization_failed
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "client.id": "admin"})
    assert TOPIC in admin.list_topics(timeout=TIMEOUT_S).topics
