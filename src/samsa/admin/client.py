"""A small blocking admin client: kio request objects out, kio response objects in.

One TCP connection, one request in flight at a time. It speaks only to the broker it was given,
which is every partition's leader and every coordinator on a one-node samsa cluster. It is the
I/O edge for `samsa txn`, and for `samsa console` one per broker; the requests and responses are
kio's generated classes, framed by `samsa.protocol.codec`. With a `ClientSecurity` it runs TLS
and SASL first, as any client of a secured listener must.
"""

from __future__ import annotations

import datetime
import socket
import struct
from types import TracebackType
from typing import Any

from kio.schema.describe_producers.v0.request import DescribeProducersRequest
from kio.schema.describe_producers.v0.request import TopicRequest as ProducersTopic
from kio.schema.describe_producers.v0.response import DescribeProducersResponse
from kio.schema.describe_transactions.v0.request import DescribeTransactionsRequest
from kio.schema.describe_transactions.v0.response import DescribeTransactionsResponse
from kio.schema.errors import ErrorCode
from kio.schema.list_offsets.v7.request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kio.schema.list_offsets.v7.response import ListOffsetsResponse
from kio.schema.list_transactions.v1.request import ListTransactionsRequest
from kio.schema.list_transactions.v1.response import ListTransactionsResponse
from kio.schema.metadata.v12.request import MetadataRequest
from kio.schema.metadata.v12.response import MetadataResponse
from kio.schema.types import BrokerId, ProducerId, TopicName, TransactionalId
from kio.schema.write_txn_markers.v1.request import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
)
from kio.schema.write_txn_markers.v1.response import WriteTxnMarkersResponse
from kio.static.primitive import i8, i16, i32, i64

from samsa.admin.security import ClientSecurity, SaslFailed, authenticate
from samsa.protocol.codec import decode_response, encode_request

_SIZE = struct.Struct(">i")
RESPONSE_BYTES_MAX = 100 * 1024 * 1024
LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
READ_UNCOMMITTED = 0
READ_COMMITTED = 1


class AdminError(Exception):
    """Raised by `AdminClient` when the broker cannot be reached or breaks the protocol; the
    caller reports it and gives up (nothing is retried here)."""


