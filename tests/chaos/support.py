"""Real clients through the chaos proxy: a non-idempotent producer, a log reader, and a raw
socket for byte-exact checks."""

from __future__ import annotations

import time
from typing import Any

import confluent_kafka
from kio.schema.api_versions.v0.request import ApiVersionsRequest

from samsa.testing.wire import Conn

DELIVERY_TIMEOUT_S = 20.0
READ_TIMEOUT_S = 15.0


def producer(bootstrap: str, **overrides: Any) -> confluent_kafka.Producer:
    """Non-idempotent, so a retried batch is appended again: a lost ack becomes a duplicate."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": False,
        "acks": "all",
        "retries": 1000,
        "max.in.flight.requests.per.connection": 1,
        "linger.ms": 0,
        "retry.backoff.ms": 20,
        "reconnect.backoff.ms": 10,
        "reconnect.backoff.max.ms": 100,
        "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000),
        "log_level": 3,
    }
    config.update(overrides)
    return confluent_kafka.Producer(config)


def produce_one(p: confluent_kafka.Producer, topic: str, value: bytes) -> None:
    """Produce and wait for the delivery report; fail the test on an error."""
    reports: list[confluent_kafka.KafkaError | None] = []
    p.produce(topic, value, partition=0, on_delivery=lambda err, _msg: reports.append(err))
    left = p.flush(DELIVERY_TIMEOUT_S)
    assert left == 0, f"{value!r} not delivered in {DELIVERY_TIMEOUT_S} s"
    assert reports == [None], f"{value!r}: delivery failed: {reports}"


def read_log(bootstrap: str, topic: str) -> list[bytes]:
    """Every record value of partition 0, from offset 0 to the high watermark."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "chaos-reader",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    try:
        partition = confluent_kafka.TopicPartition(topic, 0)
        _, high = consumer.get_watermark_offsets(partition, timeout=READ_TIMEOUT_S)
        consumer.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while len(values) < high and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            assert message.error() is None, message.error()
            value = message.value()
            assert isinstance(value, bytes), f"record with value {value!r}"
            values.append(value)
        assert len(values) == high, f"read {len(values)} of {high} records"
        return values
    finally:
        consumer.close()


class RawClient(Conn):
    """A bare connection sending ApiVersions v0 requests: no retries, no reconnects."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, timeout_s=5, client_id="raw")

    def send_api_versions(self, correlation_id: int) -> None:
        self.send(ApiVersionsRequest(), correlation_id)

    def receive_correlation_id(self, timeout_s: float) -> int | None:
        """The correlation id of the next response, or None if none came in `timeout_s`."""
        return self.recv_correlation_id(timeout_s)

    def round_trip_s(self, correlation_id: int) -> float:
        started = time.monotonic()
        self.send_api_versions(correlation_id)
        assert self.receive_correlation_id(5.0) == correlation_id
        return time.monotonic() - started
