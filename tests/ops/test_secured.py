"""`--command-config`: the client properties Kafka's tools take from a file (here SASL_SSL with
SCRAM), against a secured samsa broker."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from samsa import cli
from samsa.testing import EmbeddedBroker


def test_tools_through_a_sasl_ssl_listener(
    samsa_secure_broker: EmbeddedBroker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = samsa_secure_broker.clients.confluent("alice")
    bootstrap = settings.pop("bootstrap.servers")
    properties = tmp_path / "client.properties"
    properties.write_text(
        "# as kafka-topics.sh --command-config reads it\n"
        + "".join(f"{name} = {value}\n" for name, value in settings.items())
    )
    secured = ["--bootstrap-server", bootstrap, "--command-config", str(properties)]
    assert cli.main(["topics", "create", "--topic", "secured", "--partitions", "2", *secured]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("one\ntwo\n"))
    produce = ["produce", "--topic", "secured", "--partition", "1", "--idempotent", "--acks", "all"]
    assert cli.main([*produce, *secured]) == 0
    capsys.readouterr()
    consume = ["consume", "--topic", "secured", "--partition", "1", "--offset", "earliest"]
    assert cli.main([*consume, "--max-messages", "2", "--print-partition", *secured]) == 0
    assert capsys.readouterr().out == "Partition:1\tone\nPartition:1\ttwo\n"
    assert cli.main(["topics", "describe", "--topic", "secured", "--json", *secured]) == 0
    (topic,) = json.loads(capsys.readouterr().out)["topics"]
    assert len(topic["partitions"]) == 2

    # Without the properties the TLS listener never answers a plaintext client.
    assert cli.main(["topics", "list", "--bootstrap-server", bootstrap, "--timeout", "1"]) == 1
    assert capsys.readouterr().err.startswith(f"samsa topics: cannot reach {bootstrap}")

    properties.write_text("security.protocol\n")
    assert cli.main(["topics", "list", *secured]) == 2
    assert capsys.readouterr().err == (
        f"samsa topics: --command-config {properties}: line 1: expected name=value, "
        "got 'security.protocol'\n"
    )
