"""`samsa groups` against a real broker with real consumers: the lag it shows is what was
produced minus what was committed, a reset's plan changes nothing, an executed reset is where a
real consumer then resumes, and a group with members is refused a reset or a deletion."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from samsa.testing.topics import create_topic

from .support import Tool

RECORDS = 5  # per partition; record i has timestamp (i + 1) * 1000 ms


def produce(bootstrap: str, topic: str) -> None:
    create_topic(bootstrap, topic, partitions=2)
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition in (0, 1):
        for i in range(RECORDS):
            producer.produce(topic, f"{partition}-{i}".encode(), partition=partition,
                             timestamp=(i + 1) * 1000)  # fmt: skip
    assert producer.flush(10) == 0


def committed(bootstrap: str, group: str, topic: str) -> list[int]:
    """The group's committed offset per partition (-1001 for none), as a consumer reads them."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)
        return [tp.offset for tp in found]
    finally:
        consumer.close()


def commit(bootstrap: str, group: str, topic: str, offsets: list[int]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in enumerate(offsets)],
            asynchronous=False,
        )
    finally:
        consumer.close()


def resumed_at(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Where a consumer joining the group starts reading, per partition."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "latest",
         "enable.auto.commit": False, "log_level": 0}
    )  # fmt: skip
    consumer.subscribe([topic])
    first: dict[int, int] = {}
    try:
        for _ in range(100):
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                partition, offset = message.partition(), message.offset()
                assert partition is not None and offset is not None
                first.setdefault(partition, offset)
            if len(first) == 2:
                break
    finally:
        consumer.close()
    return first


@pytest.fixture
def member(samsa: Tool) -> Iterator[Consumer]:
    """A live KIP-848 consumer that owns both partitions of `busy`."""
    produce(samsa.bootstrap, "busy")
    consumer = Consumer(
        {"bootstrap.servers": samsa.bootstrap, "group.id": "g-busy", "group.protocol": "consumer",
         "client.id": "ops-member", "auto.offset.reset": "earliest", "log_level": 0}
    )  # fmt: skip
    consumer.subscribe(["busy"])
    seen = 0
    for _ in range(100):
        message = consumer.poll(0.2)
        seen += message is not None and message.error() is None
        if seen and len(consumer.assignment()) == 2:
            break
    consumer.commit(asynchronous=False)
    yield consumer
    consumer.close()


