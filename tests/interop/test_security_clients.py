"""Every client samsa supports (confluent-kafka, aiokafka, kafka-python, kcat) over SASL_PLAINTEXT
(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), SSL (with and without a client certificate) and SASL_SSL:
each produces records and reads them back. Wrong passwords, unknown users and untrusted
certificates are refused, and the other clients keep working. A transaction and a consumer group
run over SASL_SSL with confluent-kafka."""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import kafka
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError as AIOKafkaError
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from kafka.errors import KafkaError as KafkaPythonError

from samsa.security import certs
from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.requirements import require_binary
from samsa.testing.security import ClientConfigs, Security

USERS = {"alice": "alice-secret", "bob": "bob-secret"}
# (listener, mechanism, with a client certificate)
CASES = [
    ("SASL_PLAINTEXT", "PLAIN", False),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256", False),
    ("SASL_PLAINTEXT", "SCRAM-SHA-512", False),
    ("SASL_SSL", "PLAIN", False),
    ("SASL_SSL", "SCRAM-SHA-256", False),
    ("SASL_SSL", "SCRAM-SHA-512", False),
    ("SSL", "", True),
    ("SSL", "", False),
]
IDS = [
    f"{listener}-{mechanism or ('cert' if cert else 'nocert')}"
    for listener, mechanism, cert in CASES
]
VALUES = [f"v{i}".encode() for i in range(5)]
TIMEOUT_S = 30


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    security = Security(
        listeners=("SASL_SSL", "SASL_PLAINTEXT", "SSL", "PLAINTEXT"),
        users=USERS,
        ssl_client_auth="requested",
    )
    with EmbeddedBroker(security=security) as running:
        yield running


def _topic(client: str) -> str:
    return f"{client}-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------- confluent-kafka
def confluent_roundtrip(config: dict[str, Any], topic: str) -> list[bytes]:
    producer = Producer(config)
    for value in VALUES:
        producer.produce(topic, value)
    assert producer.flush(TIMEOUT_S) == 0
    consumer = Consumer({**config, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        return _poll_values(consumer)
    finally:
        consumer.close()


def _poll_values(consumer: Consumer) -> list[bytes]:
    """What the subscribed consumer reads, until it has as many as VALUES or time is up."""
    read: list[bytes] = []
    for _ in range(TIMEOUT_S * 4):
        message = consumer.poll(0.25)
        if message is not None and message.error() is None:
            read.append(message.value() or b"")
        if len(read) == len(VALUES):
            break
    return read


@pytest.mark.parametrize(("listener", "mechanism", "cert"), CASES, ids=IDS)
def test_confluent(broker: EmbeddedBroker, listener: str, mechanism: str, cert: bool) -> None:
    config = broker.clients.confluent(
        "alice", listener, mechanism=mechanism or "PLAIN", certificate=cert
    )
    assert confluent_roundtrip(config, _topic("confluent")) == VALUES


# ----------------------------------------------------------------- aiokafka
async def aiokafka_roundtrip(config: dict[str, Any], topic: str) -> list[bytes]:
    producer = AIOKafkaProducer(**config, acks="all")
    await producer.start()
    try:
        for value in VALUES:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, **config, group_id=f"g-{topic}", auto_offset_reset="earliest"
    )
    await consumer.start()
    read: list[bytes] = []
    try:
        while len(read) < len(VALUES):
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), TIMEOUT_S)
            read += [m.value for messages in batch.values() for m in messages]
    finally:
        await consumer.stop()
    return read


@pytest.mark.parametrize(("listener", "mechanism", "cert"), CASES, ids=IDS)
def test_aiokafka(broker: EmbeddedBroker, listener: str, mechanism: str, cert: bool) -> None:
    config = broker.clients.aiokafka(
        "alice", listener, mechanism=mechanism or "PLAIN", certificate=cert
    )
    assert asyncio.run(aiokafka_roundtrip(config, _topic("aiokafka"))) == VALUES


# ----------------------------------------------------------------- kafka-python
def kafka_python_roundtrip(config: dict[str, Any], topic: str) -> list[bytes]:
    producer = kafka.KafkaProducer(**config, acks="all")
    for value in VALUES:
        producer.send(topic, value).get(TIMEOUT_S)
    producer.close()
    consumer = kafka.KafkaConsumer(
        topic,
        **config,
        group_id=f"g-{topic}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=TIMEOUT_S * 1000,
    )
    read: list[bytes] = []
    for message in consumer:
        read.append(message.value)
        if len(read) == len(VALUES):
            break
    consumer.close()
    return read


