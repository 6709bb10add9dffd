"""`Security(acls=..., super_users=...)`: the secured test broker comes with its ACLs and the
authorizer on, through `embedded_broker` and the pytest marker alike."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.errors import ErrorCode

from samsa.testing import Acl, EmbeddedBroker, Security

pytestmark = pytest.mark.interop
TIMEOUT_S = 30.0
USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}


def delivery_error(config: dict[str, Any], topic: str) -> int | None:
    """Produce one record with a client's `config`: None when delivered, else the error
    code."""
    outcome: list[int | None] = []

    def report(error: KafkaError | None, _: Message) -> None:
        outcome.append(None if error is None else int(error.code()))

    producer = Producer({**config, "message.timeout.ms": 10_000})
    producer.produce(topic, b"v", on_delivery=report)
    producer.flush(TIMEOUT_S)
    return outcome[0]


@pytest.mark.samsa_security(
    listeners=("SASL_PLAINTEXT",),
    users=USERS,
    super_users=["admin"],
    acls=[Acl("User:alice", "Write", topic="orders")],
)
def test_the_fixture_hands_back_a_broker_with_its_acls(samsa_secure_broker: EmbeddedBroker) -> None:
    admin = AdminClient(samsa_secure_broker.clients.confluent("admin"))  # a super user
    admin.create_topics([NewTopic("orders", 1, 1)])["orders"].result(TIMEOUT_S)
    clients = samsa_secure_broker.clients
    assert delivery_error(clients.confluent("alice"), "orders") is None
    assert (
        delivery_error(clients.confluent("bob"), "orders") == ErrorCode.topic_authorization_failed
    )


@pytest.mark.parametrize(
    ("acl", "problem"),
    [
        (Acl("User:alice", "Read"), "give one of topic"),
        (Acl("User:alice", "Read", topic="t", group="g"), "give one of topic"),
        (Acl("User:alice", "Reed", topic="t"), "unknown operation"),
        (Acl("User:alice", "Read", topic="t", pattern="match"), "Invalid patternType MATCH"),
    ],
)
def test_a_mistaken_acl_is_told_at_once(acl: Acl, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Security(users=USERS, acls=[acl])


def test_acls_read_like_kafka_acls() -> None:
    binding = Acl("alice", "IdempotentWrite", cluster=True).binding()
    assert (binding.principal, binding.resource_name, binding.operation.name) == (
        "User:alice",
        "kafka-cluster",
        "IDEMPOTENT_WRITE",
    )
    prefixed = Acl("User:bob", "read", group="billing-", pattern="prefixed", permission="deny")
    assert (prefixed.binding().pattern_type.name, prefixed.binding().permission.name) == (
        "PREFIXED",
        "DENY",
    )
