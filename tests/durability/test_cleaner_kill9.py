"""kill -9 of a real `samsa serve` while its log cleaner compacts a topic, at moments spread
over the passes (the cleaner is slowed to `log.cleaner.io.max.bytes.per.second`, so a pass
spans the kills). After every restart the topic reads back as the old log or the new one,
never a mix: each record exactly as produced at its offset, offsets increasing, every key's
latest value there; and the cleaner finishes the job."""

from __future__ import annotations

import os
import random
import time

from confluent_kafka import Producer

from durability.durability_support import read_partitions
from samsa.log.swap import CLEANED_SUFFIX, SWAP_MANIFEST
from samsa.testing.process import BrokerProcess
from samsa.testing.topics import create_topic

TOPIC = "compacted"
KEYS = 50
RECORDS = 6000
KILLS = 3
DEADLINE_S = 30.0


def read_all(bootstrap: str) -> list[tuple[int, bytes | None, bytes | None]]:
    # The active segment is never cleaned: the last record is still at the high watermark - 1.
    return read_partitions(bootstrap, TOPIC, 1, DEADLINE_S)[0]


def test_kill9_during_cleaning_leaves_the_old_log_or_the_new(tmp_path: object) -> None:
    data_dir = os.path.join(str(tmp_path), "data")
    broker = BrokerProcess(
        data_dir, ["log.cleaner.io.max.bytes.per.second=400000", "log.cleaner.backoff.ms=100"]
    ).start()
    try:
        create_topic(
            broker.bootstrap,
            TOPIC,
            1,
            {
                "cleanup.policy": "compact",
                "segment.bytes": "16384",
                "min.cleanable.dirty.ratio": "0.01",
            },
            timeout_s=DEADLINE_S,
        )
        # Small batches, so the log has many segments and a pass many steps.
        producer = Producer(
            {"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "batch.size": 4096}
        )
        written: list[tuple[bytes, bytes]] = []
        for n in range(RECORDS):
            key, value = b"k%d" % (n % KEYS), b"value-%d-" % n + b"x" * 40
            producer.produce(TOPIC, value, key, partition=0)
            written.append((key, value))
        assert producer.flush(DEADLINE_S) == 0
        latest = {key: (n, value) for n, (key, value) in enumerate(written)}
        rng = random.Random(19)
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.2, 1.2))
            broker.kill9()
            broker.start()
            seen = read_all(broker.bootstrap)
            offsets = [offset for offset, _, _ in seen]
            assert offsets == sorted(set(offsets))
            for offset, got_key, got_value in seen:
                assert (got_key, got_value) == written[offset], offset  # as written
            kept = {offset for offset, _, _ in seen}
            assert all(n in kept for n, _ in latest.values())  # every key's latest is there
        # Undisturbed, the cleaner finishes: below the active segment, one record per key.
        deadline = time.monotonic() + DEADLINE_S
        while True:
            seen = read_all(broker.bootstrap)
            if len(seen) < 2 * KEYS + 400 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(seen) < 2 * KEYS + 400, len(seen)
        assert {key: value for _, key, value in seen if key is not None} == {
            k: v for k, (_, v) in latest.items()
        }
    finally:
        broker.stop()
    names = os.listdir(os.path.join(data_dir, f"{TOPIC}-0"))
    assert SWAP_MANIFEST not in names
    assert not [name for name in names if name.endswith(CLEANED_SUFFIX)]
