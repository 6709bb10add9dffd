"""Admitting connections (`samsa.server.listener`): max.connections, max.connections.per.ip and
its overrides, the file-descriptor reserve, and accept() running out of descriptors."""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kio.schema.metadata.v12.request import MetadataRequest

from protocol.wire import Conn, create_topics_request
from samsa import config as broker_config
from samsa.broker.core import Broker, Endpoint
from samsa.log.storage import OsStorage
from samsa.protocol import codec
from samsa.server.listener import ConnectionQuotas
from samsa.server.run import bind, wall_clock_ms
from samsa.server.server import BrokerServer
from samsa.testing import BrokerProcess, EmbeddedBroker

METADATA = MetadataRequest(
    topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False
)


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def answered(sock: socket.socket) -> bool:
    """True if a Metadata request on `sock` is answered; False if the broker closed it."""
    try:
        sock.sendall(codec.encode_request(1, "limits", METADATA))
        header = sock.recv(4, socket.MSG_WAITALL)
        if len(header) < 4:
            return False
        size: int = struct.unpack(">i", header)[0]
        return len(sock.recv(size, socket.MSG_WAITALL)) == size
    except (ConnectionResetError, BrokenPipeError):
        return False


def refused(broker: EmbeddedBroker) -> int:
    def read() -> int:
        assert broker.server is not None
        return broker.server.listener.refused

    return broker.call(read)


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused a connection" in r.getMessage()]


# --------------------------------------------------------------------- limits by setting
def test_max_connections_closes_new_connections_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {"max.connections": "3"}
    with (
        caplog.at_level(logging.WARNING, "samsa.server"),
        EmbeddedBroker(data_dir=str(tmp_path / "data"), settings=settings) as broker,
    ):
        admitted = [connect(broker.port) for _ in range(3)]
        assert all(answered(sock) for sock in admitted)
        over = [connect(broker.port) for _ in range(50)]  # each closed at once
        try:
            assert not any(answered(sock) for sock in over)
            assert refused(broker) == 50
            # 50 refusals, one log line (the rest are counted for the next one)
            assert len(refusal_lines(caplog)) == 1, refusal_lines(caplog)
            assert "max.connections=3" in refusal_lines(caplog)[0]
            assert all(answered(sock) for sock in admitted)  # the admitted ones are served
            admitted.pop().close()
            deadline = time.monotonic() + 5
            while not answered(late := connect(broker.port)):
                late.close()
                assert time.monotonic() < deadline, "a freed slot was never given again"
                time.sleep(0.05)
            admitted.append(late)
        finally:
            for sock in admitted + over:
                sock.close()


def test_max_connections_per_ip_and_its_overrides(tmp_path: Path) -> None:
    """Two connections from 127.0.0.1; 127.0.0.2 has an override of four."""
    settings = {
        "max.connections.per.ip": "2",
        "max.connections.per.ip.overrides": "127.0.0.2:4",
    }
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), settings=settings) as broker:
        socks = []
        try:
            socks = [connect(broker.port) for _ in range(3)]
            assert [answered(sock) for sock in socks] == [True, True, False]
            others = [connect(broker.port, source="127.0.0.2") for _ in range(5)]
            socks += others
            assert [answered(sock) for sock in others] == [True] * 4 + [False]
            assert refused(broker) == 2
        finally:
            for sock in socks:
                sock.close()


def test_quotas_count_per_address() -> None:
    config = broker_config.load(
        {
            "max.connections": "4",
            "max.connections.per.ip": "1",
            "max.connections.per.ip.overrides": "10.0.0.1:3,[::1]:0",
        }
    )
    quotas = ConnectionQuotas(config)
    assert quotas.admit("10.0.0.2") is None
    assert quotas.admit("10.0.0.2") is not None
    assert [quotas.admit("10.0.0.1") for _ in range(3)] == [None] * 3
    assert "max.connections=4" in (quotas.admit("10.0.0.3") or "")
    quotas.release("10.0.0.2")
    assert quotas.admit("10.0.0.3") is None
    assert "max.connections.per.ip=0" in (ConnectionQuotas(config).admit("::1") or "")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max.connections.per.ip": "0"}, "overrides"),
        ({"max.connections.per.ip.overrides": "broker-host:10"}, "IP addresses"),
        ({"max.connections.per.ip.overrides": "127.0.0.1"}, "IP:COUNT"),
        ({"max.connections": "-1"}, "at least 0"),
    ],
)
def test_connection_settings_are_checked(settings: dict[str, str], message: str) -> None:
    with pytest.raises(broker_config.ConfigError, match=message):
        broker_config.load(settings)


def test_ipv4_mapped_addresses_count_as_ipv4() -> None:
    assert broker_config.normalised_ip("::ffff:127.0.0.1") == "127.0.0.1"
    assert broker_config.normalised_ip("0:0::1") == "::1"


