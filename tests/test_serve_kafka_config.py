"""`samsa serve --config server.properties` with Kafka's own stock files (3.9's
config/kraft/server.properties, 4.0's config/server.properties; their settings are in
tests/fixtures) serves a real client: the file's listeners (not its CONTROLLER one), its
log.dirs and its node.id are honoured, and its cluster settings named once in one warning."""

from __future__ import annotations

import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka
import pytest

from samsa.testing.process import SAMSA, START_TIMEOUT_S, free_port

FIXTURES = Path(__file__).parent / "fixtures"
STOCK_FILES = ["kafka-3.9-kraft-server.properties", "kafka-4.0-server.properties"]
CLIENT_TIMEOUT_S = 20.0


class Served:
    def __init__(self, *argv: str) -> None:
        self.process = subprocess.Popen(
            [SAMSA, "serve", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.output: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.output.append(line.rstrip("\n"))
                if line.strip() == "ready":
                    ready.set()
            ready.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not ready.wait(START_TIMEOUT_S) or self.process.poll() is not None:
            self.stop()
            pytest.fail("samsa serve did not start:\n" + "\n".join(self.output))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.reader.join(5)


@pytest.fixture
def serve() -> Iterator[type[Served]]:
    started: list[Served] = []

    class Tracked(Served):
        def __init__(self, *argv: str) -> None:
            super().__init__(*argv)
            started.append(self)

    yield Tracked
    for one in started:
        one.stop()


def produce_and_consume(bootstrap: str) -> tuple[int, list[bytes]]:
    """The broker id Metadata gives, and the values read back of three produced."""
    topic = f"stock-{uuid.uuid4().hex[:8]}"
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True}
    )
    for value in (b"a", b"b", b"c"):
        producer.produce(topic, value)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    brokers = producer.list_topics(timeout=CLIENT_TIMEOUT_S).brokers
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": topic,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    try:
        while len(values) < 3:
            message = consumer.poll(CLIENT_TIMEOUT_S)
            assert message is not None, f"read {values} only"
            read = message.value()
            if message.error() is None and read is not None:
                values.append(read)
    finally:
        consumer.close()
    [broker_id] = brokers
    return broker_id, values


def refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def not_applicable_warnings(output: list[str]) -> list[str]:
    return [line for line in output if "WARNING" in line and "not applicable" in line]


@pytest.mark.parametrize("stock", STOCK_FILES)
def test_a_stock_server_properties_serves_a_client(
    serve: type[Served], tmp_path: Path, stock: str
) -> None:
    # The stock file with its ports and its log.dirs moved to free ones: nothing else changed.
    port, controller_port = free_port(), free_port()
    data_dir = tmp_path / "kraft-combined-logs"
    text = (FIXTURES / stock).read_text()
    text = text.replace(":9092", f":{port}").replace(":9093", f":{controller_port}")
    text = text.replace("log.dirs=/tmp/kraft-combined-logs", f"log.dirs={data_dir}")
    config = tmp_path / "server.properties"
    config.write_text(text)

    served = serve("--config", str(config))
    broker_id, values = produce_and_consume(f"localhost:{port}")
    assert broker_id == 1  # node.id=1
    assert values == [b"a", b"b", b"c"]
    assert (data_dir / "meta.properties").exists(), "log.dirs is not the data dir"
    assert refuses_connections(controller_port), "the CONTROLLER listener was bound"
    [warning] = not_applicable_warnings(served.output)
    for name in ("process.roles", "num.network.threads", "transaction.state.log.min.isr"):
        assert warning.count(name) == 1, warning


def test_the_command_line_wins_over_the_file(serve: type[Served], tmp_path: Path) -> None:
    # The stock file as it is (port 9092, /tmp/kraft-combined-logs), overridden on the command line.
    port = free_port()
    data_dir = tmp_path / "data"
    stock = FIXTURES / STOCK_FILES[0]
    serve("--config", str(stock), "--port", str(port), "--data-dir", str(data_dir))
    broker_id, values = produce_and_consume(f"127.0.0.1:{port}")
    assert (broker_id, values) == (1, [b"a", b"b", b"c"])
    assert (data_dir / "meta.properties").exists()


def test_several_log_dirs_are_refused_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "server.properties"
    config.write_text(f"log.dirs={tmp_path / 'a'},{tmp_path / 'b'}\n")
    done = subprocess.run(
        [SAMSA, "serve", "--config", str(config), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"samsa serve: log.dirs={tmp_path / 'a'},{tmp_path / 'b'}: samsa keeps its data in one "
        "dir, 2 are given"
    ]
