"""Raw-socket Kafka client helpers for the protocol tests: record batches, kio requests over TCP."""

from __future__ import annotations

import datetime
import socket
import struct
from typing import Any

import crc32c
from kio.schema.create_topics.v7.request import CreatableTopic, CreateTopicsRequest
from kio.schema.fetch.v12.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.static.primitive import i16, i32, i64

from samsa.protocol import codec
from samsa.protocol.batch import CRC_START
from samsa.protocol.batch_writer import record_batch

TIMESTAMP_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def make_batch(
    values: list[bytes],
    *,
    attributes: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """A valid magic-2 record batch (base offset 0, CRC-32C computed by kio's writer)."""
    return record_batch(
        values,
        timestamp_ms=TIMESTAMP_MS,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        attributes=attributes,
    )


def recrc(batch: bytes) -> bytes:
    """The batch with its CRC-32C recomputed over attributes..end."""
    crc = crc32c.crc32c(batch[CRC_START:])
    return batch[:17] + struct.pack(">I", crc) + batch[CRC_START:]


def with_magic(batch: bytes, magic: int) -> bytes:
    """Magic sits outside the CRC, so the CRC stays valid."""
    return batch[:16] + struct.pack(">b", magic) + batch[17:]


def produce_request(
    topic: str, partitions: dict[int, bytes | None], acks: int = -1
) -> ProduceRequest:
    return ProduceRequest(
        transactional_id=None,
        acks=i16(acks),
        timeout=datetime.timedelta(seconds=10),
        topic_data=(
            TopicProduceData(
                name=topic,
                partition_data=tuple(
                    PartitionProduceData(index=i32(index), records=records)
                    for index, records in partitions.items()
                ),
            ),
        ),
    )


def fetch_request(topic: str, partitions: list[int], offset: int = 0) -> FetchRequest:
    return FetchRequest(
        max_wait=datetime.timedelta(milliseconds=0),
        min_bytes=i32(0),
        topics=(
            FetchTopic(
                topic=topic,
                partitions=tuple(
                    FetchPartition(
                        partition=i32(p), fetch_offset=i64(offset), partition_max_bytes=i32(1 << 20)
                    )
                    for p in partitions
                ),
            ),
        ),
        forgotten_topics_data=(),
    )


def create_topics_request(topic: str, partitions: int) -> CreateTopicsRequest:
    return CreateTopicsRequest(
        topics=(
            CreatableTopic(
                name=topic,
                num_partitions=i32(partitions),
                replication_factor=i16(1),
                assignments=(),
                configs=(),
            ),
        ),
        timeout=datetime.timedelta(seconds=10),
    )


class Conn:
    """One raw TCP connection speaking Kafka frames."""

    def __init__(self, bootstrap: str, timeout: float = 10.0) -> None:
        host, _, port = bootstrap.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._next_correlation = 1

    def close(self) -> None:
        self.sock.close()

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

    def send(self, payload: Any, correlation_id: int | None = None) -> int:
        if correlation_id is None:
            correlation_id = self.next_correlation()
        self.sock.sendall(codec.encode_request(correlation_id, "samsa-protocol-tests", payload))
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
        (size,) = struct.unpack(">i", self._read_exactly(4))
        return self._read_exactly(size)

    def recv(self, payload_type: type[Any]) -> tuple[int, Any]:
        return codec.decode_response(
            payload_type.__api_key__, payload_type.__version__, self.recv_frame()
        )

    def request(self, payload: Any) -> Any:
        correlation_id = self.send(payload)
        got, response = self.recv(type(payload))
        assert got == correlation_id
        return response

    def is_closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the broker closed (EOF or reset) within `timeout`; data read is discarded."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False


def read_partition(conn: Conn, topic: str, partition: int) -> list[tuple[int, bytes | None]]:
    """Every (offset, value) of an uncompressed partition, fetched up to its high watermark."""
    from kio.records.readers import read_batch

    out: list[tuple[int, bytes | None]] = []
    offset = 0
    while True:
        response = conn.request(fetch_request(topic, [partition], offset))
        [data] = response.responses[0].partitions
        assert data.error_code == 0, data.error_code
        records = bytes(data.records or b"")
        position = 0
        while position < len(records):
            batch, size = read_batch(records, position)
            position += size
            out.extend((int(r.offset), r.value) for r in batch.records)
        if out:
            offset = out[-1][0] + 1
        if offset >= data.high_watermark:
            return out
        assert records, "no progress below the high watermark"
