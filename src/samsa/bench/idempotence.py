"""What idempotence costs: produce throughput with and without it, and memory per producer.

    python -m samsa.bench.idempotence [--records N] [--repeat K] [--client-repeat C]
                                      [--no-clients] [--json]

Throughput: one `samsa serve` subprocess (fresh temp data dir, default durable settings); one
confluent-kafka producer per run, acks=all, 1 KB values, to partition 0 of a fresh topic (deleted
after the run). Idempotent and plain runs alternate, each pair in the other order than the last,
so drift on a shared machine falls on both alike; each figure is the median of K runs. Three
pairings: librdkafka's defaults (a plain producer may keep 10^6 requests in flight, an
idempotent one at most 5), both at `max.in.flight.requests.per.connection=5`, and both at 1 (in
practice librdkafka's idempotent producer keeps one request in flight per partition anyway). The
same runs against librdkafka's in-process mock cluster show what idempotence costs the client.

Other clients, against samsa only, same record count, values and layout (partition 0 of a fresh
topic, acks=all, linger 5 ms, batches up to 1 MB), median of C runs, interleaved the same way:

- aiokafka: `AIOKafkaProducer(enable_idempotence=True)` vs `False`, `send()` futures awaited in
  a sliding window of `AIO_WINDOW` records. aiokafka (0.14) keeps one Produce request in flight
  per broker whether idempotent or not, so only idempotence differs.
- kafka-python: `KafkaProducer(enable_idempotence=True)` vs `False`, both at
  `max_in_flight_requests_per_connection=5` and both at 1. kafka-python (3.0) mutes a partition
  while one of its batches is in flight when idempotent (as with max_in_flight=1), so at 5 the
  plain producer pipelines and the idempotent one does not; at 1 both send one at a time.
- wire: a bench-only producer speaking the protocol directly (kio over `samsa.testing.wire`)
  that keeps `WIRE_IN_FLIGHT` Produce requests of `WIRE_BATCH_RECORDS` records in flight on one
  connection, plain (producer id -1) or idempotent (an InitProducerId id, consecutive
  sequences). None of the Kafka clients above pipelines an idempotent producer's requests to
  one partition; this one does, as the Java client does, so its ratio is the broker's cost
  with pipelining equal.

Broker side alone: the time `ProducerStateManager.check` + `apply` take per batch, the only
work an idempotent batch adds to a plain one in samsa.

Memory: bytes per tracked producer in a `ProducerStateManager`, each with a full window of
`BATCHES_RETAINED` batches, measured with tracemalloc over many producers.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import gc
import json
import os
import statistics
import struct
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import crc32c
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.schema.types import TopicName
from kio.static.primitive import Records, i16, i32, i32Timedelta

from samsa.bench import in_turn
from samsa.bench.broker import machine, mock_cluster, samsa_process, wait_for_topic
from samsa.protocol.batch import CRC_START, BatchHeader
from samsa.protocol.batch_writer import record_batch
from samsa.state.producers import BATCHES_RETAINED, ProducerStateManager
from samsa.testing.wire import Conn

DEFAULT_RECORDS = 50_000
DEFAULT_REPEAT = 7
DEFAULT_CLIENT_REPEAT = 5
VALUE_BYTES = 1024
TIMEOUT_S = 300.0
MEMORY_PRODUCERS = 10_000
STATE_BATCHES = 200_000
TOPIC_PREFIX = "bench-idempotence-"

BASE_CONFIG: dict[str, Any] = {
    "acks": "all",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "compression.type": "none",
    "queue.buffering.max.messages": 100_000,
    "log_level": 3,
}
PAIRINGS: dict[str, dict[str, Any]] = {
    "librdkafka defaults": {},
    "max.in.flight=5 both": {"max.in.flight.requests.per.connection": 5},
    # librdkafka's idempotent producer sends one Produce request per partition at a time,
    # whatever max.in.flight says (confluentinc/librdkafka PR #4989, open): with both at 1 the
    # pipelining is the same and only idempotence differs.
    "max.in.flight=1 both": {"max.in.flight.requests.per.connection": 1},
}


# --------------------------------------------------------------------- throughput
def produce_s(bootstrap: str, records: int, config: dict[str, Any]) -> float:
    """Seconds from the first produce() until the last delivery report, to a fresh topic."""
    topic = f"{TOPIC_PREFIX}{uuid.uuid4().hex[:12]}"
    fatal: list[KafkaError] = []
    errors: list[KafkaError] = []
    delivered = [0]

    def on_error(error: KafkaError) -> None:
        if error.fatal():
            fatal.append(error)

    def on_delivery(error: KafkaError | None, _message: Any) -> None:
        if error is None:
            delivered[0] += 1
        else:
            errors.append(error)

    producer = Producer({"bootstrap.servers": bootstrap, "error_cb": on_error, **config})
    value = os.urandom(VALUE_BYTES)
    try:
        wait_for_topic(producer, topic)  # created and the connection warm, outside the timing
        start = time.perf_counter()
        for _ in range(records):
            while True:
                try:
                    producer.produce(topic, value, partition=0, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.001)
            producer.poll(0)
        remaining = producer.flush(TIMEOUT_S)
        seconds = time.perf_counter() - start
    finally:
        producer.close()
    if remaining or errors or fatal or delivered[0] != records:
        raise RuntimeError(
            f"{delivered[0]}/{records} delivered, {remaining} outstanding, "
            f"errors {errors[:3]}, fatal {fatal[:3]}"
        )
    return seconds


def delete_topics(bootstrap: str) -> None:
    """Free the disk between runs (samsa only; the mock keeps a few MB per partition)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(TOPIC_PREFIX)]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result(30)


