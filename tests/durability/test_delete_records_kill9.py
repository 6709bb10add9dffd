"""The log start offset DeleteRecords moved survives kill -9 of a real `samsa serve`: after the
restart reads still begin there, and the segments wholly below it stay deleted."""

from __future__ import annotations

import os
from collections.abc import Callable

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from samsa.log.partition import partition_directory
from samsa.testing.process import BrokerProcess
from samsa.testing.topics import create_topic

StartBroker = Callable[..., BrokerProcess]
TOPIC = "trimmed"
TIMEOUT_S = 30.0
# Segments of a few records each, so DeleteRecords deletes whole ones and cuts into one.
SETTINGS = ["log.segment.bytes=1024"]


def earliest(bootstrap: str) -> int:
    tp = TopicPartition(TOPIC, 0)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    offset: int = admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result(TIMEOUT_S).offset
    return offset


def first_offset_read(bootstrap: str) -> int:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "after", "auto.offset.reset": "earliest"}
    )
    consumer.assign([TopicPartition(TOPIC, 0)])
    try:
        for _ in range(int(TIMEOUT_S / 0.2)):
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                offset = message.offset()
                assert offset is not None
                return offset
    finally:
        consumer.close()
    raise AssertionError("nothing read after the restart")


def test_the_log_start_survives_kill9(broker_process: StartBroker) -> None:
    broker = broker_process(SETTINGS)
    create_topic(broker.bootstrap, TOPIC, 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(200):  # a batch each
        producer.produce(TOPIC, value=b"%05d" % i + b"x" * 100, partition=0)
        assert producer.flush(TIMEOUT_S) == 0
    directory = partition_directory(broker.data_dir, TOPIC, 0)
    segments_before = sorted(n for n in os.listdir(directory) if n.endswith(".log"))

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.delete_records([TopicPartition(TOPIC, 0, 123)])
    assert next(iter(futures.values())).result(TIMEOUT_S).low_watermark == 123
    segments_after = sorted(n for n in os.listdir(directory) if n.endswith(".log"))
    assert len(segments_after) < len(segments_before)
    assert int(segments_after[0][:-4]) <= 123

    broker.kill9()
    broker.start()
    assert earliest(broker.bootstrap) == 123
    assert first_offset_read(broker.bootstrap) == 123
    assert sorted(n for n in os.listdir(directory) if n.endswith(".log")) == segments_after
