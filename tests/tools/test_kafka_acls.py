"""samsa.tools.kafka_acls, the kafka-acls.sh stand-in librdkafka's 0109, 0115 and 0119 shell out
to: their exact commands, run as a script against a real broker with the authorizer on (as
trivup's: everything allowed where no ACL names the resource), deny and then allow a producer."""

from __future__ import annotations

import subprocess
import sys

import pytest
from confluent_kafka import KafkaError, Producer

from samsa.testing import EmbeddedBroker
from samsa.testing.principals import authorizer_settings
from samsa.tools.kafka_acls import samsa_arguments

TIMEOUT_S = 30.0


def kafka_acls(*argv: str) -> None:
    command = [sys.executable, "-m", "samsa.tools.kafka_acls", *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr


def produce(bootstrap: str, topic: str) -> KafkaError | None:
    errors: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 5000})
    producer.produce(topic, b"v", on_delivery=lambda error, _: errors.append(error))
    producer.flush(TIMEOUT_S)
    return errors[0]


def test_the_arguments_become_samsa_acls() -> None:
    given = (
        "--bootstrap-server h:1 --remove --force --deny-principal User:* --deny-host * --topic t"
    )
    wanted = "acl --bootstrap h:1 remove --deny-principal User:* --host * --topic t"
    assert samsa_arguments(given.split()) == wanted.split()


@pytest.mark.interop
def test_librdkafkas_commands_deny_and_allow_a_topic(tmp_path: object) -> None:
    settings = authorizer_settings("User:admin", **{"allow.everyone.if.no.acl.found": "true"})
    with EmbeddedBroker(f"{tmp_path}/data", settings) as broker:
        assert produce(broker.bootstrap, "unauth") is None
        deny = ("--deny-principal", "User:*", "--operation", "All", "--deny-host", "*")
        kafka_acls("--bootstrap-server", broker.bootstrap, "--add", *deny, "--topic", "unauth")
        error = produce(broker.bootstrap, "unauth")
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        kafka_acls(
            "--bootstrap-server",
            broker.bootstrap,
            "--remove",
            "--force",
            *deny,
            "--topic",
            "unauth",
        )
        assert produce(broker.bootstrap, "unauth") is None