@dataclass
class Pairing:
    target: str
    name: str
    plain_s: list[float]
    idempotent_s: list[float]
    records: int

    def rate(self, seconds: list[float]) -> float:
        return self.records / statistics.median(seconds)

    @property
    def ratio(self) -> float:
        """Idempotent throughput / plain throughput (medians)."""
        return self.rate(self.idempotent_s) / self.rate(self.plain_s)

    def pair_ratios(self) -> list[float]:
        return [p / i for p, i in zip(self.plain_s, self.idempotent_s, strict=True)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "value_bytes": VALUE_BYTES,
            "plain_s": self.plain_s,
            "idempotent_s": self.idempotent_s,
            "plain_records_per_s": self.rate(self.plain_s),
            "idempotent_records_per_s": self.rate(self.idempotent_s),
            "ratio": self.ratio,
            "pair_ratios": self.pair_ratios(),
        }


TARGETS = {"samsa": samsa_process, "mock": mock_cluster}


def run_throughput(target: str, records: int, repeat: int, progress: bool) -> list[Pairing]:
    pairings = [Pairing(target, name, [], [], records) for name in PAIRINGS]
    with TARGETS[target]() as bootstrap:
        # One unmeasured run each, so the first measured one does not pay for a cold broker.
        for extra in PAIRINGS.values():
            produce_s(bootstrap, records // 10, {**BASE_CONFIG, **extra})
        for k in range(repeat):
            for pairing in pairings:
                extra = PAIRINGS[pairing.name]
                for idempotent in in_turn((False, True), k):
                    config = {**BASE_CONFIG, **extra, "enable.idempotence": idempotent}
                    seconds = produce_s(bootstrap, records, config)
                    (pairing.idempotent_s if idempotent else pairing.plain_s).append(seconds)
                    if progress:
                        kind = "idempotent" if idempotent else "plain"
                        print(
                            f"  {target}, {pairing.name}, run {k + 1}/{repeat}, {kind}: "
                            f"{records / seconds:,.0f} rec/s",
                            file=sys.stderr,
                            flush=True,
                        )
                if target == "samsa":
                    delete_topics(bootstrap)
    return pairings


# --------------------------------------------------------------------- other clients
AIO_WINDOW = 10_000  # records awaited in a sliding window of send() futures
WIRE_IN_FLIGHT = 5
WIRE_BATCH_RECORDS = 960  # what librdkafka puts in a batch.size=1000000 batch of 1 KB values
BATCH_BYTES = 1_000_000
MAX_REQUEST_BYTES = 2_000_000
_PRODUCER_FIELDS = struct.Struct(">qhi")  # producer id, epoch, base sequence
_PRODUCER_FIELDS_AT = 43
_CRC = struct.Struct(">I")
_CRC_AT = 17


def _fresh_topic(bootstrap: str) -> str:
    """A new topic with partition 0 ready (auto-created by a metadata request), untimed."""
    topic = f"{TOPIC_PREFIX}{uuid.uuid4().hex[:12]}"
    probe = Producer({"bootstrap.servers": bootstrap, "log_level": 3})
    try:
        wait_for_topic(probe, topic)
    finally:
        probe.flush(10)
    return topic


def aiokafka_s(bootstrap: str, records: int, idempotent: bool) -> float:
    """Seconds from the first send() until every future resolved; one warm record first."""
    from aiokafka import AIOKafkaProducer

    topic = _fresh_topic(bootstrap)
    value = os.urandom(VALUE_BYTES)

    async def run() -> float:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=idempotent,
            linger_ms=5,
            max_batch_size=BATCH_BYTES,
            max_request_size=MAX_REQUEST_BYTES,
            request_timeout_ms=int(TIMEOUT_S * 1000),
        )
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"warm", partition=0)
            pending: collections.deque[asyncio.Future[Any]] = collections.deque()
            start = time.perf_counter()
            for _ in range(records):
                pending.append(await producer.send(topic, value, partition=0))
                if len(pending) >= AIO_WINDOW:
                    await pending.popleft()
            await asyncio.gather(*pending)
            return time.perf_counter() - start
        finally:
            await producer.stop()

    return asyncio.run(run())