def offsets_by_partition(group: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {row["partition"]: row for row in group["offsets"]}


def test_describe_shows_lag_as_produced_minus_committed(samsa: Tool) -> None:
    produce(samsa.bootstrap, "lagging")
    commit(samsa.bootstrap, "g-lag", "lagging", [3, 1])
    (group,) = samsa.ok("groups", "describe", "--group", "g-lag", "--json").json()["groups"]
    assert (group["state"], group["type"], group["members"]) == ("Empty", "classic", [])
    rows = offsets_by_partition(group)
    assert [(rows[p]["committed_offset"], rows[p]["log_end_offset"], rows[p]["lag"])
            for p in (0, 1)] == [(3, RECORDS, RECORDS - 3), (1, RECORDS, RECORDS - 1)]  # fmt: skip

    # Consumed through the tool itself: what it printed is what it committed.
    printed = samsa.ok("consume", "--topic", "lagging", "--group", "g-tool", "--from-beginning",
                       "--max-messages", "4", "--json").json_lines()  # fmt: skip
    (group,) = samsa.ok("groups", "describe", "--group", "g-tool", "--json").json()["groups"]
    rows = offsets_by_partition(group)
    for p, row in rows.items():
        assert row["committed_offset"] == 1 + max(
            r["offset"] for r in printed if r["partition"] == p
        )
        assert row["lag"] == RECORDS - row["committed_offset"]
    assert sum(row["committed_offset"] for row in rows.values()) == 4
    assert sum(row["lag"] for row in rows.values()) == RECORDS * len(rows) - 4

    table = samsa.ok("groups", "describe", "--group", "g-lag").out
    assert "CURRENT-OFFSET" in table and "LOG-END-OFFSET" in table and "LAG" in table
    lagging = [ln.split() for ln in table.splitlines() if ln.startswith("lagging ")]
    assert [row[:5] for row in lagging] == [
        ["lagging", "0", "3", "5", "2"],
        ["lagging", "1", "1", "5", "4"],
    ]
    missing = samsa("groups", "describe", "--group", "never-was")
    assert (missing.code, missing.err) == (
        1,
        "samsa groups: consumer group never-was does not exist\n",
    )


def test_list_and_describe_a_live_consumer_group(samsa: Tool, member: Consumer) -> None:
    listed = {g["group"]: g for g in samsa.ok("groups", "list", "--json").json()["groups"]}
    assert listed["g-busy"] == {"group": "g-busy", "state": "Stable", "type": "consumer"}
    assert "g-busy" in samsa.ok("groups", "list").out
    (group,) = samsa.ok("groups", "describe", "--group", "g-busy", "--json").json()["groups"]
    (only,) = group["members"]
    assert only["client_id"] == "ops-member" and only["host"]
    assert only["assignment"] == [
        {"topic": "busy", "partition": 0},
        {"topic": "busy", "partition": 1},
    ]
    rows = offsets_by_partition(group)
    assert {row["member_id"] for row in rows.values()} == {only["member_id"]}
    for row in rows.values():
        if row["committed_offset"] is not None:
            assert row["lag"] == RECORDS - row["committed_offset"]

    # Kafka's rule: no reset and no deletion while the group has members.
    refused = samsa("groups", "reset-offsets", "--group", "g-busy", "--all-topics",
                    "--to-earliest", "--execute")  # fmt: skip
    assert refused.code == 1
    assert refused.err == (
        "samsa groups: assignments can only be reset if the group 'g-busy' is inactive, "
        "but the current state is Stable\n"
    )
    not_deleted = samsa("groups", "delete", "--group", "g-busy")
    assert not_deleted.code == 1 and not_deleted.err.startswith(
        "samsa groups: cannot delete g-busy"
    )


def test_reset_offsets_each_way(samsa: Tool) -> None:
    bootstrap = samsa.bootstrap
    produce(bootstrap, "resets")
    commit(bootstrap, "g-reset", "resets", [3, 2])

    def reset(*how: str) -> list[int]:
        samsa.ok("groups", "reset-offsets", "--group", "g-reset", *how, "--execute")
        return committed(bootstrap, "g-reset", "resets")

    plan = samsa.ok("groups", "reset-offsets", "--group", "g-reset", "--topic", "resets",
                    "--to-earliest", "--json").json()  # fmt: skip
    assert plan == {
        "group": "g-reset",
        "executed": False,
        "offsets": [
            {"topic": "resets", "partition": 0, "current_offset": 3, "new_offset": 0},
            {"topic": "resets", "partition": 1, "current_offset": 2, "new_offset": 0},
        ],
    }
    dry = samsa.ok("groups", "reset-offsets", "--group", "g-reset", "--all-topics", "--to-latest")
    assert "Dry run: nothing changed" in dry.out and "NEW-OFFSET" in dry.out
    assert committed(bootstrap, "g-reset", "resets") == [3, 2]

    assert reset("--topic", "resets", "--shift-by", "-1") == [2, 1]
    assert reset("--all-topics", "--shift-by", "100") == [RECORDS, RECORDS]  # held at the end
    assert reset("--topic", "resets", "--to-earliest") == [0, 0]
    assert reset("--topic", "resets:1", "--to-offset", "4") == [0, 4]
    assert reset("--topic", "resets:0", "--to-offset", "99") == [RECORDS, 4]
    assert reset("--all-topics", "--to-latest") == [RECORDS, RECORDS]
    # The first record at or after 3.5 s is the fourth (offset 3) in each partition.
    at = datetime.datetime.fromtimestamp(3.5, tz=datetime.UTC).isoformat()
    assert reset("--topic", "resets", "--to-datetime", at) == [3, 3]
    assert resumed_at(bootstrap, "g-reset", "resets") == {0: 3, 1: 3}


def test_reset_and_delete_misuse(samsa: Tool) -> None:
    produce(samsa.bootstrap, "misreset")
    for argv, code, message in [
        (("--topic", "misreset", "--to-datetime", "yesterday"), 2, "--to-datetime takes an ISO"),
        (("--topic", "misreset:x", "--to-earliest"), 2, "--topic 'misreset:x'"),
        (("--topic", "misreset:7", "--to-earliest"), 2, "misreset has no partition 7"),
        (("--topic", "nothere", "--to-earliest"), 1, "no such topic: nothere"),
        (("--topic", "misreset", "--shift-by", "1"), 2, "cannot shift misreset-0"),
        (("--topic", "misreset", "--to-offset", "-1"), 2, "--to-offset must be 0"),
    ]:
        result = samsa("groups", "reset-offsets", "--group", "g-none", *argv)
        assert (result.code, result.err.count("\n")) == (code, 1), (argv, result.err)
        assert result.err.startswith(f"samsa groups: {message}"), result.err


def test_reset_with_nothing_committed(samsa: Tool) -> None:
    nothing = samsa.ok("groups", "reset-offsets", "--group", "g-none", "--all-topics",
                       "--to-earliest", "--execute")  # fmt: skip
    assert nothing.out == "Nothing to reset: g-none has no committed offsets.\n"


def test_delete_an_empty_group(samsa: Tool) -> None:
    produce(samsa.bootstrap, "deleting")
    commit(samsa.bootstrap, "g-delete", "deleting", [1, 1])
    assert samsa.ok("groups", "delete", "--group", "g-delete", "--json").json() == {
        "deleted": ["g-delete"],
        "errors": {},
    }
    listed = [g["group"] for g in samsa.ok("groups", "list", "--json").json()["groups"]]
    assert "g-delete" not in listed
    assert committed(samsa.bootstrap, "g-delete", "deleting") == [-1001, -1001]


def test_describe_after_the_topic_was_deleted(samsa: Tool) -> None:
    produce(samsa.bootstrap, "gone")
    commit(samsa.bootstrap, "g-gone", "gone", [2, 2])
    samsa.ok("topics", "delete", "--topic", "gone")
    (group,) = samsa.ok("groups", "describe", "--group", "g-gone", "--json").json()["groups"]
    rows = offsets_by_partition(group)
    assert [(rows[p]["committed_offset"], rows[p]["log_end_offset"], rows[p]["lag"])
            for p in (0, 1)] == [(2, None, None), (2, None, None)]  # fmt: skip
