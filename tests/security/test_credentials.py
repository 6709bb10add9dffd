"""SCRAM credentials (`samsa.security.credentials`): stored salted and hashed, managed with
Kafka's admin APIs through confluent-kafka's AdminClient, and with `samsa users`."""

from __future__ import annotations

import json
import os
from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from samsa.cli import main
from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.security import Security


def test_the_data_dir_holds_no_password() -> None:
    security = Security(listeners=("SASL_PLAINTEXT",), users={"alice": "correct horse"})
    with EmbeddedBroker(security=security) as broker:
        with open(os.path.join(broker.data_dir, "scram-credentials.json"), "rb") as f:
            stored = f.read()
        assert b"correct horse" not in stored
        assert set(json.loads(stored)["users"]["alice"]) == {"SCRAM-SHA-256", "SCRAM-SHA-512"}


def _authenticates(broker: EmbeddedBroker, user: str, password: str, mechanism: str) -> bool:
    config = broker.clients.confluent(user, mechanism=mechanism, password=password)
    admin = AdminClient({**config, "socket.timeout.ms": 3000})
    try:
        admin.list_topics(timeout=3)
        return True
    except KafkaException:
        return False


def _described(admin: AdminClient, user: str) -> Future[Any]:
    futures = admin.describe_user_scram_credentials([user])
    assert isinstance(futures, dict)  # one future per user named
    return futures[user]


def test_admin_client_adds_describes_and_deletes_users() -> None:
    security = Security(listeners=("SASL_PLAINTEXT",), users={"admin": "admin-secret"})
    with EmbeddedBroker(security=security) as broker:
        admin = AdminClient(broker.clients.confluent("admin"))
        upsert = UserScramCredentialUpsertion(
            "bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"bob-secret"
        )
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result(10)
        described = _described(admin, "bob").result(10)
        infos = described.scram_credential_infos
        assert [(i.mechanism, i.iterations) for i in infos] == [
            (ScramMechanism.SCRAM_SHA_256, 4096)
        ]
        assert _authenticates(broker, "bob", "bob-secret", "SCRAM-SHA-256")
        assert _authenticates(broker, "bob", "bob-secret", "PLAIN")
        assert not _authenticates(broker, "bob", "wrong", "PLAIN")
        assert not _authenticates(broker, "bob", "bob-secret", "SCRAM-SHA-512")

        deletion = UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256)
        for future in admin.alter_user_scram_credentials([deletion]).values():
            future.result(10)
        assert not _authenticates(broker, "bob", "bob-secret", "SCRAM-SHA-256")
        with pytest.raises(KafkaException, match="does not exist"):
            _described(admin, "bob").result(10)
        # Too few iterations: Kafka's UNACCEPTABLE_CREDENTIAL.
        weak = UserScramCredentialUpsertion(
            "carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 100), b"x"
        )
        with pytest.raises(KafkaException, match="Too few iterations"):
            admin.alter_user_scram_credentials([weak])["carol"].result(10)


def test_users_cli(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = f"{tmp_path}/data"
    os.makedirs(data_dir)
    assert main(["users", "add", "alice", "--data-dir", data_dir, "--password", "pw"]) == 0
    assert main(["users", "list", "--data-dir", data_dir]) == 0
    assert capsys.readouterr().out.startswith("alice: SCRAM-SHA-256 (8192 iterations)")
    assert main(["users", "delete", "bob", "--data-dir", data_dir]) == 2
    assert main(["users", "add", "x", "--data-dir", data_dir, "--iterations", "1"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all(line.startswith("samsa users") for line in errors)
    with pytest.raises(SystemExit) as usage:
        main(["users", "add", "--data-dir", data_dir])
    assert usage.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

    with EmbeddedBroker(
        data_dir=data_dir, settings={"listeners": "SASL_PLAINTEXT://127.0.0.1:0"}
    ) as broker:
        # The broker holds the data dir: the CLI refuses, and says why.
        assert main(["users", "delete", "alice", "--data-dir", data_dir]) == 1
        assert "in use" in capsys.readouterr().err
        server = broker.server
        assert server is not None
        port = server.ports()["SASL_PLAINTEXT"]
        admin = AdminClient(
            {
                "bootstrap.servers": f"127.0.0.1:{port}",
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "alice",
                "sasl.password": "pw",
            }
        )
        assert admin.list_topics(timeout=10).brokers
    assert main(["users", "delete", "alice", "--data-dir", data_dir]) == 0
    assert main(["users", "list", "--data-dir", data_dir]) == 0
    assert capsys.readouterr().out == ""


def test_certs_cli(tmp_path: object) -> None:
    assert main(["certs", "create", f"{tmp_path}/c", "--client", "alice"]) == 0
    for name in ("ca.crt", "server.pem", "alice.crt", "alice.key"):
        assert os.path.exists(f"{tmp_path}/c/{name}")
