"""One raw Kafka connection for tests and benchmarks: kio requests out, kio responses back.

Real clients hide what a protocol test must control: the correlation id, requests pipelined
without waiting, a frame cut short, a connection the broker closes. `Conn` is a plain TCP
socket that frames and unframes with `samsa.protocol.codec` and does nothing else: no
retries, no reconnects, no metadata. Every test and benchmark that talks bytes uses it.
On a SASL listener it authenticates first (`sasl=(mechanism, user, password)`: PLAIN, or
SCRAM-SHA-256/512 through scramp's client), as a real client would, and nothing more.
The request builders below write the few requests most such tests send.
"""

from __future__ import annotations

import datetime
import socket
import struct
from typing import Any

from kio.schema.create_topics.v7.request import CreatableTopic, CreateTopicsRequest
from kio.schema.fetch.v12.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.list_offsets.v7.request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.schema.types import BrokerId, TopicName
from kio.static.primitive import Records, i8, i16, i32, i32Timedelta, i64
from kio.static.protocol import RequestPayload, ResponsePayload

from samsa.admin import security
from samsa.admin.client import parse_bootstrap
from samsa.admin.security import SaslFailed as SaslFailed  # re-exported for the tests
from samsa.protocol import codec

TIMEOUT_S = 10.0
REQUEST_TIMEOUT = i32Timedelta.parse(datetime.timedelta(seconds=10))  # the broker's, per request
FETCH_PARTITION_BYTES_MAX = 1 << 20
_SIZE = struct.Struct(">i")
_CORRELATION_ID = struct.Struct(">i")


def ms(value: int) -> i32Timedelta:
    return i32Timedelta.parse(datetime.timedelta(milliseconds=value))


class Conn:
    """One raw TCP connection speaking Kafka frames."""

    def __init__(
        self,
        bootstrap: str,
        timeout_s: float = TIMEOUT_S,
        client_id: str = "samsa-testing",
        sasl: tuple[str, str, str] | None = None,
    ) -> None:
        """`sasl`: (mechanism, user, password) to authenticate with before anything else."""
        self.sock = socket.create_connection(parse_bootstrap(bootstrap), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client_id = client_id
        self._next_correlation = 1
        if sasl is not None:
            try:
                self.authenticate(*sasl)
            except BaseException:
                self.close()
                raise

    @classmethod
    def over(cls, sock: socket.socket, client_id: str = "samsa-testing") -> Conn:
        """Speak Kafka frames over a socket already connected (a TLS one, say)."""
        conn = cls.__new__(cls)
        conn.sock, conn.client_id, conn._next_correlation = sock, client_id, 1
        return conn

    def close(self) -> None:
        self.sock.close()

    def authenticate(self, mechanism: str, user: str, password: str) -> None:
        """SaslHandshake v1, then SaslAuthenticate v2 until `mechanism` is done (KIP-152)."""
        security.authenticate(self.request, mechanism, user, password)

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_correlation(self) -> int:
        correlation_id = self._next_correlation
        self._next_correlation += 1
        return correlation_id

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, payload: RequestPayload, correlation_id: int | None = None) -> int:
        """Send one request (the next correlation id unless given); returns its id."""
        if correlation_id is None:
            correlation_id = self.next_correlation()
        self.sock.sendall(codec.encode_request(correlation_id, self.client_id, payload))
        return correlation_id

    def _read_exactly(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = self.sock.recv(n - len(chunks))
            if not chunk:
                raise ConnectionError(f"closed after {len(chunks)} of {n} bytes")
            chunks += chunk
        return bytes(chunks)

    def recv_frame(self) -> bytes:
        """The next response frame, without its size prefix."""
        (size,) = _SIZE.unpack(self._read_exactly(_SIZE.size))
        return self._read_exactly(size)

    def recv_correlation_id(self, timeout_s: float) -> int | None:
        """The correlation id of the next response (its body is skipped), or None if none
        came in `timeout_s`."""
        self.sock.settimeout(timeout_s)
        try:
            frame = self.recv_frame()
        except TimeoutError:
            return None
        (correlation_id,) = _CORRELATION_ID.unpack_from(frame)
        return int(correlation_id)

    def recv(self, payload_type: type[RequestPayload] | type[ResponsePayload]) -> tuple[int, Any]:
        """(correlation id, response) of the next frame, read as the answer to a request of
        `payload_type`'s API and version (kio links no response type to a request type, so
        the response is `Any`)."""
        return codec.decode_response(
            payload_type.__api_key__, payload_type.__version__, self.recv_frame()
        )

    def request(self, payload: RequestPayload) -> Any:
        """Send `payload` and return its response (the next frame must answer it)."""
        correlation_id = self.send(payload)
        got, response = self.recv(type(payload))
        assert got == correlation_id, (got, correlation_id)
        return response

    def is_closed_by_peer(self, timeout_s: float = 5.0) -> bool:
        """True when the broker closed (EOF or reset) within `timeout_s`; data read is
        discarded."""
        self.sock.settimeout(timeout_s)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False


def produce_request(
    topic: str, partitions: dict[int, bytes | None], acks: int = -1
) -> ProduceRequest:
    """Produce v9: each partition's records (raw batch bytes, or None)."""
    return ProduceRequest(
        transactional_id=None,
        acks=i16(acks),
        timeout=REQUEST_TIMEOUT,
        topic_data=(
            TopicProduceData(
                name=TopicName(topic),
                partition_data=tuple(
                    PartitionProduceData(
                        index=i32(index), records=None if records is None else Records(records)
                    )
                    for index, records in partitions.items()
                ),
            ),
        ),
    )


def fetch_request(topic: str, partitions: list[int], offset: int = 0) -> FetchRequest:
    """Fetch v12 from `offset` of each partition, without waiting for data."""
    return FetchRequest(
        max_wait=ms(0),
        min_bytes=i32(0),
        topics=(
            FetchTopic(
                topic=TopicName(topic),
                partitions=tuple(
                    FetchPartition(
                        partition=i32(p),
                        fetch_offset=i64(offset),
                        partition_max_bytes=i32(FETCH_PARTITION_BYTES_MAX),
                    )
                    for p in partitions
                ),
            ),
        ),
        forgotten_topics_data=(),
    )


def list_offsets_request(
    topic: str, partition: int, timestamp: int, isolation_level: int = 0
) -> ListOffsetsRequest:
    """ListOffsets v7 for one partition: -1 latest, -2 earliest, -3 max timestamp, or a
    timestamp; isolation 0 read_uncommitted, 1 read_committed."""
    return ListOffsetsRequest(
        replica_id=BrokerId(-1),
        isolation_level=i8(isolation_level),
        topics=(
            ListOffsetsTopic(
                name=TopicName(topic),
                partitions=(
                    ListOffsetsPartition(
                        partition_index=i32(partition),
                        current_leader_epoch=i32(-1),
                        timestamp=i64(timestamp),
                    ),
                ),
            ),
        ),
    )


def create_topics_request(topic: str, partitions: int) -> CreateTopicsRequest:
    """CreateTopics v7 for one topic, replication factor 1."""
    return CreateTopicsRequest(
        topics=(
            CreatableTopic(
                name=TopicName(topic),
                num_partitions=i32(partitions),
                replication_factor=i16(1),
                assignments=(),
                configs=(),
            ),
        ),
        timeout=REQUEST_TIMEOUT,
    )
