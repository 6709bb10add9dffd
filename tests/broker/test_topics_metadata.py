"""`topics.json` and the partition directories are kept in agreement: a directory with data is
never ignored, an interrupted deletion is finished rather than undone, internal topics are the
broker's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from samsa import config as broker_config
from samsa.broker.core import Broker, Endpoint
from samsa.broker.topics import DataDirError, TopicError
from samsa.log.partition import partition_directory
from samsa.log.storage import OsStorage
from samsa.protocol.batch import parse_header
from samsa.protocol.batch_writer import record_batch

NOW_MS = 1_700_000_000_000


def _open(data_dir: str) -> Broker:
    broker = Broker(broker_config.load({}), OsStorage(), data_dir, lambda: NOW_MS, Endpoint("x", 1))
    broker.open()
    return broker


def _write(broker: Broker, topic: str, partition: int, values: list[bytes]) -> None:
    log = broker.topics.partition(topic, partition)
    assert log is not None
    data = record_batch(values, timestamp_ms=NOW_MS)
    log.append(data, parse_header(data), NOW_MS)


def _metadata(data_dir: str) -> dict[str, dict[str, object]]:
    with open(os.path.join(data_dir, "topics.json")) as f:
        entries: dict[str, dict[str, object]] = json.load(f)
    return entries


def test_a_lost_topics_json_is_rebuilt_from_the_directories(tmp_path: Path) -> None:
    """Before: partition directories holding 200,000 records were silently ignored."""
    data_dir = str(tmp_path)
    broker = _open(data_dir)
    broker.topics.create("orders-v2", 3, {}, NOW_MS)
    for partition in range(3):
        _write(broker, "orders-v2", partition, [b"a", b"b"])
    broker.close()
    os.remove(os.path.join(data_dir, "topics.json"))

    broker = _open(data_dir)
    topic = broker.topics.get("orders-v2")
    assert topic is not None and len(topic.partitions) == 3
    assert [log.log_end_offset for log in topic.partitions] == [2, 2, 2]
    internal = broker.topics.get("__consumer_offsets")
    assert internal is not None and internal.configs["retention.ms"] == "-1"
    assert _metadata(data_dir)["orders-v2"]["partitions"] == 3
    broker.close()


def test_directories_that_cannot_be_matched_to_a_topic_refuse_the_start(tmp_path: Path) -> None:
    data_dir = str(tmp_path)
    broker = _open(data_dir)
    broker.topics.create("t", 3, {}, NOW_MS)
    for partition in range(3):
        _write(broker, "t", partition, [b"a"])
    broker.close()
    os.remove(os.path.join(data_dir, "topics.json"))
    os.rename(partition_directory(data_dir, "t", 1), os.path.join(data_dir, "elsewhere"))

    with pytest.raises(DataDirError, match=r"topic 't'.*missing partitions \[1\]"):
        _open(data_dir)
    assert not os.path.exists(os.path.join(data_dir, "topics.json")), "nothing was rebuilt"


def test_an_interrupted_creation_leaves_nothing_behind(tmp_path: Path) -> None:
    data_dir = str(tmp_path)
    _open(data_dir).close()
    os.makedirs(partition_directory(data_dir, "half", 0))
    open(os.path.join(partition_directory(data_dir, "half", 0), "0" * 20 + ".log"), "w").close()
    broker = _open(data_dir)
    assert broker.topics.get("half") is None
    assert not os.path.exists(partition_directory(data_dir, "half", 0))
    broker.close()


def test_an_interrupted_deletion_is_finished(tmp_path: Path) -> None:
    data_dir = str(tmp_path)
    broker = _open(data_dir)
    topic = broker.topics.create("gone", 1, {}, NOW_MS)
    _write(broker, "gone", 0, [b"a"])
    broker.close()
    # A crash after the rename, before topics.json dropped the topic.
    directory = partition_directory(data_dir, "gone", 0)
    os.rename(directory, f"{directory}.{topic.topic_id.hex}-delete")

    broker = _open(data_dir)
    assert broker.topics.get("gone") is None
    assert "gone" not in _metadata(data_dir)
    assert not any(name.startswith("gone-0") for name in os.listdir(data_dir))
    broker.close()


@pytest.mark.parametrize("name", ["__consumer_offsets", "__transaction_state"])
def test_internal_topics_cannot_be_deleted_or_grown(tmp_path: Path, name: str) -> None:
    """Before: DeleteTopics on them succeeded, and the restart lost every committed offset."""
    broker = _open(str(tmp_path))
    with pytest.raises(TopicError, match="cannot delete internal topic"):
        broker.topics.delete(name)
    with pytest.raises(TopicError, match="cannot add partitions to internal topic"):
        broker.topics.plan_growth(name, 2)
    assert broker.topics.get(name) is not None
    broker.close()