def kafka_python_s(bootstrap: str, records: int, idempotent: bool, in_flight: int) -> float:
    """Seconds from the first send() until flush() returned and every future succeeded."""
    from kafka import KafkaProducer

    topic = _fresh_topic(bootstrap)
    value = os.urandom(VALUE_BYTES)
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=idempotent,
        max_in_flight_requests_per_connection=in_flight,
        linger_ms=5,
        batch_size=BATCH_BYTES,
        max_request_size=MAX_REQUEST_BYTES,
    )
    try:
        producer.send(topic, b"warm", partition=0).get(TIMEOUT_S)
        start = time.perf_counter()
        futures = [producer.send(topic, value, partition=0) for _ in range(records)]
        producer.flush(TIMEOUT_S)
        seconds = time.perf_counter() - start
        failed = [f.exception for f in futures if not f.succeeded()]
    finally:
        producer.close(TIMEOUT_S)
    if failed:
        raise RuntimeError(f"{len(failed)}/{records} not delivered: {failed[:3]}")
    return seconds


def _wire_template(value: bytes, count: int) -> bytes:
    return record_batch([value] * count, timestamp_ms=int(time.time() * 1000))


def _stamp(template: bytes, producer_id: int, epoch: int, sequence: int) -> bytes:
    """The template batch with producer id, epoch and base sequence set and its CRC redone."""
    batch = bytearray(template)
    _PRODUCER_FIELDS.pack_into(batch, _PRODUCER_FIELDS_AT, producer_id, epoch, sequence)
    _CRC.pack_into(batch, _CRC_AT, crc32c.crc32c(memoryview(batch)[CRC_START:]))
    return bytes(batch)


