"""Consumer group records on the real offsets log (the broker core in this process): a heartbeat
is answered once its records are durable, a restart rebuilds the groups from them, and a write
the log refuses leaves the groups as the log has them (the member is not half joined)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from samsa import config as broker_config
from samsa.broker.core import Broker, Endpoint
from samsa.coordinator.group.consumer_machine import HeartbeatRequest, HeartbeatResponse
from samsa.durability import Driver
from samsa.durability.inline import settle
from samsa.log.partition import StorageError
from samsa.log.storage import OsStorage


def wall_ms() -> int:
    return int(time.time() * 1000)


def open_broker(data_dir: str) -> Broker:
    broker = Broker(broker_config.load({}), OsStorage(), data_dir, wall_ms, Endpoint("x", 1))
    broker.open()
    if "t" not in broker.topics:
        broker.topics.create("t", 3, {}, wall_ms())
    return broker


def join(broker: Broker, member_id: str) -> HeartbeatResponse:
    request = HeartbeatRequest(
        group_id="g",
        member_id=member_id,
        member_epoch=0,
        instance_id=None,
        rack_id=None,
        rebalance_timeout_ms=30_000,
        subscribed_topic_names=("t",),
        subscribed_topic_regex=None,
        server_assignor=None,
        topic_partitions={},
        client_id="c",
        client_host="/127.0.0.1",
    )
    answer: HeartbeatResponse = settle(Driver(), broker.groups.consumer_heartbeat(request))
    return answer


def test_the_groups_are_rebuilt_from_the_log(tmp_path: Path) -> None:
    broker = open_broker(str(tmp_path))
    assert join(broker, "a").member_epoch == 1
    assert join(broker, "b").member_epoch == 2
    before = broker.groups.consumer.groups["g"]
    broker.close()
    again = open_broker(str(tmp_path))
    try:
        rebuilt = again.groups.consumer.groups["g"]
        assert (rebuilt.group_epoch, rebuilt.target_assignment_epoch) == (2, 2)
        assert rebuilt.members == before.members and rebuilt.targets == before.targets
    finally:
        again.close()


def test_a_refused_write_leaves_the_groups_as_the_log_has_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = open_broker(str(tmp_path))
    try:
        join(broker, "a")
        log = broker.groups.log

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise StorageError("the disk is full")

        with monkeypatch.context() as patch:
            patch.setattr(log, "append", refuse)
            answer = join(broker, "b")
        assert answer.error == ErrorCode.not_coordinator
        group = broker.groups.consumer.groups["g"]
        assert set(group.members) == {"a"} and group.group_epoch == 1
        assert join(broker, "b").member_epoch == 2  # with room again, b joins
    finally:
        broker.close()
