"""A hanging transaction (KIP-664): open in a partition while its coordinator knows nothing of
it, so the partition's last stable offset stays put until someone aborts it. samsa's produce
path cannot make one (KIP-890's verification), but a coordinator whose state was lost leaves
one behind: the test writes the batch into the partition's log while the broker is stopped, as
that broker would have, then checks the console flags it and, with --allow-writes, aborts it."""

from __future__ import annotations

import time
from pathlib import Path

from kio.schema.errors import ErrorCode

from samsa.console.server import ConsoleServer, ConsoleSettings
from samsa.log.partition import LogConfig, PartitionLog, partition_directory
from samsa.log.storage import OsStorage
from samsa.protocol.batch import parse_header
from samsa.protocol.batch_writer import record_batch
from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.topics import create_topics

from .conftest import TEST_POLL_INTERVAL_S, TEST_REQUESTS_PER_S
from .pages import get, markers, post

TOPIC = "hang"
PRODUCER_ID = 7777  # no InitProducerId ever gave it out: no coordinator knows it
TRANSACTIONAL = 0x10  # the batch attribute


def plant_open_transaction(data_dir: str) -> None:
    now_ms = int(time.time() * 1000)
    log = PartitionLog.open(
        OsStorage(), partition_directory(data_dir, TOPIC, 0), TOPIC, 0, LogConfig(), now_ms, False
    )
    batch = record_batch(
        [b"stuck"],
        timestamp_ms=now_ms,
        producer_id=PRODUCER_ID,
        producer_epoch=0,
        base_sequence=0,
        attributes=TRANSACTIONAL,
    )
    # The coordinator that let it in (KIP-890's check) is the one whose state was then lost.
    log.append(batch, parse_header(batch), now_ms, verify_txn=lambda _: ErrorCode.none)
    assert log.close()


def test_a_hanging_transaction_is_flagged_and_released_by_an_abort(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    with EmbeddedBroker(data_dir) as broker:
        create_topics(broker.bootstrap, {TOPIC: 1})
        broker.stop()
        plant_open_transaction(data_dir)
        broker.start()
        settings = ConsoleSettings(
            broker.bootstrap,
            port=0,
            poll_interval_s=TEST_POLL_INTERVAL_S,
            requests_per_s=TEST_REQUESTS_PER_S,
            allow_writes=True,
        )
        with ConsoleServer(settings) as console:
            held = markers(get(console.url, f"/topics/{TOPIC}/0").body)
            assert (held["lso"], held["hw"]) == (0, 1)  # the open transaction holds the LSO
            page = get(console.url, "/transactions").body
            assert page.count('data-hanging="true"') == 1
            form = {"topic": TOPIC, "partition": "0", "producer_id": str(PRODUCER_ID)}
            done = post(console.url, "/transactions/abort", form)
            assert done.status == 200
            released = markers(get(console.url, f"/topics/{TOPIC}/0").body)
            assert released["lso"] == released["hw"] == 2  # the ABORT marker, after the batch
            assert 'data-hanging="true"' not in get(console.url, "/transactions").body
