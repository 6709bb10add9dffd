"""The attacks of issue 16 with confluent-kafka clients over SASL_SSL, as real users: a user
without the rights cannot fence another application's transactional id, end its transaction
or commit offsets into it, read the internal topics, or delete a topic; the owner's transaction
commits as if nothing happened. With the right ACLs the same clients work: a consumer in a
group, a transactional producer sending the group's offsets. The broker is the one-line
`Security(users=..., acls=..., super_users=...)`."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.describe_transactions.v0.request import DescribeTransactionsRequest
from kio.schema.end_txn.v4.request import EndTxnRequest
from kio.schema.errors import ErrorCode
from kio.schema.types import GroupId, ProducerId, TransactionalId
from kio.static.primitive import i16

from samsa.testing import Acl, EmbeddedBroker, Security
from samsa.testing.wire import Conn
from security.test_acl_clients import first_outcome
from security.test_acl_matrix import error_codes, txn_offsets_commit

pytestmark = pytest.mark.interop
TIMEOUT_S = 30.0
TXN_ID = "payments-tx"
TOPIC = "payments"
GROUP = "payments-app"
INTERNAL = ("__consumer_offsets", "__transaction_state")
USERS = {"admin": "admin-secret", "alice": "alice-secret", "mallory": "mallory-secret"}
SECURITY = Security(
    listeners=("SASL_SSL",),
    users=USERS,
    super_users=["User:admin"],
    acls=[
        Acl("User:alice", "Write", transactional_id=TXN_ID),
        Acl("User:alice", "Write", topic=TOPIC),
        Acl("User:alice", "Read", topic=TOPIC),
        Acl("User:alice", "Read", group=GROUP),
        # mallory may read the topic and join the group: what she lacks is the transactional id
        Acl("User:mallory", "Read", topic=TOPIC),
        Acl("User:mallory", "Read", group=GROUP),
        # and Describe only on the internal topics, so her fetch is what is refused
        *(Acl("User:mallory", "Describe", topic=name) for name in INTERNAL),
    ],
)


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(security=SECURITY) as running:
        admin = AdminClient(running.clients.confluent("admin"))
        admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(TIMEOUT_S)
        yield running


def producer(broker: EmbeddedBroker, user: str) -> Producer:
    return Producer({**broker.clients.confluent(user), "transactional.id": TXN_ID})


def consumer(broker: EmbeddedBroker, user: str) -> Consumer:
    return Consumer(
        {
            **broker.clients.confluent(user),
            "group.id": GROUP,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )


def open_transaction(broker: EmbeddedBroker) -> Producer:
    owner = producer(broker, "alice")
    owner.init_transactions(TIMEOUT_S)
    owner.begin_transaction()
    owner.produce(TOPIC, b"charge-1")
    owner.flush(TIMEOUT_S)
    return owner


def committed_value(broker: EmbeddedBroker) -> bytes | int | None:
    reader = consumer(broker, "alice")
    reader.assign([TopicPartition(TOPIC, 0, 0)])
    return first_outcome(reader)


def conn(broker: EmbeddedBroker, user: str) -> Conn:
    """A raw connection over SASL_SSL, authenticated as `user`."""
    host, port = broker.clients.bootstrap().rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
    tls = broker.clients.ssl_context().wrap_socket(raw, server_hostname="localhost")
    opened = Conn.over(tls)
    opened.authenticate("SCRAM-SHA-512", user, USERS[user])
    return opened


def test_another_user_cannot_fence_the_transaction(broker: EmbeddedBroker) -> None:
    owner = open_transaction(broker)
    with pytest.raises(KafkaException) as refused:
        producer(broker, "mallory").init_transactions(TIMEOUT_S)
    error: KafkaError = refused.value.args[0]
    assert error.code() == ErrorCode.transactional_id_authorization_failed
    owner.commit_transaction(TIMEOUT_S)  # not fenced
    assert committed_value(broker) == b"charge-1"


@pytest.mark.parametrize("committed", [True, False], ids=["commit", "abort"])
def test_another_user_cannot_end_the_transaction_or_commit_offsets_into_it(
    broker: EmbeddedBroker, committed: bool
) -> None:
    owner = open_transaction(broker)
    with conn(broker, "admin") as admin:
        described = admin.request(
            DescribeTransactionsRequest(transactional_ids=(TransactionalId(TXN_ID),))
        )
    state = described.transaction_states[0]
    with conn(broker, "mallory") as attacker:
        ended = attacker.request(
            EndTxnRequest(
                transactional_id=TransactionalId(TXN_ID),
                producer_id=ProducerId(state.producer_id),
                producer_epoch=i16(state.producer_epoch),
                committed=committed,
            )
        )
        offsets = dataclasses.replace(
            txn_offsets_commit(TOPIC),
            transactional_id=TransactionalId(TXN_ID),
            group_id=GroupId(GROUP),
            producer_id=ProducerId(state.producer_id),
            producer_epoch=i16(state.producer_epoch),
        )
        offset_codes = error_codes(attacker.request(offsets))
    assert ended.error_code == ErrorCode.transactional_id_authorization_failed
    assert offset_codes == {ErrorCode.transactional_id_authorization_failed}
    owner.commit_transaction(TIMEOUT_S)  # still the owner's to end
    assert committed_value(broker) == b"charge-1"


@pytest.mark.parametrize("internal", INTERNAL)
def test_the_internal_topics_cannot_be_read(broker: EmbeddedBroker, internal: str) -> None:
    reader = consumer(broker, "mallory")
    reader.assign([TopicPartition(internal, 0, 0)])
    assert first_outcome(reader) == ErrorCode.topic_authorization_failed


def test_a_topic_cannot_be_deleted_without_delete(broker: EmbeddedBroker) -> None:
    intruder = AdminClient(broker.clients.confluent("mallory"))
    with pytest.raises(KafkaException) as refused:
        intruder.delete_topics([TOPIC], request_timeout=TIMEOUT_S)[TOPIC].result()
    assert refused.value.args[0].code() == ErrorCode.topic_authorization_failed
    admin = AdminClient(broker.clients.confluent("admin"))
    assert TOPIC in admin.list_topics(timeout=TIMEOUT_S).topics


def test_with_the_rights_a_group_and_a_transaction_work(broker: EmbeddedBroker) -> None:
    """Consume in a group, produce and send the group's offsets in one transaction."""
    app = open_transaction(broker)
    app.commit_transaction(TIMEOUT_S)
    reader = consumer(broker, "alice")
    reader.subscribe([TOPIC])
    message = None
    for _ in range(int(TIMEOUT_S)):
        message = reader.poll(1.0)
        if message is not None:
            break
    assert message is not None and message.error() is None and message.value() == b"charge-1"
    app.begin_transaction()
    app.produce(TOPIC, b"receipt-1")
    app.send_offsets_to_transaction(
        reader.position(reader.assignment()), reader.consumer_group_metadata(), TIMEOUT_S
    )
    app.commit_transaction(TIMEOUT_S)
    committed = reader.committed([TopicPartition(TOPIC, 0)], TIMEOUT_S)
    reader.close()
    assert committed[0].offset == (message.offset() or 0) + 1
