"""`samsa topics` against a real broker: what it creates, alters and deletes is what an
AdminClient of its own then finds."""

from __future__ import annotations

import json

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, ResourceType

from samsa import cli
from samsa.testing import EmbeddedBroker

from .support import Tool


def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    """The configs set on the topic, as a separate client reads them."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    entries = next(iter(futures.values())).result(timeout=10)
    return {
        name: entry.value
        for name, entry in entries.items()
        if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    }


def test_create_list_describe_alter_delete(samsa: Tool) -> None:
    created = samsa.ok(
        "topics", "create", "--topic", "orders", "--partitions", "3",
        "--config", "retention.ms=86400000", "--config", "cleanup.policy=compact",
    )  # fmt: skip
    assert created.out == "Created topic orders.\n"
    assert topic_configs(samsa.bootstrap, "orders") == {
        "retention.ms": "86400000",
        "cleanup.policy": "compact",
    }
    assert "orders" in samsa.ok("topics", "list").out.splitlines()
    assert "orders" in samsa.ok("topics", "list", "--json").json()["topics"]
    listed = samsa.ok("topics", "list", "--exclude-internal").out.splitlines()
    assert not [name for name in listed if name.startswith("__")]

    (topic,) = samsa.ok("topics", "describe", "--topic", "orders", "--json").json()["topics"]
    assert [p["partition"] for p in topic["partitions"]] == [0, 1, 2]
    assert all(p["leader"] is not None and p["isr"] == p["replicas"] for p in topic["partitions"])
    assert topic["configs"] == {"retention.ms": "86400000", "cleanup.policy": "compact"}
    table = samsa.ok("topics", "describe", "--topic", "orders").out
    assert "Topic: orders" in table and "retention.ms=86400000" in table
    assert [ln.split()[0] for ln in table.splitlines()[3:]] == ["0", "1", "2"]

    # Incremental: one set, one deleted, the third left as it was.
    samsa.ok(
        "topics", "alter", "--topic", "orders", "--add-config", "retention.ms=1000",
        "--add-config", "max.message.bytes=2048", "--delete-config", "cleanup.policy",
    )  # fmt: skip
    assert topic_configs(samsa.bootstrap, "orders") == {
        "retention.ms": "1000",
        "max.message.bytes": "2048",
    }
    samsa.ok("topics", "alter", "--topic", "orders", "--partitions", "4")
    (topic,) = samsa.ok("topics", "describe", "--topic", "orders", "--json").json()["topics"]
    assert len(topic["partitions"]) == 4

    deleted = samsa.ok("topics", "delete", "--topic", "orders", "--json").json()
    assert deleted == {"deleted": ["orders"], "missing": []}
    assert "orders" not in samsa.ok("topics", "list").out.splitlines()


def test_create_twice_and_delete_missing(samsa: Tool) -> None:
    samsa.ok("topics", "create", "--topic", "twice", "--partitions", "1")
    again = samsa("topics", "create", "--topic", "twice", "--partitions", "1")
    assert again.code == 1
    assert (
        again.err.startswith("samsa topics: cannot create twice: ") and again.err.count("\n") == 1
    )
    quiet = samsa.ok("topics", "create", "--topic", "twice", "--if-not-exists", "--json")
    assert quiet.json() == {"topic": "twice", "created": False}

    missing = samsa("topics", "delete", "--topic", "never-made")
    assert missing.code == 1 and "never-made" in missing.err
    tolerated = samsa.ok("topics", "delete", "--topic", "never-made", "--if-exists", "--json")
    assert tolerated.json() == {"deleted": [], "missing": ["never-made"]}

    no_such = samsa("topics", "describe", "--topic", "never-made")
    assert (no_such.code, no_such.err) == (1, "samsa topics: no such topic: never-made\n")


def test_a_broker_refusal_is_one_line(samsa: Tool) -> None:
    samsa.ok("topics", "create", "--topic", "strict", "--partitions", "1")
    refused = samsa("topics", "alter", "--topic", "strict", "--add-config", "no.such.config=1")
    assert refused.code == 1
    assert refused.err.startswith("samsa topics: cannot alter configs of strict: ")
    assert refused.err.count("\n") == 1


def test_misuse_is_a_usage_error(samsa: Tool) -> None:
    for argv, message in [
        (("topics", "create", "--topic", "x", "--config", "noequals"), "--config takes NAME=VALUE"),
        (("topics", "create", "--topic", "x", "--partitions", "0"), "--partitions must be 1"),
        (("topics", "alter", "--topic", "x"), "alter needs --add-config"),
    ]:
        result = samsa(*argv)
        assert result.code == 2, argv
        assert result.err.startswith(f"samsa topics: {message}") and result.err.count("\n") == 1


def test_options_before_the_action_and_the_other_spelling(
    broker: EmbeddedBroker, samsa: Tool, capsys: pytest.CaptureFixture[str]
) -> None:
    samsa.ok("topics", "create", "--topic", "spelled", "--partitions", "1")
    capsys.readouterr()
    assert cli.main(["topics", "--bootstrap", broker.bootstrap, "--json", "list"]) == 0
    assert "spelled" in json.loads(capsys.readouterr().out)["topics"]
    assert cli.main(["topics", "list", "--bootstrap", broker.bootstrap]) == 0
    assert "spelled" in capsys.readouterr().out.splitlines()