@pytest.mark.parametrize(("listener", "mechanism", "cert"), CASES, ids=IDS)
def test_kafka_python(broker: EmbeddedBroker, listener: str, mechanism: str, cert: bool) -> None:
    config = broker.clients.kafka_python(
        "alice", listener, mechanism=mechanism or "PLAIN", certificate=cert
    )
    assert kafka_python_roundtrip(config, _topic("kafka-python")) == VALUES


# ----------------------------------------------------------------- kcat
def _kcat(
    config: dict[str, Any], *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    options = [item for name, value in config.items() for item in ("-X", f"{name}={value}")]
    return subprocess.run(
        [require_binary("kcat"), *options, *args],
        input=stdin,
        capture_output=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def _kcat_librdkafka() -> tuple[int, ...]:
    version = subprocess.run(
        [require_binary("kcat"), "-V"], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", version)
    assert match is not None, version
    return tuple(int(part) for part in match.groups())


@pytest.mark.parametrize(("listener", "mechanism", "cert"), CASES, ids=IDS)
def test_kcat(broker: EmbeddedBroker, listener: str, mechanism: str, cert: bool) -> None:
    config = broker.clients.confluent(
        "alice", listener, mechanism=mechanism or "PLAIN", certificate=cert
    )
    topic = _topic("kcat")
    produced = _kcat(config, "-P", "-t", topic, stdin=b"\n".join(VALUES) + b"\n")
    if mechanism.startswith("SCRAM") and _kcat_librdkafka() < (2, 6, 1):
        # librdkafka before 2.6.1 repeats its nonce in the SCRAM client-final message; Kafka
        # 4 refuses it (CVE-2024-56128's strict check) and so does samsa.
        assert produced.returncode != 0
        assert b"invalid credentials with SASL mechanism" in produced.stderr
        return
    assert produced.returncode == 0, produced.stderr
    consumed = _kcat(config, "-C", "-t", topic, "-o", "beginning", "-e", "-c", str(len(VALUES)))
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.split() == VALUES


# ----------------------------------------------------------------- refusals
def _confluent_refused(config: dict[str, Any]) -> bool:
    admin = AdminClient({**config, "socket.timeout.ms": 1500})
    try:
        admin.list_topics(timeout=1.5)
    except KafkaException:
        return True
    return False


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("mallory", "alice-secret")])
def test_wrong_passwords_and_unknown_users_are_refused(
    broker: EmbeddedBroker, mechanism: str, user: str, password: str
) -> None:
    clients = broker.clients
    for listener in ("SASL_PLAINTEXT", "SASL_SSL"):
        base = clients.confluent("alice", listener, mechanism=mechanism)
        assert _confluent_refused({**base, "sasl.username": user, "sasl.password": password})

        async def aiokafka_refused(listener: str = listener) -> bool:
            config = clients.aiokafka("alice", listener, mechanism=mechanism)
            config.update(sasl_plain_username=user, sasl_plain_password=password)
            producer = AIOKafkaProducer(**config, request_timeout_ms=3000)
            try:
                await producer.start()
            except AIOKafkaError:
                return True
            finally:
                await producer.stop()
            return False

        assert asyncio.run(aiokafka_refused())
        config = clients.kafka_python("alice", listener, mechanism=mechanism)
        config.update(sasl_plain_username=user, sasl_plain_password=password)
        with pytest.raises(KafkaPythonError):
            kafka.KafkaProducer(**config, bootstrap_timeout_ms=1500)
    # Meanwhile a client with the right password is served.
    assert not _confluent_refused(clients.confluent("bob", "SASL_SSL", mechanism=mechanism))


def test_untrusted_certificates_are_refused(broker: EmbeddedBroker, tmp_path: object) -> None:
    other = certs.create(f"{tmp_path}/other", clients=["eve"])
    clients = broker.clients
    # A client certificate from another CA (ssl.client.auth=requested: checked when sent).
    eve = clients.confluent(None, "SSL")
    eve.update(
        {
            "ssl.certificate.location": other.client_cert("eve"),
            "ssl.key.location": other.client_key("eve"),
        }
    )
    assert _confluent_refused(eve)
    # A client that does not trust the broker's certificate.
    assert _confluent_refused({**clients.confluent(None, "SSL"), "ssl.ca.location": other.ca})
    assert not _confluent_refused(clients.confluent("alice", "SSL"))


def test_a_required_client_certificate_refuses_clients_without_one() -> None:
    security = Security(listeners=("SSL",), users=USERS, ssl_client_auth="required")
    with EmbeddedBroker(security=security) as broker:
        assert _confluent_refused(broker.clients.confluent("alice", certificate=False))
        assert not _confluent_refused(broker.clients.confluent("alice"))


# ----------------------------------------------------------------- transactions and groups
@pytest.mark.samsa_security(listeners=("SASL_SSL",), users={"alice": "alice-secret"})
def test_transaction_and_consumer_group_over_sasl_ssl(samsa_secure_broker: EmbeddedBroker) -> None:
    config = samsa_secure_broker.clients.confluent("alice")
    topic = _topic("txn")
    producer = Producer({**config, "transactional.id": f"t-{topic}"})
    producer.init_transactions(TIMEOUT_S)
    producer.begin_transaction()
    producer.produce(topic, b"aborted")
    producer.abort_transaction(TIMEOUT_S)
    producer.begin_transaction()
    for value in VALUES:
        producer.produce(topic, value)
    producer.commit_transaction(TIMEOUT_S)

    group = f"g-{topic}"
    consumer = Consumer(
        {
            **config,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    read = _poll_values(consumer)
    consumer.commit(asynchronous=False)
    consumer.close()
    assert read == VALUES
    admin = AdminClient(config)
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[
        group
    ].result(TIMEOUT_S)
    # Past every value read (a transaction marker may follow them).
    assert [tp.offset >= len(VALUES) for tp in offsets.topic_partitions] == [True]


async def aiokafka_transaction(config: dict[str, Any], topic: str) -> list[bytes]:
    """An aborted and a committed transaction, then what a read_committed group member reads."""
    producer = AIOKafkaProducer(**config, transactional_id=f"t-{topic}")
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            for value in VALUES:
                await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        **config,
        group_id=f"g-{topic}",
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    read: list[bytes] = []
    try:
        while len(read) < len(VALUES):
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), TIMEOUT_S)
            read += [m.value for messages in batch.values() for m in messages]
        await consumer.commit()
    finally:
        await consumer.stop()
    return read


def test_aiokafka_transaction_and_group_over_sasl_ssl(
    samsa_secure_broker: EmbeddedBroker,
) -> None:
    config = samsa_secure_broker.clients.aiokafka("alice")
    assert asyncio.run(aiokafka_transaction(config, _topic("aiokafka-txn"))) == VALUES


def test_kafka_python_transaction_and_group_over_sasl_ssl(
    samsa_secure_broker: EmbeddedBroker,
) -> None:
    config = samsa_secure_broker.clients.kafka_python("alice")
    topic = _topic("kafka-python-txn")
    producer = kafka.KafkaProducer(**config, transactional_id=f"t-{topic}")
    producer.init_transactions()
    producer.begin_transaction()
    producer.send(topic, b"aborted")
    producer.abort_transaction()
    producer.begin_transaction()
    for value in VALUES:
        producer.send(topic, value)
    producer.commit_transaction()
    producer.close()
    consumer = kafka.KafkaConsumer(
        topic,
        **config,
        group_id=f"g-{topic}",
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
        consumer_timeout_ms=TIMEOUT_S * 1000,
    )
    read: list[bytes] = []
    for message in consumer:
        read.append(message.value)
        if len(read) == len(VALUES):
            break
    consumer.commit()
    consumer.close()
    assert read == VALUES


def test_ssl_context_trusts_only_the_test_ca(broker: EmbeddedBroker) -> None:
    context = broker.clients.ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert isinstance(broker.clients, ClientConfigs)


# ----------------------------------------------------------------- fetches sent from the file
@pytest.mark.parametrize("listener", ["SSL", "SASL_SSL", "SASL_PLAINTEXT"])
def test_large_fetches_over_each_transport(broker: EmbeddedBroker, listener: str) -> None:
    """300 KB in one partition: record sets of 64 KB and more are sent with sendfile on a
    plaintext socket, and read into memory for a TLS one; the consumer reads them back."""
    config = broker.clients.confluent("alice", listener, mechanism="PLAIN", certificate=False)
    topic = _topic("large")
    values = [f"{i:05d}".encode() + os.urandom(500).hex().encode() for i in range(300)]
    producer = Producer({**config, "linger.ms": 50})
    for value in values:
        producer.produce(topic, value, partition=0)
    assert producer.flush(TIMEOUT_S) == 0
    consumer = Consumer({**config, "group.id": f"g-{topic}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    read: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(read) < len(values) and time.monotonic() < deadline:
            for message in consumer.consume(len(values), 0.25):
                if message.error() is None:
                    read.append(message.value() or b"")
    finally:
        consumer.close()
    assert read == values
