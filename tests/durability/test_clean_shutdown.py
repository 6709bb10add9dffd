"""SIGTERM: a clean shutdown leaves the clean-shutdown marker, and the next start trusts the
files instead of rescanning them. Damaged index files are rebuilt on start either way."""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import confluent_kafka

from durability.durability_support import producer_config, read_partitions
from samsa import config as broker_config
from samsa.broker.core import CLEAN_SHUTDOWN_FILE, Broker, Endpoint
from samsa.log.storage import OsStorage
from samsa.testing.process import BrokerProcess
from samsa.testing.topics import create_topic, placed, value_of, watermarks

TOPIC = "clean"
PARTITIONS = 3
SETTINGS = ["num.partitions=3", "log.segment.bytes=8192", "log.index.interval.bytes=512"]
BASE_TS = 1_700_000_000_000

StartBroker = Callable[..., BrokerProcess]


def produce(bootstrap: str, count: int, first: int = 0) -> dict[int, list[tuple[int, bytes]]]:
    """`count` acknowledged records per partition, timestamp BASE_TS + 10 * i for the i-th."""
    producer = confluent_kafka.Producer(
        producer_config(bootstrap, **{"linger.ms": 5, "batch.num.messages": 10})
    )
    acked: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    errors: list[object] = []

    def report(err: object, msg: confluent_kafka.Message) -> None:
        if err is None:
            partition, offset = placed(msg)
            acked[partition].append((offset, value_of(msg)))
        else:
            errors.append(err)

    for i in range(first, first + count):
        for p in range(PARTITIONS):
            value = f"{p}:{i}:".encode() + b"x" * 40
            producer.produce(TOPIC, value, None, p, on_delivery=report, timestamp=BASE_TS + 10 * i)
        producer.poll(0)
        if i % 100 == 99:
            assert producer.flush(30) == 0
    assert producer.flush(30) == 0
    assert not errors, errors
    return {p: sorted(records) for p, records in acked.items()}


def open_in_process(data_dir: str) -> Broker:
    """The broker's own start-up path, without a server: to look at what `open` decided."""
    broker = Broker(
        broker_config.load({"num.partitions": "3"}),
        OsStorage(),
        data_dir,
        lambda: BASE_TS,
        Endpoint("127.0.0.1", 0),
    )
    broker.open()
    return broker


def marker(data_dir: str) -> str:
    return os.path.join(data_dir, CLEAN_SHUTDOWN_FILE)


def check_contents(broker: BrokerProcess, expected: dict[int, list[tuple[int, bytes]]]) -> None:
    records = read_partitions(broker.bootstrap, TOPIC, PARTITIONS)
    for p in range(PARTITIONS):
        assert [(offset, value) for offset, _, value in records[p]] == expected[p], p
    assert watermarks(broker.bootstrap, TOPIC, PARTITIONS) == [
        (0, len(expected[p])) for p in range(PARTITIONS)
    ]


def test_sigterm_leaves_the_marker_and_restarts_without_recovery(
    broker_process: StartBroker,
) -> None:
    broker = broker_process(SETTINGS)
    data_dir = broker.data_dir
    assert not os.path.exists(marker(data_dir)), "a running broker has no clean marker"
    create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    expected = produce(broker.bootstrap, 300)
    assert all(len(expected[p]) == 300 for p in range(PARTITIONS))

    assert broker.terminate() == 0
    assert "samsa broker stopped cleanly" in broker.output
    assert os.path.exists(marker(data_dir))

    # What the next start decides: a clean start, no segment rescanned, nothing cut.
    opened = open_in_process(data_dir)
    assert opened.clean_start
    assert not os.path.exists(marker(data_dir)), "the marker is consumed on start"
    logs = [log for log in opened.topics.logs() if log.topic == TOPIC]
    assert len(logs) == PARTITIONS
    assert all(len(log.segments) > 1 for log in logs), "the settings make several segments"
    for log in opened.topics.logs():  # every topic's, internal ones too
        for segment, report in zip(log.segments, log.recovery, strict=True):
            assert report.truncated_bytes == 0
            # -1: loaded from its indexes, not rescanned (an empty segment has nothing to scan)
            assert report.batches == -1 or segment.size == 0, (log.topic, segment.base_offset)
    opened.close()
    assert os.path.exists(marker(data_dir))

    broker.start()
    check_contents(broker, expected)
    more = produce(broker.bootstrap, 50, first=300)
    for p in range(PARTITIONS):
        assert [offset for offset, _ in more[p]] == list(range(300, 350))
        expected[p] += more[p]
    assert broker.terminate() == 0
    broker.start()
    check_contents(broker, expected)