def wire_s(bootstrap: str, records: int, idempotent: bool) -> float:
    """Seconds from the first Produce request until the last response, `WIRE_IN_FLIGHT`
    requests outstanding; batches are stamped (ids, sequence, CRC) inside the timing."""
    topic = _fresh_topic(bootstrap)
    value = os.urandom(VALUE_BYTES)
    sizes = [min(WIRE_BATCH_RECORDS, records - n) for n in range(0, records, WIRE_BATCH_RECORDS)]
    templates = {size: _wire_template(value, size) for size in set(sizes)}
    wire = Conn(bootstrap, timeout_s=TIMEOUT_S, client_id="samsa-bench-wire")
    try:
        producer_id, epoch = -1, -1
        if idempotent:
            wire.send(
                InitProducerIdRequest(
                    transactional_id=None,
                    transaction_timeout=i32Timedelta.parse(datetime.timedelta(seconds=60)),
                )
            )
            _, init = wire.recv(InitProducerIdRequest)
            if init.error_code != 0:
                raise RuntimeError(f"InitProducerId failed: error {init.error_code}")
            producer_id, epoch = int(init.producer_id), int(init.producer_epoch)
        sequence = 0
        outstanding = 0
        errors: list[int] = []

        def receive() -> None:
            _, response = wire.recv(ProduceRequest)
            code = response.responses[0].partition_responses[0].error_code
            if code != 0:
                errors.append(int(code))

        start = time.perf_counter()
        for size in sizes:
            if outstanding >= WIRE_IN_FLIGHT:
                receive()
                outstanding -= 1
            batch = _stamp(templates[size], producer_id, epoch, sequence if idempotent else -1)
            sequence += size
            wire.send(
                ProduceRequest(
                    transactional_id=None,
                    acks=i16(-1),
                    timeout=i32Timedelta.parse(datetime.timedelta(seconds=TIMEOUT_S)),
                    topic_data=(
                        TopicProduceData(
                            name=TopicName(topic),
                            partition_data=(
                                PartitionProduceData(index=i32(0), records=Records(batch)),
                            ),
                        ),
                    ),
                )
            )
            outstanding += 1
        while outstanding:
            receive()
            outstanding -= 1
        seconds = time.perf_counter() - start
    finally:
        wire.close()
    if errors:
        raise RuntimeError(f"{len(errors)}/{len(sizes)} Produce requests failed: {errors[:3]}")
    return seconds


CLIENT_PAIRINGS: dict[str, Callable[[str, int, bool], float]] = {
    "aiokafka": aiokafka_s,
    "kafka-python in-flight=5": lambda b, n, i: kafka_python_s(b, n, i, 5),
    "kafka-python in-flight=1": lambda b, n, i: kafka_python_s(b, n, i, 1),
    f"wire {WIRE_IN_FLIGHT} in flight": wire_s,
}


