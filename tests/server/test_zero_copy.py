"""Zero-copy fetch: record sets of 64 KB and more go from the segment file to the socket
(`FileRegion`, `os.sendfile`). Real clients read back what they wrote through it (plain and
compressed batches, read_committed over aborted data, kcat); a response queued behind a client
that reads slowly still carries its records after DeleteRecords deleted their segment."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from samsa.log.partition import PartitionLog
from samsa.log.storage import FileRegion
from samsa.protocol import codec
from samsa.protocol.batch import iter_batches
from samsa.protocol.records import records as read_records
from samsa.testing import EmbeddedBroker
from server.test_connection_memory import large_fetch, stalled_socket

VALUE_BYTES = 1000
KCAT_READ_ALL = ["kcat", "-C", "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%s\\n"]
RECORDS = 2000  # 2 MB: fetches of 1 MB, each sent from the file


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(data_dir=str(tmp_path_factory.mktemp("zero-copy"))) as running:
        yield running


def create(broker: EmbeddedBroker, topic: str, **config: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(10)


def values(prefix: str, count: int) -> list[bytes]:
    """Printable, distinct, incompressible enough: kcat prints them one a line."""
    return [
        (f"{prefix}-{i:06d}-".encode() + os.urandom(VALUE_BYTES // 2).hex().encode())[:VALUE_BYTES]
        for i in range(count)
    ]


def produce(broker: EmbeddedBroker, topic: str, records: list[bytes], **config: str) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, **config})
    for value in records:
        producer.produce(topic, value)
        producer.poll(0)
    assert producer.flush(10) == 0


def consume(
    broker: EmbeddedBroker, topic: str, count: int, isolation: str = "read_uncommitted"
) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "zero-copy-unused",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[bytes] = []
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF and len(got) >= count:
                    break
                assert error.code() == KafkaError._PARTITION_EOF, error
                continue
            value = message.value()
            assert value is not None
            got.append(value)
    finally:
        consumer.close()
    return got


def regions_served(broker: EmbeddedBroker, topic: str) -> bool:
    """The log hands the fetch path a `FileRegion` for 1 MB from offset 0 of `topic`."""

    def check() -> bool:
        log: PartitionLog | None = broker.server.broker.topics.partition(topic, 0)  # type: ignore[union-attr]
        assert log is not None
        records = log.read_zero_copy(0, 1 << 20, log.high_watermark, True)
        if isinstance(records, FileRegion):
            records.close()
            return True
        return False

    return broker.call(check)


@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
def test_clients_read_back_what_went_through_sendfile(
    broker: EmbeddedBroker, compression: str
) -> None:
    topic = f"zc-{compression}"
    create(broker, topic)
    written = values(compression, RECORDS)
    produce(broker, topic, written, **{"compression.type": compression})
    assert regions_served(broker, topic)
    assert consume(broker, topic, RECORDS) == written
    kcat = subprocess.run(
        [*KCAT_READ_ALL, "-b", broker.bootstrap, "-t", topic],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert kcat.stdout.splitlines() == written


def test_read_committed_drops_aborted_data_sent_from_the_file(broker: EmbeddedBroker) -> None:
    topic = "zc-txn"
    create(broker, topic)
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": "zc", "linger.ms": 20}
    )
    producer.init_transactions(10)
    batches = [values(name, 600) for name in ("committed1", "aborted", "committed2")]
    for batch, commit in zip(batches, (True, False, True), strict=True):
        producer.begin_transaction()
        for value in batch:
            producer.produce(topic, value)
            producer.poll(0)
        producer.flush(10)
        if commit:
            producer.commit_transaction(10)
        else:
            producer.abort_transaction(10)
    assert regions_served(broker, topic)
    assert consume(broker, topic, 1200, "read_committed") == batches[0] + batches[2]
    assert consume(broker, topic, 1800) == batches[0] + batches[1] + batches[2]


def read_frame(sock: socket.socket) -> bytes:
    """One response frame, taken a few KB at a time: a client slower than the broker."""
    size = int.from_bytes(recv_exactly(sock, 4), "big")
    return recv_exactly(sock, size)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(8192, size - len(chunks)))
        assert chunk, "the broker closed the connection"
        chunks += chunk
    return bytes(chunks)


def test_queued_responses_outlive_the_deletion_of_their_segment(broker: EmbeddedBroker) -> None:
    """Segments of about 1 MB; a client pipelines fetches from offset 0 and reads nothing
    while DeleteRecords deletes every segment but the last; then it reads slowly. Each
    response holds the records of the first segment, as they were written."""
    topic = "zc-deleted"
    create(broker, topic, **{"segment.bytes": str(1 << 20)})
    written = values("deleted", 4000)
    produce(broker, topic, written, **{"batch.size": str(200_000)})
    data_dir = Path(broker.data_dir) / f"{topic}-0"
    first_segment = data_dir / f"{0:020d}.log"
    segment_bytes = first_segment.stat().st_size
    sock = stalled_socket(broker.port)
    try:
        fetches = 6
        request = large_fetch(topic)
        sock.sendall(b"".join(codec.encode_request(i, "zc", request) for i in range(fetches)))

        def built_and_waiting() -> int:
            """Whole responses built, not yet handed to the socket (the kernel's send buffer
            takes the first few MB of responses at once)."""
            assert broker.server is not None
            queued = max(c.responses.queued_bytes for c in broker.server.connections)
            return queued // segment_bytes

        deadline = time.monotonic() + 10
        while broker.call(built_and_waiting) < 2:
            assert time.monotonic() < deadline, broker.call(built_and_waiting)
            time.sleep(0.02)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        low = admin.delete_records([TopicPartition(topic, 0, 3000)])
        low[TopicPartition(topic, 0, 3000)].result(10)
        assert not first_segment.exists()
        for correlation_id in range(fetches):
            got, response = codec.decode_response(1, 12, read_frame(sock))
            assert got == correlation_id
            [partition] = response.responses[0].partitions
            records = bytes(partition.records)
            read = decode_values(records)
            assert sum(map(len, filter(None, read))) > segment_bytes * 0.9
            assert read == written[: len(read)]
    finally:
        sock.close()


def decode_values(records: bytes) -> list[bytes | None]:
    return [
        record.value
        for position, header in iter_batches(records)
        for record in read_records(records[position : position + header.size])
    ]
