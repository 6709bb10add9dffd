"""A full disk under the group coordinator's log: an offset commit is refused while there is no
room, and succeeds again as soon as there is, with no restart (the refused write was undone, so
the coordinator's log stays online). Before, the first refused write took `__consumer_offsets`
offline, and every later commit failed until the broker was restarted."""

from __future__ import annotations

import os
from pathlib import Path

import confluent_kafka
import pytest

from samsa.demo.guarantees import create_topic

from .conftest import StartBroker
from .support import WAIT_TIMEOUT_S, fill

TOPIC = "committed"
GROUP = "commits-through-a-full-disk"


def _consumer(bootstrap: str) -> confluent_kafka.Consumer:
    return confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": GROUP, "log_level": 0}
    )


def _commit(bootstrap: str, offset: int) -> None:
    consumer = _consumer(bootstrap)
    try:
        consumer.commit(
            offsets=[confluent_kafka.TopicPartition(TOPIC, 0, offset)], asynchronous=False
        )
    finally:
        consumer.close()


def _committed(bootstrap: str) -> int:
    consumer = _consumer(bootstrap)
    try:
        [found] = consumer.committed(
            [confluent_kafka.TopicPartition(TOPIC, 0)], timeout=WAIT_TIMEOUT_S
        )
        return int(found.offset)
    finally:
        consumer.close()


def test_offset_commits_resume_when_the_disk_has_room_again(
    tmpfs: Path, start_broker: StartBroker
) -> None:
    broker = start_broker(tmpfs / "data")
    create_topic(broker.bootstrap, TOPIC, 1)
    _commit(broker.bootstrap, 10)

    stats = os.statvfs(tmpfs)
    filler = tmpfs / "filler"
    fill(filler, stats.f_bavail * stats.f_frsize)  # every free byte
    # Commits still fit in the last page the log's files already have; the first that needs
    # a new page is refused.
    last = 10
    for offset in range(11, 200):
        try:
            _commit(broker.bootstrap, offset)
        except confluent_kafka.KafkaException:
            break
        last = offset
    else:
        pytest.fail("no commit was refused on a full disk")
    assert _committed(broker.bootstrap) == last

    filler.unlink()  # room again
    _commit(broker.bootstrap, 300)
    assert _committed(broker.bootstrap) == 300

    broker.kill9()
    broker.start()
    assert _committed(broker.bootstrap) == 300