def run_clients(records: int, repeat: int, progress: bool) -> list[Pairing]:
    pairings = [Pairing("samsa", name, [], [], records) for name in CLIENT_PAIRINGS]
    with samsa_process() as bootstrap:
        for produce in CLIENT_PAIRINGS.values():  # unmeasured, as above
            produce(bootstrap, records // 10, False)
        delete_topics(bootstrap)
        for k in range(repeat):
            for pairing in pairings:
                for idempotent in in_turn((False, True), k):
                    seconds = CLIENT_PAIRINGS[pairing.name](bootstrap, records, idempotent)
                    (pairing.idempotent_s if idempotent else pairing.plain_s).append(seconds)
                    if progress:
                        kind = "idempotent" if idempotent else "plain"
                        print(
                            f"  samsa, {pairing.name}, run {k + 1}/{repeat}, {kind}: "
                            f"{records / seconds:,.0f} rec/s",
                            file=sys.stderr,
                            flush=True,
                        )
                delete_topics(bootstrap)
    return pairings


def state_us_per_batch(batches: int = STATE_BATCHES) -> float:
    """Microseconds of `check` + `apply` per batch, for one producer writing in sequence."""
    manager = ProducerStateManager(expiration_ms=3_600_000)
    headers = [_header(2_000_000_000, 0, 10 * n, 5_000_000_000 + 10 * n) for n in range(batches)]
    start = time.perf_counter()
    for header in headers:
        manager.check(header)
        manager.apply(header)
    return (time.perf_counter() - start) / batches * 1e6


# --------------------------------------------------------------------- memory
def _header(producer_id: int, epoch: int, base_sequence: int, base_offset: int) -> BatchHeader:
    records = 10
    return BatchHeader(
        base_offset=base_offset,
        batch_length=600,
        partition_leader_epoch=0,
        magic=2,
        crc=0,
        attributes=0,
        last_offset_delta=records - 1,
        base_timestamp=1_760_000_000_000 + base_offset,
        max_timestamp=1_760_000_000_000 + base_offset + records,
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=base_sequence,
        records_count=records,
    )


def producer_entry_bytes(producers: int = MEMORY_PRODUCERS) -> float:
    """Bytes per tracked producer: a ProducerStateManager holding `producers` entries, each with
    a full window of BATCHES_RETAINED batches (realistic magnitudes: ids past 2^30, offsets and
    sequences in the millions, millisecond timestamps), measured by tracemalloc and divided."""
    gc.collect()
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        manager = ProducerStateManager(expiration_ms=3_600_000)
        offset = 5_000_000_000
        for n in range(producers):
            producer_id = 2_000_000_000 + n
            # One batch past the window, so it has been full and rotated once.
            for batch in range(BATCHES_RETAINED + 1):
                manager.apply(_header(producer_id, 3, 1_000_000 + 10 * batch, offset))
                offset += 10
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
        if len(manager) != producers:
            raise RuntimeError(f"{len(manager)} producers tracked, expected {producers}")
        return (after - before) / producers
    finally:
        if not tracing:
            tracemalloc.stop()


# --------------------------------------------------------------------- report
def report_text(
    pairings: list[Pairing], state_us: float, entry_bytes: float, info: dict[str, Any]
) -> str:
    lines = [
        f"machine: {info}",
        f"produce, acks=all, {VALUE_BYTES} B values, {pairings[0].records:,} records a run, "
        "median of the runs listed per pair:",
    ]
    for p in pairings:
        ratios = ", ".join(f"{r:.2f}" for r in p.pair_ratios())
        lines.append(
            f"  {p.target:<5} {p.name:<26} plain {p.rate(p.plain_s):>9,.0f} rec/s   idempotent "
            f"{p.rate(p.idempotent_s):>9,.0f} rec/s   ratio {p.ratio:.3f} "
            f"(overhead {1 - p.ratio:.1%}); per pair {ratios}"
        )
    lines.append(
        f"broker side: ProducerStateManager check + apply {state_us:.2f} us per batch "
        f"({STATE_BATCHES:,} batches)"
    )
    lines.append(
        f"memory: {entry_bytes:,.0f} bytes per tracked producer with a full window of "
        f"{BATCHES_RETAINED} batches ({MEMORY_PRODUCERS:,} producers, tracemalloc)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m samsa.bench.idempotence",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    parser.add_argument(
        "--client-repeat",
        type=int,
        default=DEFAULT_CLIENT_REPEAT,
        help="runs per mode for aiokafka, kafka-python and wire (default %(default)s)",
    )
    parser.add_argument("--no-clients", action="store_true", help="confluent-kafka only, as before")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    info = {**machine(), "loadavg_start": os.getloadavg()}
    entry_bytes = producer_entry_bytes()
    state_us = state_us_per_batch()
    pairings = [
        pairing
        for target in TARGETS
        for pairing in run_throughput(target, args.records, args.repeat, progress=not args.json)
    ]
    if not args.no_clients and args.client_repeat > 0:
        pairings += run_clients(args.records, args.client_repeat, progress=not args.json)
        info["aiokafka"] = metadata.version("aiokafka")
        info["kafka_python"] = metadata.version("kafka-python")
    info["loadavg_end"] = os.getloadavg()
    if args.json:
        report = {
            "machine": info,
            "throughput": {f"{p.target}, {p.name}": p.as_dict() for p in pairings},
            "state_us_per_batch": state_us,
            "producer_entry_bytes": entry_bytes,
        }
        print(json.dumps(report))
    else:
        print(report_text(pairings, state_us, entry_bytes, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
