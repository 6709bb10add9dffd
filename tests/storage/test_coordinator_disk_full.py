"""A full disk under the group coordinator's log: an offset commit is refused while there is no
room, and succeeds again as soon as there is, with no restart (the refused write was undone, so
the coordinator's log stays online). Before, the first refused write took `__consumer_offsets`
offline, and every later commit failed until the broker was restarted."""

from __future__ import annotations

import os
from pathlib import Path

import confluent_kafka
import pytest

from samsa.testing.topics import create_topic

from .conftest import StartBroker
from .support import commit, committed, fill

TOPIC = "committed"
GROUP = "commits-through-a-full-disk"


def test_offset_commits_resume_when_the_disk_has_room_again(
    tmpfs: Path, start_broker: StartBroker
) -> None:
    broker = start_broker(tmpfs / "data")
    create_topic(broker.bootstrap, TOPIC, 1)
    commit(broker.bootstrap, GROUP, TOPIC, 10)

    stats = os.statvfs(tmpfs)
    filler = tmpfs / "filler"
    fill(filler, stats.f_bavail * stats.f_frsize)  # every free byte
    # Commits still fit in the last page the log's files already have; the first that needs
    # a new page is refused.
    last = 10
    for offset in range(11, 200):
        try:
            commit(broker.bootstrap, GROUP, TOPIC, offset)
        except confluent_kafka.KafkaException:
            break
        last = offset
    else:
        pytest.fail("no commit was refused on a full disk")
    assert committed(broker.bootstrap, GROUP, TOPIC) == last

    filler.unlink()  # room again
    commit(broker.bootstrap, GROUP, TOPIC, 300)
    assert committed(broker.bootstrap, GROUP, TOPIC) == 300

    broker.kill9()
    broker.start()
    assert committed(broker.bootstrap, GROUP, TOPIC) == 300
