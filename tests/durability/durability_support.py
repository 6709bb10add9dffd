"""A real `samsa serve` subprocess that can be killed, plus producers and a reader for checks."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import confluent_kafka

from samsa.testing.topics import placed

SAMSA = str(Path(sys.executable).parent / "samsa")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0

DeliveryReport = Callable[[confluent_kafka.KafkaError | None, confluent_kafka.Message], None]


def producer_config(bootstrap: str, **extra: object) -> dict[str, object]:
    """acks=all, no retries: an acknowledged record was written once; a failed one at most once
    (samsa may have written it before the connection died). Without retries nothing can be
    duplicated or reordered, so 'exactly once, in order' is a fair demand of the broker."""
    config: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "message.send.max.retries": 0,
        "linger.ms": 2,
        "message.timeout.ms": 20_000,
        "reconnect.backoff.ms": 20,
        "reconnect.backoff.max.ms": 200,
        "log_level": 0,
    }
    config.update(extra)
    return config


@dataclass
class Acks:
    """Delivery reports: (producer, seq) -> (partition, offset) for acknowledged records."""

    acked: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    failed: set[tuple[int, int]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)


def encode(producer: int, seq: int, partition: int) -> tuple[bytes, bytes]:
    return f"p{producer}".encode(), f"{producer}:{seq}:{partition}".encode()


def decode(value: bytes) -> tuple[int, int, int]:
    producer, seq, partition = value.decode().split(":")
    return int(producer), int(seq), int(partition)


class ProducerThread(threading.Thread):
    """Produces (producer id, seq) records round-robin over the partitions until stopped, at
    about `rate` records per second (None: as fast as it can)."""

    def __init__(
        self,
        index: int,
        bootstrap: str,
        topic: str,
        partitions: int,
        acks: Acks,
        rate: float | None = None,
    ) -> None:
        super().__init__(name=f"producer-{index}", daemon=True)
        self.index = index
        self.topic = topic
        self.partitions = partitions
        self.acks = acks
        self.producer = confluent_kafka.Producer(producer_config(bootstrap))
        self.stopping = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None
        self.rate = rate

    def _report(self, seq: int) -> DeliveryReport:
        def report(err: confluent_kafka.KafkaError | None, msg: confluent_kafka.Message) -> None:
            with self.acks.lock:
                if err is None:
                    self.acks.acked[(self.index, seq)] = placed(msg)
                else:
                    self.acks.failed.add((self.index, seq))

        return report

    def run(self) -> None:
        try:
            seq = 0
            began = time.monotonic()
            while not self.stopping.is_set():
                partition = seq % self.partitions
                key, value = encode(self.index, seq, partition)
                try:
                    self.producer.produce(
                        self.topic, value, key, partition, on_delivery=self._report(seq)
                    )
                except BufferError:
                    self.producer.poll(0.01)
                    continue
                seq += 1
                self.sent = seq
                self.producer.poll(0)
                if self.rate is not None and seq % 16 == 0:
                    ahead = seq / self.rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
            remaining = self.producer.flush(60)
            assert remaining == 0, f"{remaining} records never reported"
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.join(90)
        assert not self.is_alive(), f"{self.name} did not finish"
        if self.error is not None:
            raise self.error


def read_partitions(
    bootstrap: str, topic: str, partitions: int, timeout_s: float = 60.0
) -> dict[int, list[tuple[int, bytes | None, bytes | None]]]:
    """Every record of each partition, from its start to its high watermark: (offset, key,
    value), in log order."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "durability-check",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    try:
        ends = {}
        for p in range(partitions):
            _low, high = consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, p), timeout=10, cached=False
            )
            ends[p] = high
        records: dict[int, list[tuple[int, bytes | None, bytes | None]]] = {
            p: [] for p in range(partitions)
        }
        consumer.assign(
            [
                confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                for p in range(partitions)
                if ends[p] > 0
            ]
        )
        deadline = time.monotonic() + timeout_s
        done = {p for p in range(partitions) if ends[p] == 0}
        while len(done) < partitions:
            assert time.monotonic() < deadline, f"read timed out; done {sorted(done)}"
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    raise AssertionError(f"consume error: {message.error()}")
                p, offset = placed(message)
                records[p].append((offset, message.key(), message.value()))
                if offset + 1 >= ends[p]:
                    done.add(p)
        return records
    finally:
        consumer.close()