def test_kill9_leaves_no_marker_and_restart_recovers(broker_process: StartBroker) -> None:
    """The counterpart: after kill -9 the next start rescans the newest segments."""
    broker = broker_process(SETTINGS)
    create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    expected = produce(broker.bootstrap, 100)
    broker.kill9()
    assert not os.path.exists(marker(broker.data_dir))

    opened = open_in_process(broker.data_dir)
    assert not opened.clean_start
    for log in opened.topics.logs():
        if log.topic == TOPIC:
            assert log.recovery[-1].batches >= 0, "the newest segment is rescanned"
        assert all(report.truncated_bytes == 0 for report in log.recovery)
    opened.close()

    broker.start()
    check_contents(broker, expected)


def _index_files(data_dir: str) -> dict[str, bytes]:
    out = {}
    for p in range(PARTITIONS):
        directory = os.path.join(data_dir, f"{TOPIC}-{p}")
        for name in sorted(os.listdir(directory)):
            if name.endswith((".index", ".timeindex")):
                with open(os.path.join(directory, name), "rb") as f:
                    out[f"{p}/{name}"] = f.read()
    return out


def test_missing_and_damaged_indexes_are_rebuilt(broker_process: StartBroker) -> None:
    broker = broker_process(SETTINGS)
    create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    expected = produce(broker.bootstrap, 400)
    assert broker.terminate() == 0
    original = _index_files(broker.data_dir)
    assert len(original) >= 2 * PARTITIONS * 3, "several segments per partition"
    assert all(original.values())

    # Partition 0 loses every index file; partition 1's are overwritten with junk; partition
    # 2's offset indexes are cut mid-entry and its time indexes zeroed.
    rng = random.Random(5)
    for name, data in original.items():
        partition, filename = name.split("/")
        path = os.path.join(broker.data_dir, f"{TOPIC}-{partition}", filename)
        if partition == "0":
            os.remove(path)
        elif partition == "1":
            with open(path, "wb") as f:
                f.write(rng.randbytes(len(data)))
        elif filename.endswith(".index"):
            with open(path, "r+b") as f:
                f.truncate(len(data) - 3)
        else:
            with open(path, "wb") as f:
                f.write(bytes(len(data)))

    broker.start()  # the clean marker is there: only the plausibility checks catch this
    check_contents(broker, expected)
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "times", "log_level": 0}
    )
    try:
        for i in (0, 57, 150, 299, 399):
            wanted = [
                confluent_kafka.TopicPartition(TOPIC, p, BASE_TS + 10 * i - 5)
                for p in range(PARTITIONS)
            ]
            found = consumer.offsets_for_times(wanted, timeout=10)
            for tp in found:
                assert tp.error is None
                # The first record at or after the timestamp asked for: record i itself.
                assert tp.offset == i, (i, tp)
        late = consumer.offsets_for_times(
            [confluent_kafka.TopicPartition(TOPIC, 0, BASE_TS + 10 * 400)], timeout=10
        )
        assert late[0].offset == -1  # past the newest timestamp: no offset
    finally:
        consumer.close()
    assert broker.terminate() == 0
    assert _index_files(broker.data_dir) == original