def parse_bootstrap(bootstrap: str) -> tuple[str, int]:
    """'host:port' (the first of a comma-separated list) -> (host, port)."""
    first = bootstrap.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not port.isdigit():
        raise AdminError(f"bootstrap {bootstrap!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class AdminClient:
    def __init__(
        self,
        bootstrap: str,
        timeout_s: float = 10.0,
        client_id: str = "samsa-admin",
        security: ClientSecurity | None = None,
    ) -> None:
        host, port = parse_bootstrap(bootstrap)
        security = security or ClientSecurity()
        try:
            self._sock = security.wrap(socket.create_connection((host, port), timeout_s), host)
        except OSError as exc:  # ssl.SSLError is one
            raise AdminError(f"cannot connect to {host}:{port}: {exc}") from exc
        self._client_id = client_id
        self._correlation_id = 0
        if security.sasl:
            try:
                authenticate(
                    self.send,
                    security.sasl_mechanism,
                    security.sasl_username,
                    security.sasl_password,
                )
            except SaslFailed as exc:
                self.close()
                raise AdminError(f"{host}:{port}: SASL authentication failed: {exc}") from exc

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- one round trip
    def send(self, request: Any) -> Any:
        """Send one kio request; return the decoded kio response."""
        self._correlation_id += 1
        correlation_id = self._correlation_id
        try:
            self._sock.sendall(encode_request(correlation_id, self._client_id, request))
            (size,) = _SIZE.unpack(self._read_exactly(_SIZE.size))
            if not 0 <= size <= RESPONSE_BYTES_MAX:
                raise AdminError(f"response of {size} bytes")
            data = self._read_exactly(size)
        except OSError as exc:
            raise AdminError(f"request failed: {exc}") from exc
        got, response = decode_response(
            int(type(request).__api_key__), int(type(request).__version__), data
        )
        if got != correlation_id:
            raise AdminError(f"correlation id {got}, expected {correlation_id}")
        return response

    def _read_exactly(self, count: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < count:
            chunk = self._sock.recv(count - len(chunks))
            if not chunk:
                raise AdminError("connection closed by the broker")
            chunks += chunk
        return bytes(chunks)

    # ----------------------------------------------------------------- typed requests
    def metadata(self) -> MetadataResponse:
        response: MetadataResponse = self.send(
            MetadataRequest(
                topics=None,
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
        )
        return response

    def topic_partitions(self) -> dict[str, list[int]]:
        """Every topic (internal ones too) -> its partition indexes."""
        return {
            str(topic.name): sorted(int(p.partition_index) for p in topic.partitions)
            for topic in self.metadata().topics
            if topic.name is not None
        }

    def list_transactions(
        self, states: tuple[str, ...] = (), duration_ms: int = -1
    ) -> ListTransactionsResponse:
        response: ListTransactionsResponse = self.send(
            ListTransactionsRequest(state_filters=states, duration_filter=i64(duration_ms))
        )
        return response

    def describe_transactions(self, transactional_ids: list[str]) -> DescribeTransactionsResponse:
        response: DescribeTransactionsResponse = self.send(
            DescribeTransactionsRequest(
                transactional_ids=tuple(TransactionalId(t) for t in transactional_ids)
            )
        )
        return response

    def describe_producers(self, partitions: dict[str, list[int]]) -> DescribeProducersResponse:
        response: DescribeProducersResponse = self.send(
            DescribeProducersRequest(
                topics=tuple(
                    ProducersTopic(
                        name=TopicName(topic), partition_indexes=tuple(i32(p) for p in indexes)
                    )
                    for topic, indexes in partitions.items()
                )
            )
        )
        return response

    def list_offsets(
        self,
        partitions: dict[str, list[int]],
        isolation_level: int,
        timestamp: int = LATEST_TIMESTAMP,
    ) -> dict[tuple[str, int], int]:
        """(topic, partition) -> offset. LATEST_TIMESTAMP: the high watermark at
        read_uncommitted, the last stable offset at read_committed; EARLIEST_TIMESTAMP: the log
        start offset. Partitions answered with an error are left out."""
        response: ListOffsetsResponse = self.send(
            ListOffsetsRequest(
                replica_id=BrokerId(-1),
                isolation_level=i8(isolation_level),
                topics=tuple(
                    ListOffsetsTopic(
                        name=TopicName(topic),
                        partitions=tuple(
                            ListOffsetsPartition(partition_index=i32(p), timestamp=i64(timestamp))
                            for p in indexes
                        ),
                    )
                    for topic, indexes in partitions.items()
                ),
            )
        )
        return {
            (str(topic.name), int(p.partition_index)): int(p.offset)
            for topic in response.topics
            for p in topic.partitions
            if p.error_code == ErrorCode.none
        }

    def write_txn_markers(
        self,
        topic: str,
        partition: int,
        producer_id: int,
        producer_epoch: int,
        coordinator_epoch: int,
        commit: bool,
    ) -> WriteTxnMarkersResponse:
        response: WriteTxnMarkersResponse = self.send(
            WriteTxnMarkersRequest(
                markers=(
                    WritableTxnMarker(
                        producer_id=ProducerId(producer_id),
                        producer_epoch=i16(producer_epoch),
                        transaction_result=commit,
                        topics=(
                            WritableTxnMarkerTopic(
                                name=TopicName(topic), partition_indexes=(i32(partition),)
                            ),
                        ),
                        coordinator_epoch=i32(coordinator_epoch),
                    ),
                )
            )
        )
        return response


def utc_ms(moment: datetime.datetime) -> int:
    return int(moment.timestamp() * 1000)
