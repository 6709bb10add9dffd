"""What one connection can cost the broker, measured: a client that pipelines fetches and never
reads, a size prefix with nothing behind it, an idle connection, and a closed one (freed at once,
without the cyclic GC)."""

from __future__ import annotations

import dataclasses
import gc
import os
import socket
import struct
import time
import tracemalloc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12.request import FetchRequest
from kio.schema.metadata.v12.request import MetadataRequest
from kio.static.primitive import i32

from protocol.wire import Conn, create_topics_request, fetch_request, make_batch, produce_request
from samsa.protocol import codec
from samsa.testing import BrokerProcess, EmbeddedBroker

MIB = 1024 * 1024
METADATA = MetadataRequest(
    topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False
)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def large_fetch(topic: str) -> FetchRequest:
    """Everything in partition 0, up to 60 MiB, at once."""
    request = fetch_request(topic, [0])
    [wanted] = request.topics
    [partition] = wanted.partitions
    partition = dataclasses.replace(partition, partition_max_bytes=i32(60 * MIB))
    return dataclasses.replace(
        request,
        max_bytes=i32(60 * MIB),
        topics=(dataclasses.replace(wanted, partitions=(partition,)),),
    )


def stalled_socket(port: int) -> socket.socket:
    """A client socket with a tiny receive window, so the broker's writes back up at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


def reset(sock: socket.socket) -> None:
    """Close with a RST, as a crashed client does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.fixture
def process_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(str(tmp_path / "data")).start()
    try:
        yield broker
    finally:
        broker.stop()


# --------------------------------------------------------------------- a client that never reads
def test_a_client_that_pipelines_fetches_and_never_reads_is_bounded(
    process_broker: BrokerProcess,
) -> None:
    """30 pipelined fetches of 8 MB each (240 MB of responses) from a client that reads
    nothing: the broker (a real `samsa serve`, default settings) grows by about its
    per-connection response bound (16 MiB) and one response, serves another client at once
    meanwhile, and answers every fetch in order once the client reads. Before the bound it grew
    by ~8 MB per request (+312 MiB for 40)."""
    broker = process_broker
    assert broker.process is not None
    pid = broker.process.pid
    with Conn(broker.bootstrap) as admin:
        assert admin.request(create_topics_request("unread", 1)).topics[0].error_code == 0
        for _ in range(8):
            produced = admin.request(
                produce_request("unread", {0: make_batch([os.urandom(1_000_000)])})
            )
            assert produced.responses[0].partition_responses[0].error_code == ErrorCode.none
        admin.request(large_fetch("unread"))  # the broker's caches warm, before measuring
    time.sleep(0.5)
    before = rss_bytes(pid)
    count = 30
    sock = stalled_socket(broker.port)
    try:
        sock.sendall(
            b"".join(codec.encode_request(i, "p", large_fetch("unread")) for i in range(count))
        )
        time.sleep(2.0)  # all the broker is willing to do
        grown = rss_bytes(pid) - before
        started = time.monotonic()
        with Conn(broker.bootstrap) as other:
            assert other.request(METADATA).brokers
            [partition] = other.request(fetch_request("unread", [0])).responses[0].partitions
            assert partition.error_code == ErrorCode.none
        other_s = time.monotonic() - started
        print(f"RSS grew {grown / MIB:.0f} MiB; another client answered in {other_s * 1000:.0f} ms")
        assert grown < 64 * MIB, f"the broker grew {grown / MIB:.0f} MiB for a stalled client"
        assert other_s < 2.0
        reader = Conn.__new__(Conn)
        reader.sock = sock
        sock.settimeout(30)
        for i in range(count):
            correlation_id, response = reader.recv(FetchRequest)
            assert correlation_id == i
            [partition] = response.responses[0].partitions
            assert partition.error_code == ErrorCode.none
            assert len(partition.records) > 7_900_000
    finally:
        reset(sock)


def test_a_size_prefix_reserves_nothing(process_broker: BrokerProcess) -> None:
    """20 connections each announce a 100 MiB request and send one byte of it: the broker
    grows by the bytes that came (a read buffer each), not by the 2 GB announced. Before, the
    room for the whole frame was made once its second segment arrived: +1.3 to 1.5 GiB of RSS
    for these 20 connections."""
    broker = process_broker
    assert broker.process is not None
    pid = broker.process.pid
    time.sleep(0.5)
    before = rss_bytes(pid)
    socks = []
    try:
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", broker.port))
            sock.sendall(struct.pack(">i", 100 * MIB))
            socks.append(sock)
        time.sleep(0.2)  # the prefix and the byte arrive apart, as they did in the report
        for sock in socks:
            sock.sendall(b"x")
        time.sleep(1.0)
        grown = rss_bytes(pid) - before
        print(f"RSS grew {grown / MIB:.1f} MiB for 20 connections announcing 100 MiB each")
        assert grown < 16 * MIB, f"the broker grew {grown / MIB:.0f} MiB"
        with Conn(broker.bootstrap) as other:
            assert other.request(METADATA).brokers
    finally:
        for sock in socks:
            sock.close()


