"""Work a request started finishes even if its client disconnects before the answer.

A transactional producer that sends EndTxn and drops its connection at once leaves the
coordinator's PrepareCommit waiting for its fsync. That transition (and the markers after it)
must still complete; otherwise the transactional id stays pending and every later
InitProducerId gets CONCURRENT_TRANSACTIONS forever.
"""

from __future__ import annotations

import asyncio
import struct
import time
from types import SimpleNamespace
from typing import Any

from kio.schema.add_partitions_to_txn.v3.request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
)
from kio.schema.end_txn.v3.request import EndTxnRequest
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.types import ProducerId, TopicName, TransactionalId
from kio.static.primitive import i16, i32
from kio.static.protocol import RequestPayload

from samsa.config import BrokerConfig
from samsa.server.budget import RequestBudget
from samsa.server.connection import Connection
from samsa.sim.clients import batch, init_producer_id_call, produce_call
from samsa.testing import EmbeddedBroker
from samsa.testing.wire import Conn

DEADLINE_S = 10.0


def call(conn: Conn, correlation_id: int, request: RequestPayload, answer: bool = True) -> Any:
    conn.send(request, correlation_id)
    if not answer:
        return None
    _, payload = conn.recv(type(request))
    return payload


def init(sock: Conn, txn_id: str) -> Any:
    return call(sock, 1, init_producer_id_call(txn_id, 60_000).request)


def test_end_txn_completes_after_the_client_disconnects(samsa_broker: EmbeddedBroker) -> None:
    txn_id = "disconnecting"
    for attempt in range(20):  # the disconnect must land while PrepareCommit awaits its fsync
        with Conn(samsa_broker.bootstrap) as sock:
            call(
                sock,
                0,
                MetadataRequest(
                    topics=(MetadataRequestTopic(topic_id=None, name=TopicName("t")),),
                    include_topic_authorized_operations=False,
                ),
            )
            started = init(sock, txn_id)
            if started.error_code != 0:
                time.sleep(0.1)
                continue
            pid, epoch = int(started.producer_id), int(started.producer_epoch)
            added = call(
                sock,
                2,
                AddPartitionsToTxnRequest(
                    v3_and_below_transactional_id=TransactionalId(txn_id),
                    v3_and_below_producer_id=ProducerId(pid),
                    v3_and_below_producer_epoch=i16(epoch),
                    v3_and_below_topics=(
                        AddPartitionsToTxnTopic(name=TopicName("t"), partitions=(i32(0),)),
                    ),
                ),
            )
            assert (
                added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
                == 0
            )
            records = batch([f"v{attempt}".encode()], pid, epoch, 0, True, int(time.time() * 1000))
            produced = call(sock, 3, produce_call(txn_id, "t", 0, records).request)
            assert produced.responses[0].partition_responses[0].error_code == 0
            end = EndTxnRequest(
                transactional_id=TransactionalId(txn_id),
                producer_id=ProducerId(pid),
                producer_epoch=i16(epoch),
                committed=True,
            )
            call(sock, 4, end, answer=False)
        # The connection is gone, possibly before the EndTxn answer was built.
    deadline = time.monotonic() + DEADLINE_S
    with Conn(samsa_broker.bootstrap) as sock:
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
        self.metrics = None
        self.connections: set[Connection] = set()
        self._work = work

    def opened(self, connection: Connection) -> None:
        self.connections.add(connection)

    def closed(self, connection: Connection) -> None:
        self.connections.discard(connection)

    def pending(self, outcome: Any, responses: Any, timing: Any) -> asyncio.Future[Any]:
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
