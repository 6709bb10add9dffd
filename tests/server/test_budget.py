"""queued.max.request.bytes (broker-wide) and queued.max.response.bytes.per.connection: the
accounting (`samsa.server.budget`) and what a broker does at each bound."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12.request import MetadataRequest
from kio.schema.produce.v9.request import ProduceRequest

from protocol.wire import Conn, create_topics_request, fetch_request, make_batch, produce_request
from samsa import config as broker_config
from samsa.protocol import codec
from samsa.server.budget import RequestBudget, ResponseBytes
from samsa.testing import EmbeddedBroker

MIB = 1024 * 1024


class Reader:
    def __init__(self) -> None:
        self.woken = 0

    def budget_room(self) -> None:
        self.woken += 1


# --------------------------------------------------------------------- the accounting
def test_reads_are_offered_the_room_left_then_nothing() -> None:
    budget = RequestBudget(100, 50)
    a, b = Reader(), Reader()
    assert budget.allowance(a, 0) == 100
    budget.charge(70)
    assert budget.allowance(b, 0) == 30
    budget.charge(30)
    assert budget.allowance(a, 0) == 0
    assert budget.allowance(b, 0) == 0
    budget.release(10)  # room again: every reader that was refused is told
    assert (a.woken, b.woken) == (1, 1)
    assert budget.allowance(a, 0) == 10


def test_one_reader_at_a_time_may_finish_a_half_read_request() -> None:
    """A spent budget made of half-read requests would deadlock: one of them may finish, within
    an overdraft of one request."""
    budget = RequestBudget(100, 50)
    a, b, c = Reader(), Reader(), Reader()
    budget.charge(100)  # all of it half-read requests
    assert budget.allowance(a, 40) == 40  # a lacks 40 bytes of its request: it may read them
    assert budget.allowance(b, 25) == 0  # b must wait: a is finishing
    assert budget.allowance(c, 0) == 0  # at a request boundary: no
    budget.charge(40)
    assert budget.allowance(a, 0) == 0  # a's request is whole: its turn is over ...
    assert b.woken == 1  # ... and b is told
    assert budget.allowance(b, 25) == 10  # only what is left of the overdraft
    budget.charge(10)
    assert budget.allowance(b, 15) == 0
    assert budget.used_bytes == 150  # never past the limit plus one request
    budget.release(140)  # a's request was handled, others' too
    assert budget.allowance(b, 15) == 90


def test_unbounded_when_not_positive() -> None:
    budget = RequestBudget(-1, 0)
    budget.charge(10**12)
    assert budget.allowance(Reader(), 0) > 0


def test_response_bytes_room() -> None:
    async def scenario() -> list[str]:
        responses = ResponseBytes(100)
        events: list[str] = []

        async def long_poll() -> None:
            await responses.room()
            events.append("built")

        responses.built([b"x" * 60, b"y" * 40])
        assert responses.full
        task = asyncio.ensure_future(long_poll())
        await asyncio.sleep(0.01)
        events.append("sent")
        responses.sent(100)
        await task
        responses.built([b"z" * 500])
        responses.close()  # the connection went: nothing waits, nothing counts
        assert not responses.full
        return events

    assert asyncio.run(scenario()) == ["sent", "built"]


def test_settings_are_checked_as_kafka_checks_them() -> None:
    with pytest.raises(broker_config.ConfigError, match=r"queued\.max\.request\.bytes"):
        broker_config.load({"queued.max.request.bytes": str(MIB)})  # < socket.request.max.bytes
    config = broker_config.load({"queued.max.request.bytes": "-1"})  # Kafka's default
    assert config.queued_max_request_bytes == -1
    with pytest.raises(broker_config.ConfigError):
        broker_config.load({"queued.max.response.bytes.per.connection": "0"})


# --------------------------------------------------------------------- the broker at the bounds
def _used(broker: EmbeddedBroker) -> tuple[int, int]:
    def read() -> tuple[int, int]:
        assert broker.server is not None
        budget = broker.server.request_budget
        return budget.used_bytes, budget.peak_bytes

    return broker.call(read)


def test_half_sent_requests_stay_within_the_budget_and_never_deadlock(tmp_path: Path) -> None:
    """Six clients each send 90 % of a 1 MB produce request with queued.max.request.bytes at
    2 MiB: the broker holds at most the budget plus one request; then, as they send the rest,
    it answers every one of them and the budget is whole again."""
    settings = {
        "socket.request.max.bytes": str(MIB + 4096),
        "queued.max.request.bytes": str(2 * MIB),
    }
    limit = 2 * MIB + MIB + 4096  # the budget plus one request
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), settings=settings) as broker:
        with Conn(broker.bootstrap) as admin:
            assert admin.request(create_topics_request("budget", 1)).topics[0].error_code == 0
        requests = [
            codec.encode_request(
                i, "p", produce_request("budget", {0: make_batch([bytes([i]) * 1_000_000])})
            )
            for i in range(6)
        ]
        clients = [Conn(broker.bootstrap, timeout_s=20) for _ in requests]
        try:
            for client, request in zip(clients, requests, strict=True):
                client.send_raw(request[: len(request) * 9 // 10])
            time.sleep(1.0)
            used, peak = _used(broker)
            assert peak <= limit, f"{peak} bytes of requests held (limit {limit})"
            assert used >= 2 * MIB, f"only {used} bytes read: the budget was not used"
            for client, request in zip(clients, requests, strict=True):
                client.send_raw(request[len(request) * 9 // 10 :])
            for i, client in enumerate(clients):
                correlation_id, response = client.recv(ProduceRequest)
                assert correlation_id == i
                assert response.responses[0].partition_responses[0].error_code == ErrorCode.none
            used, peak = _used(broker)
            assert used == 0, f"{used} bytes still charged once everything was answered"
            assert peak <= limit, f"{peak} bytes of requests held (limit {limit})"
        finally:
            for client in clients:
                client.close()


def test_a_client_that_does_not_read_costs_its_bound(tmp_path: Path) -> None:
    """Pipelined fetches of ~2 MB each, never read, with the response bound at 4 MiB: the
    broker builds about the bound and one response more, then nothing until the client reads;
    meanwhile another client is answered at once."""
    settings = {"queued.max.response.bytes.per.connection": str(4 * MIB)}
    with EmbeddedBroker(data_dir=str(tmp_path / "data"), settings=settings) as broker:
        with Conn(broker.bootstrap) as admin:
            assert admin.request(create_topics_request("unread", 1)).topics[0].error_code == 0
            for _ in range(2):
                produced = admin.request(
                    produce_request("unread", {0: make_batch([b"v" * 1_000_000])})
                )
                assert produced.responses[0].partition_responses[0].error_code == 0
        sock = socket.create_connection(("127.0.0.1", broker.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            sock.sendall(
                b"".join(
                    codec.encode_request(i, "p", fetch_request("unread", [0])) for i in range(100)
                )
            )
            time.sleep(1.0)

            def held() -> list[int]:
                assert broker.server is not None
                return [c.responses.queued_bytes for c in broker.server.connections]

            queued = max(broker.call(held))
            assert 4 * MIB <= queued <= 4 * MIB + 2_100_000, queued
            started = time.monotonic()
            with Conn(broker.bootstrap) as other:
                metadata = other.request(
                    MetadataRequest(
                        topics=None,
                        allow_auto_topic_creation=False,
                        include_topic_authorized_operations=False,
                    )
                )
            assert metadata.brokers
            assert time.monotonic() - started < 1.0
        finally:
            sock.close()
