"""Consumer groups with real clients (issue 5, part 1): three members of one group share six
partitions; one leaves, one crashes and is removed after its session timeout, one joins. Every
record is consumed, the committed offsets end at the log end, and they survive a broker restart
(clean, and kill -9 of a `samsa serve` process)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient

from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.process import BrokerProcess
from samsa.testing.topics import create_topics, end_offsets

from .support import (
    BROKER_SETTINGS,
    DEADLINE_S,
    SESSION_TIMEOUT_MS,
    committed_offsets,
    produce_values,
    run_script,
    wait_for,
)

pytestmark = pytest.mark.interop

TOPIC = "members"
PARTITIONS = 6
GROUP = "members-group"


def describe(bootstrap: str, group: str) -> tuple[str, dict[str, set[int]]]:
    """(state, {member id: assigned partitions}) from DescribeGroups, through AdminClient."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    [future] = admin.describe_consumer_groups([group], request_timeout=10).values()
    description = future.result(timeout=15)
    members = {
        m.member_id: {tp.partition for tp in (m.assignment.topic_partitions or [])}
        for m in description.members
    }
    return description.state.name, members


def balanced(bootstrap: str, count: int) -> dict[str, set[int]]:
    """Wait until the group is Stable with `count` members that split the six partitions."""
    found: dict[str, set[int]] = {}

    def check() -> bool:
        nonlocal found
        state, found = describe(bootstrap, GROUP)
        every = [p for ps in found.values() for p in ps]
        return (
            state == "STABLE"
            and len(found) == count
            and sorted(every) == list(range(PARTITIONS))
            and all(found.values())
        )

    wait_for(check, f"a stable group of {count} members sharing {PARTITIONS} partitions")
    return found


class Member:
    def __init__(self, client: str, bootstrap: str, log_path: Path) -> None:
        self.log_path = log_path
        self.process = run_script(
            "member.py",
            [client, bootstrap, GROUP, TOPIC, str(SESSION_TIMEOUT_MS)],
            log_path,
        )

    def lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()

    def seen(self) -> set[bytes]:
        return {line.split(" ", 3)[3].encode() for line in self.lines() if line.startswith("seen ")}

    def leave(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(DEADLINE_S) == 0, self.log_path.read_text()[-2000:]
        assert self.lines()[-1] == "closed"

    def crash(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(DEADLINE_S)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(DEADLINE_S)


def run_membership_changes(client: str, bootstrap: str, tmp_path: Path) -> set[bytes]:
    """The scenario; returns every value produced. Members are stopped when it returns."""
    create_topics(bootstrap, {TOPIC: PARTITIONS})
    produced = produce_values(bootstrap, TOPIC, PARTITIONS, 200, "first")
    members: list[Member] = []
    try:
        for i in range(3):
            members.append(Member(client, bootstrap, tmp_path / f"{client}-{i}.log"))
        three = balanced(bootstrap, 3)

        members[0].leave()  # close(): LeaveGroup, the other two take its partitions at once
        two = balanced(bootstrap, 2)
        assert set(two) < set(three)

        crashed_at = time.monotonic()
        members[1].crash()  # no LeaveGroup: removed only when its session times out
        one = balanced(bootstrap, 1)
        assert set(one) < set(two)
        # The crashed member held its partitions until its session timed out.
        assert time.monotonic() - crashed_at >= SESSION_TIMEOUT_MS / 1000 * 0.8

        members.append(Member(client, bootstrap, tmp_path / f"{client}-3.log"))
        balanced(bootstrap, 2)
        for p, values in produce_values(bootstrap, TOPIC, PARTITIONS, 200, "second").items():
            produced[p] += values

        ends = end_offsets(bootstrap, TOPIC, PARTITIONS)
        assert ends == {p: 400 for p in range(PARTITIONS)}
        wait_for(
            lambda: committed_offsets(bootstrap, GROUP, TOPIC, PARTITIONS) == ends,
            f"committed offsets to reach the log end {ends}",
        )
        for member in members[2:]:
            member.leave()
        seen = set().union(*(m.seen() for m in members))
        everything = {v for values in produced.values() for v in values}
        missing = everything - seen
        assert not missing, f"{len(missing)} records never consumed, e.g. {sorted(missing)[:3]}"
        return everything
    finally:
        for member in members:
            member.kill()


@pytest.mark.parametrize("client", ["confluent", "aiokafka", "kafka-python"])
def test_members_leave_crash_join_embedded(client: str, tmp_path: Path) -> None:
    with EmbeddedBroker(str(tmp_path / "data"), BROKER_SETTINGS) as broker:
        run_membership_changes(client, broker.bootstrap, tmp_path)
        ends = {p: 400 for p in range(PARTITIONS)}
        broker.restart()
        assert committed_offsets(broker.bootstrap, GROUP, TOPIC, PARTITIONS) == ends


def test_members_committed_offsets_survive_kill9(tmp_path: Path) -> None:
    broker = BrokerProcess(str(tmp_path / "data"), BROKER_SETTINGS).start()
    try:
        run_membership_changes("confluent", broker.bootstrap, tmp_path)
        broker.kill9()
        broker.start()
        ends = {p: 400 for p in range(PARTITIONS)}
        assert committed_offsets(broker.bootstrap, GROUP, TOPIC, PARTITIONS) == ends
        # A new member of the group resumes at the committed offsets: nothing is read again.
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": GROUP,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "log_level": 0,
            }
        )
        try:
            consumer.subscribe([TOPIC])
            deadline = time.monotonic() + 8
            again = []
            while time.monotonic() < deadline:
                message = consumer.poll(0.2)
                if message is not None and message.error() is None:
                    again.append(message.value())
            assert again == []
            assert len(consumer.assignment()) == PARTITIONS
        finally:
            consumer.close()
    finally:
        broker.kill9()
