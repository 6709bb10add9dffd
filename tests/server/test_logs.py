"""What a real broker logs: the settings it starts with, what recovery did after a kill -9, a
burst of identical warnings as a count, and one line per event."""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer

from samsa import ratelog
from samsa.logformat import OneLineFormatter
from samsa.testing import BrokerProcess, EmbeddedBroker
from samsa.testing.topics import create_topic

TIMEOUT_S = 15.0
TOPIC = "recovered"
TORN_BYTES = 37


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """`samsa serve` with two settings changed; records written; kill -9; a torn tail added to
    its active segment; started again."""
    data_dir = str(tmp_path_factory.mktemp("logs") / "data")
    broker = BrokerProcess(data_dir, {"num.partitions": "2", "log.retention.ms": "3600000"})
    broker.start()
    try:
        create_topic(broker.bootstrap, TOPIC, partitions=1)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        for i in range(5):
            producer.produce(TOPIC, f"v{i}".encode())
            producer.flush(TIMEOUT_S)  # five batches, each acknowledged
        broker.kill9()
        with open(os.path.join(data_dir, f"{TOPIC}-0", "00000000000000000000.log"), "ab") as f:
            f.write(b"\0" * TORN_BYTES)  # a write the crash cut short
        broker.start()
        yield broker
    finally:
        broker.stop()


def test_start_up_logs_the_settings_that_differ_from_the_defaults(
    crashed: BrokerProcess,
) -> None:
    lines = [line for line in crashed.output if "settings differing from the defaults" in line]
    assert len(lines) == 2  # one per start
    listed = set(lines[0].split("settings differing from the defaults: ")[1].split(", "))
    assert {"num.partitions=2", "log.retention.ms=3600000"} <= listed
    assert not any(item.startswith(("log.segment.bytes=", "node.id=")) for item in listed)


def test_recovery_after_kill_9_logs_what_it_cut_per_partition(crashed: BrokerProcess) -> None:
    recovered = [line for line in crashed.output if f"recovered {TOPIC}-0:" in line]
    assert len(recovered) == 1, crashed.output
    assert re.search(
        rf"recovered {TOPIC}-0: 1 segment\(s\) rescanned \(5 batch\(es\)\) and their indexes "
        rf"rebuilt, {TORN_BYTES} byte\(s\) cut, 0 producer batch\(es\) replayed$",
        recovered[0],
    ), recovered[0]
    # The first start found no earlier shutdown: nothing to recover, nothing logged.
    first_start = crashed.output[: crashed.output.index("ready")]
    assert not any("recovered " in line for line in first_start)


def test_a_burst_of_identical_warnings_is_one_line_and_a_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratelog, "INTERVAL_S", 0.5)  # read when the broker's server is made
    caplog.set_level(logging.WARNING, logger="samsa.server")
    burst = 30
    with EmbeddedBroker() as broker:
        for _ in range(burst):
            with socket.create_connection(("127.0.0.1", broker.port), TIMEOUT_S) as sock:
                sock.sendall(b"\xff\xff\xff\xff")  # a negative frame size: closed at once
                sock.settimeout(TIMEOUT_S)
                assert sock.recv(1) == b""  # the broker closed it
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and _represented(caplog) < burst:
            time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if _ours(r.getMessage())]
    assert _represented(caplog) == burst, lines
    assert len(lines) <= 4, lines  # the first, then a count per interval (0.5 s)
    assert any("like this in the last 0.5 s" in line for line in lines), lines


def _ours(message: str) -> bool:
    """This test's warnings: another broker alive in the same process (a package's fixture,
    under pytest-xdist) logs its own "closing connection" lines, for other reasons."""
    return "closing connection from" in message and "frame of -1 bytes" in message


def _represented(caplog: pytest.LogCaptureFixture) -> int:
    """Warnings the lines stand for: one each, plus the counts they carry."""
    total = 0
    for record in caplog.records:
        message = record.getMessage()
        if not _ours(message):
            continue
        found = re.search(r"\((\d+) (more )?like this in the last", message)
        if found is None:
            total += 1
        else:
            total += int(found[1]) + (1 if found[2] else 0)
    return total


def test_an_exception_is_summed_up_on_its_line_unless_debug() -> None:
    logger = logging.getLogger("samsa.test")
    try:
        raise OSError("disk on fire\nsecond line")
    except OSError:
        record = logger.makeRecord(
            "samsa.test", logging.ERROR, __file__, 1, "fsync failed", (), sys.exc_info()
        )
    line = OneLineFormatter(debug=False).format(record)
    assert "\n" not in line
    assert line.endswith("fsync failed (OSError: disk on fire\\nsecond line)")
    assert "Traceback" in OneLineFormatter(debug=True).format(record)
