"""The last stable offset under concurrent transactions.

Transactional producers run random transactions (some aborted, some spanning several partitions)
while a read_committed consumer polls and a raw fetcher sends Fetch at isolation_level=1. The
consumer must never return a record of an aborted transaction, nor of one whose commit had not
even been asked for when it was returned; every committed transaction must be seen whole. Every
raw read_committed response must stop below its partition's last_stable_offset.
"""

from __future__ import annotations

import datetime
import random
import threading
import time
from dataclasses import dataclass, field

import confluent_kafka
import pytest
from kio.schema.fetch.v12.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.fetch.v12.response import FetchResponse
from kio.schema.types import TopicName
from kio.static.primitive import i8, i32, i32Timedelta, i64

from samsa.admin.client import AdminClient
from samsa.protocol.batch import iter_batches
from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.topics import create_topics, placed, value_of

from .support import all_partitions, txn_producer, wait_stable

pytestmark = pytest.mark.interop

TOPICS = {"lso": 3}
TPS = all_partitions(TOPICS)


@dataclass
class TxnRecord:
    records: int
    commit: bool | None = None  # None: unknown (still open, or commit failed)
    commit_asked_s: float = float("inf")


@dataclass
class Ledger:
    txns: dict[tuple[int, int], TxnRecord] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_producer(
    bootstrap: str, index: int, txns: int, seed: int, ledger: Ledger, errors: list[BaseException]
) -> None:
    try:
        rng = random.Random(seed * 31 + index)
        producer = txn_producer(bootstrap, f"lso-{index}", **{"linger.ms": 1})
        producer.init_transactions(30)
        for n in range(txns):
            partitions = rng.sample(range(TOPICS["lso"]), rng.randint(1, 3))
            count = rng.randint(1, 20)
            entry = TxnRecord(count)
            with ledger.lock:
                ledger.txns[(index, n)] = entry
            producer.begin_transaction()
            for i in range(count):
                p = partitions[i % len(partitions)]
                producer.produce("lso", f"{index}:{n}:{i}".encode(), partition=p)
            time.sleep(rng.random() * 0.02)  # keep it open a while
            if rng.random() < 0.35:
                if rng.random() < 0.7:
                    producer.flush(30)  # the aborted records are really written
                producer.abort_transaction(30)
                entry.commit = False
            else:
                entry.commit_asked_s = time.monotonic()
                producer.commit_transaction(30)
                entry.commit = True
    except BaseException as exc:
        errors.append(exc)


@dataclass
class RawStats:
    fetches: int = 0
    held_back: int = 0  # responses with LSO < HW: an open transaction was being hidden
    violations: list[str] = field(default_factory=list)


def raw_fetcher(bootstrap: str, stop: threading.Event, stats: RawStats) -> None:
    next_offset = {p: 0 for _, p in TPS}
    with AdminClient(bootstrap) as admin:
        while not stop.is_set():
            request = FetchRequest(
                max_wait=i32Timedelta.parse(datetime.timedelta(milliseconds=0)),
                min_bytes=i32(0),
                isolation_level=i8(1),
                topics=(
                    FetchTopic(
                        topic=TopicName("lso"),
                        partitions=tuple(
                            FetchPartition(
                                partition=i32(p),
                                fetch_offset=i64(next_offset[p]),
                                partition_max_bytes=i32(1 << 22),
                            )
                            for _, p in TPS
                        ),
                    ),
                ),
                forgotten_topics_data=(),
            )
            response: FetchResponse = admin.send(request)
            for topic in response.responses:
                for part in topic.partitions:
                    stats.fetches += 1
                    lso, hw = int(part.last_stable_offset), int(part.high_watermark)
                    if lso < hw:
                        stats.held_back += 1
                    if lso > hw:
                        stats.violations.append(f"p{part.partition_index}: LSO {lso} > HW {hw}")
                    for _, header in iter_batches(bytes(part.records or b"")):
                        next_offset[int(part.partition_index)] = header.next_offset
                        if header.last_offset >= lso:
                            stats.violations.append(
                                f"p{part.partition_index}: batch {header.base_offset}-"
                                f"{header.last_offset} returned with LSO {lso}"
                            )
            time.sleep(0.01)


def test_read_committed_never_sees_aborted_or_open(samsa_broker: EmbeddedBroker) -> None:
    bootstrap = samsa_broker.bootstrap
    create_topics(bootstrap, TOPICS)
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    ledger = Ledger()
    errors: list[BaseException] = []
    seen: list[tuple[float, int, bytes]] = []
    stop_readers = threading.Event()
    stats = RawStats()

    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "lso-check",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
            "log_level": 0,
        }
    )
    consumer.assign([confluent_kafka.TopicPartition(t, p, 0) for t, p in TPS])

    ends: dict[tuple[str, int], int] = {}  # set once the producers are done
    caught_up = threading.Event()

    def read() -> None:
        # consume() and position() from one thread: librdkafka's consumer is not shared.
        while not stop_readers.is_set():
            for message in consumer.consume(500, 0.05):
                if message.error() is None:
                    seen.append((time.monotonic(), placed(message)[0], value_of(message)))
            if ends and not caught_up.is_set():
                positions = consumer.position(
                    [confluent_kafka.TopicPartition(t, p) for t, p in TPS]
                )
                if all(tp.offset >= ends[(tp.topic, tp.partition)] for tp in positions):
                    caught_up.set()

    threads = [
        threading.Thread(target=read),
        threading.Thread(target=raw_fetcher, args=(bootstrap, stop_readers, stats)),
    ]
    producers = [
        threading.Thread(target=run_producer, args=(bootstrap, i, 40, seed, ledger, errors))
        for i in range(3)
    ]
    for thread in threads + producers:
        thread.start()
    for thread in producers:
        thread.join(120)
    ends.update(wait_stable(bootstrap, TPS))
    caught_up.wait(30)
    stop_readers.set()
    for thread in threads:
        thread.join(30)
    consumer.close()
    assert not errors, errors
    assert caught_up.is_set(), f"the read_committed reader never reached {ends}"

    assert not stats.violations, stats.violations[:5]
    assert stats.fetches > 0 and stats.held_back > 0, stats  # open transactions were hidden

    counts: dict[tuple[int, int], int] = {}
    values: set[bytes] = set()
    last_txn: dict[tuple[int, int], int] = {}  # (partition, producer) -> last txn seen
    for when, partition, value in seen:
        assert value not in values, f"{value!r} returned twice"
        values.add(value)
        producer, n, _ = (int(x) for x in value.decode().split(":"))
        txn = ledger.txns[(producer, n)]
        assert txn.commit is True, f"{value!r} of a transaction that ended {txn.commit}"
        assert when >= txn.commit_asked_s, f"{value!r} returned before its commit was asked"
        assert n >= last_txn.get((partition, producer), -1), "out of order"
        last_txn[(partition, producer)] = n
        counts[(producer, n)] = counts.get((producer, n), 0) + 1
    committed = {key: t.records for key, t in ledger.txns.items() if t.commit}
    aborted = [key for key, t in ledger.txns.items() if t.commit is False]
    assert committed and aborted, "the random script should have both outcomes"
    assert counts == committed