# --------------------------------------------------------------------- idle connections
def test_idle_connections_are_closed(tmp_path: Path) -> None:
    """connections.max.idle.ms: a connection with no bytes in or out for that long is closed,
    a silent one and one that sent half a request alike; a connection in use stays."""
    idle_ms = 400
    settings = {"connections.max.idle.ms": str(idle_ms)}
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), settings=settings) as broker:
        silent = Conn(broker.bootstrap)
        half = Conn(broker.bootstrap)
        busy = Conn(broker.bootstrap)
        try:
            started = time.monotonic()
            half.send_raw(struct.pack(">i", 1000) + b"\x00" * 10)
            while time.monotonic() - started < 3 * idle_ms / 1000:
                assert busy.request(METADATA).brokers
                time.sleep(idle_ms / 1000 / 4)
            assert silent.is_closed_by_peer(timeout_s=0.1)
            assert half.is_closed_by_peer(timeout_s=0.1)
            assert busy.request(METADATA).brokers

            def closed_idle() -> int:
                assert broker.server is not None
                return broker.server.connections_closed_idle

            assert broker.call(closed_idle) == 2
        finally:
            for conn in (silent, half, busy):
                conn.close()


def test_no_idle_timeout_when_disabled(tmp_path: Path) -> None:
    settings = {"connections.max.idle.ms": "-1"}
    with (
        EmbeddedBroker(data_dir=str(tmp_path / "data"), settings=settings) as broker,
        Conn(broker.bootstrap) as silent,
    ):
        assert not silent.is_closed_by_peer(timeout_s=1.5)
        assert silent.request(METADATA).brokers


# --------------------------------------------------------------------- a closed connection
def test_a_closed_connection_is_freed_without_the_cyclic_gc(tmp_path: Path) -> None:
    """Three clients pipeline fetches of 4 MB, read nothing, and die (RST). With the cyclic GC
    disabled, their connection objects are gone and the memory and the segment descriptors
    their responses held are back as soon as the broker sees them close (queued responses hold
    their records as `FileRegion`s, each with a descriptor of its own: zero-copy fetch).
    Before, dead connections and their queued responses sat in a reference cycle (6 such
    clients: 688 MiB traced, all of it still held after they closed, until gc.collect())."""
    settings = {"queued.max.response.bytes.per.connection": str(8 * MIB)}
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        with EmbeddedBroker(data_dir=str(tmp_path / "data"), settings=settings) as broker:
            with Conn(broker.bootstrap) as admin:
                assert admin.request(create_topics_request("gone", 1)).topics[0].error_code == 0
                for _ in range(4):
                    produced = admin.request(
                        produce_request("gone", {0: make_batch([os.urandom(1_000_000)])})
                    )
                    assert produced.responses[0].partition_responses[0].error_code == 0
            base = tracemalloc.get_traced_memory()[0]
            fds_base = len(os.listdir("/proc/self/fd"))
            socks = [stalled_socket(broker.port) for _ in range(3)]
            for sock in socks:
                sock.sendall(
                    b"".join(codec.encode_request(i, "p", large_fetch("gone")) for i in range(30))
                )

            def held() -> list[int]:
                assert broker.server is not None
                return [c.responses.queued_bytes for c in broker.server.connections]

            deadline = time.monotonic() + 10
            while len(broker.call(held)) < 3 or min(broker.call(held)) < 8 * MIB:
                assert time.monotonic() < deadline, broker.call(held)
                time.sleep(0.05)
            holding = tracemalloc.get_traced_memory()[0] - base
            fds_held = len(os.listdir("/proc/self/fd")) - fds_base - len(socks)

            def connections() -> list[weakref.ref[object]]:
                assert broker.server is not None
                return [weakref.ref(c) for c in broker.server.connections]

            refs = broker.call(connections)
            for sock in socks:
                reset(sock)
            deadline = time.monotonic() + 10
            while any(ref() is not None for ref in refs):
                assert time.monotonic() < deadline, "a closed connection is still referenced"
                time.sleep(0.05)
            time.sleep(0.2)  # the sender tasks' last step
            left = tracemalloc.get_traced_memory()[0] - base
            fds_left = len(os.listdir("/proc/self/fd")) - fds_base
            print(
                f"held {holding / MIB:.0f} MiB and {fds_held} descriptors for 3 stalled clients,"
                f" {left / MIB:.1f} MiB and {fds_left} descriptors after"
            )
            # At least two whole 4 MB responses queued per client, not yet taken by its socket.
            assert fds_held >= 3 * 2
            assert fds_left <= 0, f"{fds_left} descriptors still open once the clients closed"
            assert left < 4 * MIB, f"{left / MIB:.0f} MiB still held once the clients closed"
    finally:
        tracemalloc.stop()
        gc.enable()
