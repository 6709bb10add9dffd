"""Work a request started finishes even if its client disconnects before the answer.

A transactional producer that sends EndTxn and drops its connection at once leaves the
coordinator's PrepareCommit waiting for its fsync. That transition (and the markers after it)
must still complete; otherwise the transactional id stays pending and every later
InitProducerId gets CONCURRENT_TRANSACTIONS forever.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from types import SimpleNamespace
from typing import Any

from samsa.config import BrokerConfig
from samsa.protocol import codec
from samsa.protocol.apis import ApiKey
from samsa.protocol.build import build
from samsa.server.budget import RequestBudget
from samsa.server.connection import Connection
from samsa.sim.clients import batch
from samsa.testing import EmbeddedBroker

DEADLINE_S = 10.0


def call(
    sock: socket.socket,
    correlation_id: int,
    api_key: int,
    version: int,
    body: dict[str, Any],
    answer: bool = True,
) -> Any:
    schema = codec.request_type(api_key, version)
    assert schema is not None
    sock.sendall(codec.encode_request(correlation_id, "test", build(schema, body)))
    if not answer:
        return None
    (size,) = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))
    _, payload = codec.decode_response(api_key, version, sock.recv(size, socket.MSG_WAITALL))
    return payload


def init(sock: socket.socket, txn_id: str) -> Any:
    return call(
        sock,
        1,
        ApiKey.INIT_PRODUCER_ID,
        4,
        {"transactional_id": txn_id, "transaction_timeout": 60_000},
    )


def test_end_txn_completes_after_the_client_disconnects(samsa_broker: EmbeddedBroker) -> None:
    txn_id = "disconnecting"
    for attempt in range(20):  # the disconnect must land while PrepareCommit awaits its fsync
        with socket.create_connection(("127.0.0.1", samsa_broker.port)) as sock:
            call(
                sock,
                0,
                ApiKey.METADATA,
                12,
                {
                    "topics": [{"topic_id": None, "name": "t"}],
                    "allow_auto_topic_creation": True,
                    "include_topic_authorized_operations": False,
                },
            )
            started = init(sock, txn_id)
            if started.error_code != 0:
                time.sleep(0.1)
                continue
            pid, epoch = int(started.producer_id), int(started.producer_epoch)
            added = call(
                sock,
                2,
                ApiKey.ADD_PARTITIONS_TO_TXN,
                3,
                {
                    "v3_and_below_transactional_id": txn_id,
                    "v3_and_below_producer_id": pid,
                    "v3_and_below_producer_epoch": epoch,
                    "v3_and_below_topics": [{"name": "t", "partitions": [0]}],
                },
            )
            assert (
                added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
                == 0
            )
            records = batch([f"v{attempt}".encode()], pid, epoch, 0, True, int(time.time() * 1000))
            produced = call(
                sock,
                3,
                ApiKey.PRODUCE,
                9,
                {
                    "transactional_id": txn_id,
                    "acks": -1,
                    "timeout": 5000,
                    "topic_data": [
                        {"name": "t", "partition_data": [{"index": 0, "records": records}]}
                    ],
                },
            )
            assert produced.responses[0].partition_responses[0].error_code == 0
            call(
                sock,
                4,
                ApiKey.END_TXN,
                3,
                {
                    "transactional_id": txn_id,
                    "producer_id": pid,
                    "producer_epoch": epoch,
                    "committed": True,
                },
                answer=False,
            )
        # The connection is gone, possibly before the EndTxn answer was built.
    deadline = time.monotonic() + DEADLINE_S
    with socket.create_connection(("127.0.0.1", samsa_broker.port)) as sock:
        while True:
            result = init(sock, txn_id)
            if result.error_code == 0:
                break
            assert time.monotonic() < deadline, f"transactional id stuck: {result.error_code!r}"
            time.sleep(0.05)
    coordinator = samsa_broker.server.broker.txn if samsa_broker.server else None
    assert coordinator is not None
    assert not coordinator.pending, coordinator.pending
    assert coordinator.txns[txn_id].state.value in ("Empty", "CompleteCommit", "CompleteAbort")


# --------------------------------------------------------------------- the mechanism
class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class _Owner:
    """The server side a connection talks to; its broker answers every frame with `work`."""

    def __init__(self, work: asyncio.Future[Any]) -> None:
        self.broker = SimpleNamespace(config=BrokerConfig(), handle_frame=lambda frame: "outcome")
        self.request_budget = RequestBudget(-1, 0)
        self.connections: set[Connection] = set()
        self._work = work

    def opened(self, connection: Connection) -> None:
        self.connections.add(connection)

    def closed(self, connection: Connection) -> None:
        self.connections.discard(connection)

    def pending(self, outcome: Any, responses: Any) -> asyncio.Future[Any]:
        return self._work

    def drive(self) -> None:
        pass

    def closing(self, peer: Any, reason: str) -> None:
        pass

    def failed(self, peer: Any) -> None:
        pass


def test_a_lost_connection_does_not_cancel_the_work_behind_its_response() -> None:
    async def scenario() -> asyncio.Future[Any]:
        work: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        connection = Connection(_Owner(work))  # type: ignore[arg-type]
        connection.connection_made(_Transport())
        frame = struct.pack(">i", 8) + b"\x00" * 8
        buffer = connection.get_buffer(len(frame))
        buffer[: len(frame)] = frame
        connection.buffer_updated(len(frame))
        await asyncio.sleep(0.01)  # the sender now waits for `work`
        connection.connection_lost(ConnectionResetError())
        await asyncio.sleep(0.01)
        return work

    work = asyncio.run(scenario())
    assert not work.cancelled(), "the client going away cancelled the broker's own work"
