"""kill -9 of a real `samsa serve` under an idempotent confluent-kafka producer, three times.

The producer keeps sending while the broker dies and comes back on the same port and data dir.
Batches in flight at the kill are retried after the restart with their original sequence
numbers; the restarted broker must recognise those it had already written (its producer state
comes back from the snapshot and the replay of the log) and accept the rest in order. So: every
record stored exactly once, in send order, at the offset it was acknowledged with; nothing
acknowledged lost; and the producer never hit a fatal error (a sequence gap or an unknown
producer id would make librdkafka raise one).

Whether a kill lands between a write and its acknowledgment is a race, so the producer talks to
the broker through a chaos proxy, and before the second and third kills the proxy black-holes
responses for a moment: requests still reach the broker, which writes the batches, but their
acknowledgments are swallowed and the kill comes before any reaches the producer, which must retry
them after the restart. (A black-hole of both directions would leave this to chance: it swallows
the requests too, so only what was in flight when it opened gets written unacknowledged.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest

from samsa.chaos import EmbeddedChaosProxy
from samsa.demo.guarantees import PARTITIONS, ProduceResult, read_topic
from samsa.testing.process import BrokerProcess, free_port
from samsa.testing.topics import create_topic

TOPIC = "idempotent-kill9"
RATE_PER_S = 3000
ACKS_PER_PHASE = 2000
PHASE_TIMEOUT_S = 30.0
KILLS = 3
BLACKHOLE_BEFORE_KILL_S = 0.2
FLUSH_TIMEOUT_S = 60.0


class IdempotentProducerThread(threading.Thread):
    """Sends value i to partition i % 3 at about RATE_PER_S until stopped, then flushes."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(name="idempotent-producer", daemon=True)
        self.result = ProduceResult()
        self.sent: list[bytes] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 2,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
            "message.timeout.ms": int(FLUSH_TIMEOUT_S * 1000),
            "error_cb": self._on_error,
            "log_level": 0,
        }
        self.producer = confluent_kafka.Producer(config)

    # Callbacks run on this thread, inside poll() and flush(); the test thread only reads
    # len() and dict() copies (see ProduceResult on why there is no lock).
    def _on_error(self, error: confluent_kafka.KafkaError) -> None:
        if error.fatal():
            self.result.fatal_errors.append(str(error))

    def _on_delivery(self, error: confluent_kafka.KafkaError | None, message: Any) -> None:
        if error is None:
            self.result.acknowledged[message.value()] = (message.partition(), message.offset())
        else:
            self.result.delivery_errors.append(f"{message.value()!r}: {error}")

    def acknowledged(self) -> int:
        return len(self.result.acknowledged)

    def run(self) -> None:
        try:
            began = time.monotonic()
            index = 0
            while not self.stopping.is_set():
                value = f"k9-{index:07d}".encode()
                try:
                    self.producer.produce(
                        TOPIC, value, partition=index % PARTITIONS, on_delivery=self._on_delivery
                    )
                except BufferError:
                    self.producer.poll(0.01)
                    continue
                self.sent.append(value)
                index += 1
                self.producer.poll(0)
                ahead_s = index / RATE_PER_S - (time.monotonic() - began)
                if ahead_s > 0:
                    time.sleep(ahead_s)
            self.result.unflushed = self.producer.flush(FLUSH_TIMEOUT_S)
            self.producer.close()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> ProduceResult:
        self.stopping.set()
        self.join(FLUSH_TIMEOUT_S + 10)
        assert not self.is_alive(), "the producer did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def wait_for_acks(producer: IdempotentProducerThread, at_least: int) -> None:
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    while producer.acknowledged() < at_least:
        assert time.monotonic() < deadline, (
            f"only {producer.acknowledged()} of {at_least} acknowledged; "
            f"fatal: {producer.result.fatal_errors[:3]}"
        )
        time.sleep(0.02)


Proxied = tuple[BrokerProcess, EmbeddedChaosProxy]


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[Proxied]:
    """`samsa serve` behind a chaos proxy (the broker advertises the proxy's address)."""
    proxy_port = free_port()
    settings = ["num.partitions=3", f"advertised.listeners=PLAINTEXT://127.0.0.1:{proxy_port}"]
    process = BrokerProcess(str(tmp_path / "data"), settings)
    with EmbeddedChaosProxy(("127.0.0.1", process.port), listen_port=proxy_port) as proxy:
        try:
            yield process.start(), proxy
        finally:
            process.kill9()


def test_idempotent_producer_survives_kill9_without_duplicates(proxied: Proxied) -> None:
    broker, proxy = proxied
    create_topic(proxy.bootstrap, TOPIC, PARTITIONS)
    producer = IdempotentProducerThread(proxy.bootstrap)
    producer.start()
    try:
        for kill in range(KILLS):
            wait_for_acks(producer, producer.acknowledged() + ACKS_PER_PHASE)
            sent_before = len(producer.sent)
            time.sleep(0.05)
            # The producer is sending right now.
            assert len(producer.sent) > sent_before, (
                f"the producer stalled: {producer.error!r}, fatal {producer.result.fatal_errors}"
            )
            if kill > 0:
                # Requests still reach the broker, but the acknowledgments of what it writes
                # from now on never arrive.
                proxy.blackhole(PHASE_TIMEOUT_S, forward_requests=True)
                time.sleep(BLACKHOLE_BEFORE_KILL_S)
            broker.kill9()
            proxy.clear()  # end the black-hole: the connections through it died with the broker
            acked_at_kill = dict(producer.result.acknowledged)
            broker.start()
            # The producer carries on after the restart (retries first, then new records).
            wait_for_acks(producer, len(acked_at_kill) + ACKS_PER_PHASE)
    finally:
        result = producer.stop()
    assert broker.starts == KILLS + 1
    # Produce responses were swallowed before kills: batches written, never acknowledged.
    assert proxy.stats().blackholed_responses > 0

    assert not result.fatal_errors, f"the producer hit a fatal error: {result.fatal_errors}"
    assert not result.delivery_errors, (
        f"{len(result.delivery_errors)} failed deliveries, first {result.delivery_errors[:3]}"
    )
    assert result.unflushed == 0
    assert len(result.acknowledged) == len(producer.sent) >= (KILLS + 1) * ACKS_PER_PHASE

    log = read_topic(broker.bootstrap, TOPIC)
    for partition in range(PARTITIONS):
        expected = [v for i, v in enumerate(producer.sent) if i % PARTITIONS == partition]
        stored = log[partition]
        stored_once = set(stored)
        assert len(stored_once) == len(stored), (
            f"partition {partition}: {len(stored) - len(stored_once)} duplicates"
        )
        lost = [value for value in expected if value not in stored_once]
        assert not lost, f"partition {partition}: {len(lost)} acknowledged records lost: {lost[:3]}"
        assert stored == expected, f"partition {partition}: not in send order"
        wrong = [
            (value, result.acknowledged[value], offset)
            for offset, value in enumerate(stored)
            if result.acknowledged[value] != (partition, offset)
        ]
        assert not wrong, f"acknowledged at the wrong offset: {wrong[:3]}"
