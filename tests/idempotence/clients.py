"""Each client's producer loop, idempotent or not: value i goes to partition i % 3, and what the
client reported comes back as a `ProduceResult` (acknowledged, failed, fatal)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import kafka
from aiokafka import AIOKafkaProducer

from samsa.demo.guarantees import PARTITIONS, ProduceResult, produce

DELIVERY_TIMEOUT_S = 60.0
# Small batches, so a few thousand records make hundreds of Produce requests for the faults.
BATCH_BYTES = 512

Producer = Callable[[str, str, Sequence[bytes], bool], ProduceResult]


def confluent(
    bootstrap: str, topic: str, values: Sequence[bytes], idempotent: bool
) -> ProduceResult:
    config: dict[str, Any] = {
        "acks": "all",
        "enable.idempotence": idempotent,
        # Without idempotence librdkafka allows 10^6 requests in flight: keep Kafka's 5 for both.
        "max.in.flight.requests.per.connection": 5,
        "message.send.max.retries": 1_000_000,
        "linger.ms": 1,
        "batch.num.messages": 10,
        "retry.backoff.ms": 10,
        "reconnect.backoff.ms": 10,
        "reconnect.backoff.max.ms": 100,
        # See samsa.demo.guarantees.COMMON_CONFIG: no 1 s stall after each cut.
        "metadata.recovery.strategy": "none",
        "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000),
        "log_level": 0,
    }
    return produce(bootstrap, topic, values, config, PARTITIONS)


def aiokafka(
    bootstrap: str, topic: str, values: Sequence[bytes], idempotent: bool
) -> ProduceResult:
    return asyncio.run(_aiokafka(bootstrap, topic, values, idempotent))


async def _aiokafka(
    bootstrap: str, topic: str, values: Sequence[bytes], idempotent: bool
) -> ProduceResult:
    result = ProduceResult()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=idempotent,
        max_batch_size=BATCH_BYTES,
        linger_ms=1,
        retry_backoff_ms=10,
        request_timeout_ms=int(DELIVERY_TIMEOUT_S * 1000),
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, partition=index % PARTITIONS)
            for index, value in enumerate(values)
        ]
        outcomes = await asyncio.wait_for(
            asyncio.gather(*futures, return_exceptions=True), DELIVERY_TIMEOUT_S
        )
    finally:
        await producer.stop()
    for value, outcome in zip(values, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            result.delivery_errors.append(f"{value!r}: {outcome!r}")
        else:
            result.acknowledged[value] = (outcome.partition, outcome.offset)
    return result


def kafka_python(
    bootstrap: str, topic: str, values: Sequence[bytes], idempotent: bool
) -> ProduceResult:
    result = ProduceResult()
    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=idempotent,
        max_in_flight_requests_per_connection=5,
        batch_size=BATCH_BYTES,
        linger_ms=1,
        retry_backoff_ms=10,
        reconnect_backoff_ms=10,
        reconnect_backoff_max_ms=100,
        delivery_timeout_ms=int(DELIVERY_TIMEOUT_S * 1000),
    )
    try:
        futures = [
            producer.send(topic, value, partition=index % PARTITIONS)
            for index, value in enumerate(values)
        ]
        producer.flush(DELIVERY_TIMEOUT_S)
    finally:
        producer.close(5)
    for value, future in zip(values, futures, strict=True):
        if not future.is_done:
            result.unflushed += 1
        elif future.failed():
            result.delivery_errors.append(f"{value!r}: {future.exception!r}")
        else:
            metadata = future.value
            result.acknowledged[value] = (metadata.partition, metadata.offset)
    return result


CLIENTS: dict[str, Producer] = {
    "confluent-kafka": confluent,
    "aiokafka": aiokafka,
    "kafka-python": kafka_python,
}