# --------------------------------------------------------------------- accept() out of descriptors
class _ExhaustedSocket:
    """A listening socket whose accept() fails with EMFILE until told otherwise."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.exhausted = True
        self.failures = 0

    def accept(self) -> tuple[socket.socket, Any]:
        if self.exhausted:
            self.failures += 1
            raise OSError(errno.EMFILE, "Too many open files")
        return self._sock.accept()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_emfile_pauses_accepting_logs_once_and_serves_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """accept() failing with EMFILE for 1.5 s: the broker retries a few times a second (not in a
    busy loop), logs one line (no traceback), keeps serving the connection it has, and accepts
    the waiting client once descriptors are back."""

    async def scenario() -> tuple[int, int, float]:
        broker = Broker(
            broker_config.load({}), OsStorage(), str(tmp_path), wall_clock_ms, Endpoint("x", 1)
        )
        broker.open()
        listening = _ExhaustedSocket(bind("127.0.0.1", 0))
        listening.exhausted = False
        server = BrokerServer(broker, listening)  # type: ignore[arg-type]
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            listening.exhausted = True
            waiting_reader, waiting_writer = await asyncio.open_connection("127.0.0.1", server.port)
            waiting_writer.write(codec.encode_request(9, "late", METADATA))
            started = time.monotonic()
            while time.monotonic() - started < 1.5:  # the admitted client is served meanwhile
                writer.write(codec.encode_request(1, "early", METADATA))
                (size,) = struct.unpack(">i", await asyncio.wait_for(reader.readexactly(4), 1))
                await reader.readexactly(size)
                await asyncio.sleep(0.1)
            listening.exhausted = False
            header = await asyncio.wait_for(waiting_reader.readexactly(4), 5)
            served_after = time.monotonic() - started
            assert struct.unpack(">i", header)[0] > 0
            writer.close()
            waiting_writer.close()
            return listening.failures, server.listener.accept_failures, served_after
        finally:
            await server.stop()

    with caplog.at_level(logging.WARNING, "samsa.server"):
        failures, counted, served_after = asyncio.run(scenario())
    lines = [r for r in caplog.records if "accept() failed" in r.getMessage()]
    print(f"{failures} failed accepts in 1.5 s, {len(lines)} log line(s)")
    assert failures == counted
    assert 3 <= failures <= 40, f"{failures} accept attempts in 1.5 s"
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "Too many open files" in lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"
    assert served_after < 2.0


IDLE_CLIENTS = 1_100
FD_LIMIT = 1_024


def test_a_fresh_client_is_answered_with_1100_idle_connections_under_ulimit_1024(
    tmp_path: Path,
) -> None:
    """A real `samsa serve` whose open-files limit drops to 1,024 (soft and hard), then 1,100
    idle connections: accept() runs out of descriptors; the broker says so in a line or two
    (no tracebacks), closes the connections idle longest to keep a reserve for its own files,
    keeps serving an active client, and answers a CreateTopics from a fresh client. Before,
    the CreateTopics got no answer and accept() logged thousands of tracebacks."""
    broker = BrokerProcess(str(tmp_path / "data")).start()
    idle: list[socket.socket] = []
    try:
        assert broker.process is not None
        pid = broker.process.pid
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))
        with Conn(broker.bootstrap) as active:
            assert active.request(METADATA).brokers
            started = time.monotonic()
            for i in range(IDLE_CLIENTS):
                idle.append(socket.create_connection(("127.0.0.1", broker.port), timeout=5))
                if i % 100 == 0:
                    assert active.request(METADATA).brokers  # served all along
            time.sleep(1.5)  # the first ones have been idle long enough to be let go
            assert active.request(METADATA).brokers
            with Conn(broker.bootstrap, timeout_s=20) as fresh:
                created = fresh.request(create_topics_request("fresh", 3))
            took = time.monotonic() - started
            assert created.topics[0].error_code == 0, created.topics[0]
            assert active.request(METADATA).brokers
        open_fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
        output = list(broker.output)
        accept_lines = [line for line in output if "accept() failed" in line]
        print(
            f"CreateTopics answered {took:.1f} s after the first of {IDLE_CLIENTS} idle "
            f"connections; broker fds {open_fds}; {len(accept_lines)} accept() line(s); "
            f"{sum('closed the connection from' in line for line in output)} eviction line(s)"
        )
        assert open_fds <= FD_LIMIT
        assert not [line for line in output if "Traceback" in line], output[-20:]
        assert 1 <= len(accept_lines) <= 3, accept_lines
    finally:
        for sock in idle:
            sock.close()
        broker.stop()


def test_samsa_serve_raises_its_soft_open_files_limit_to_the_hard_one() -> None:
    """As the JVM does for Kafka: a shell's soft 1,024 does not cap the broker."""

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))

    script = (
        "import resource; from samsa.server.run import raise_open_files_limit; "
        "raise_open_files_limit(); print(resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        preexec_fn=low_soft_limit,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert done.stdout.strip() == "(4096, 4096)"
