"""A full disk, for real: the data dir on a 20 MiB tmpfs that the broker fills up.

Before the storage commit a write that hit ENOSPC raised out of the request handler: the broker
closed the client's connection (every partition's requests on it failed, not just the full
one), and the short write's partial batch stayed in the segment. Once space came back, later
batches were appended behind that partial batch; the next start after a crash read the
segment up to the partial batch and cut everything after it, acknowledged records included
(seen on the parent commit with a PartitionLog on this tmpfs: 20 batches acknowledged after
the failed write were gone after the restart).

Now a failed write is undone (the segment and its indexes cut back to their size before it),
the partition answers KAFKA_STORAGE_ERROR while the disk is full and stays online, and writes
resume once there is room.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
from pathlib import Path

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from kio.records.readers import read_batch
from kio.schema.errors import ErrorCode
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.static.primitive import i32Timedelta

from protocol.wire import Conn
from samsa.log.partition import LogConfig, PartitionLog, StorageError
from samsa.log.storage import OsStorage
from samsa.protocol.batch import BatchHeader, validate_produced
from samsa.protocol.batch_writer import record_batch
from samsa.testing.topics import create_topic

from .conftest import StartBroker
from .support import (
    ACKS_ALL_IDEMPOTENT,
    MIB,
    STORAGE_ERROR,
    RoundProducer,
    check_acknowledged,
    check_whole_batches,
    fill,
    produce_acked,
    produce_error,
    read_back,
    refused_without_retries,
    segment_logs,
    values,
)

TOPIC = "full"
PARTITIONS = 3
FILLER_BYTES = 4 * MIB  # freed once the disk is full, for the writes that must then succeed
VALUE_BYTES = 1000
ROUND_RECORDS = 300
ROUNDS_MAX = 100  # 30 MB: more than the tmpfs holds
SETTINGS = {
    "num.partitions": str(PARTITIONS),
    # Small segments: the disk also fills up while a segment is being rolled.
    "log.segment.bytes": str(MIB),
}
PROBE_BYTES = 64 * 1024  # more than one tmpfs page: it cannot fit in a page already allocated


def test_full_disk_is_refused_per_partition_and_loses_nothing_acknowledged(
    tmpfs: Path, start_broker: StartBroker
) -> None:
    filler = tmpfs / "filler"
    fill(filler, FILLER_BYTES)
    data_dir = tmpfs / "data"
    broker = start_broker(data_dir, SETTINGS)
    create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    producer = RoundProducer(broker.bootstrap, TOPIC, PARTITIONS)

    # 1. Write until the disk is full and writes fail.
    for number in range(ROUNDS_MAX):
        if producer.round(values(ROUND_RECORDS, f"before-{number:03d}", VALUE_BYTES)):
            break
    else:
        pytest.fail(f"{ROUNDS_MAX * ROUND_RECORDS} records fit on a {tmpfs} of 20 MiB")
    room = os.statvfs(tmpfs)
    assert room.f_bavail * room.f_frsize < PROBE_BYTES, "deliveries failed, the disk is not full"
    acknowledged_before = dict(producer.acknowledged)
    assert len(acknowledged_before) > 5000, "the disk filled up before it held much"

    # The broker says why, per partition: KAFKA_STORAGE_ERROR (librdkafka retries it until
    # the message times out, so ask on the wire and with a producer that does not retry)...
    for partition in range(PARTITIONS):
        assert produce_error(broker.bootstrap, TOPIC, partition, PROBE_BYTES) == STORAGE_ERROR
    refused = refused_without_retries(broker.bootstrap, TOPIC, 0, PROBE_BYTES)
    assert refused is not None and refused.code() == confluent_kafka.KafkaError.KAFKA_STORAGE_ERROR
    # ... and keeps serving: everything acknowledged is read back while the disk is full.
    check_acknowledged(read_back(broker.bootstrap, TOPIC, range(PARTITIONS)), acknowledged_before)
    # No partial batch of a refused write is left in any segment.
    for partition in range(PARTITIONS):
        for path in segment_logs(data_dir / f"{TOPIC}-{partition}"):
            check_whole_batches(path)

    # 2. Room again: the same producer carries on, and every record is acknowledged.
    filler.unlink()
    failures = producer.round(values(ROUND_RECORDS, "after", VALUE_BYTES))
    assert failures == 0, f"{failures} writes failed after space was freed"
    producer.close()
    acknowledged = dict(producer.acknowledged)
    assert len(acknowledged) == len(acknowledged_before) + ROUND_RECORDS

    # 3. A crash, and everything acknowledged (before and after the full disk) is there, at
    # its offset; nothing refused was written.
    broker.kill9()
    broker.start()
    stored = read_back(broker.bootstrap, TOPIC, range(PARTITIONS))
    check_acknowledged(stored, acknowledged)
    values_stored = {value for records in stored.values() for value in records.values()}
    written_anyway = [value for value in producer.failed if value in values_stored]
    assert not written_anyway, f"refused records were stored: {written_anyway[:3]}"
    for partition in range(PARTITIONS):
        assert sorted(stored[partition]) == list(range(len(stored[partition]))), "offset gap"
        for path in segment_logs(data_dir / f"{TOPIC}-{partition}"):
            check_whole_batches(path)


# ---------------------------------------------------------------------- in process
BATCH_VALUES = 8
BATCH_VALUE_BYTES = 1024
NOW_MS = 1_700_000_000_000
BATCHES_BEFORE = 10


def batch_values(number: int) -> list[bytes]:
    return [
        f"{number:06d}:{i}".encode().ljust(BATCH_VALUE_BYTES, b"-") for i in range(BATCH_VALUES)
    ]


def append(log: PartitionLog, number: int) -> int:
    """Append batch `number` (8 records of 1 KiB); its base offset."""
    data = record_batch(batch_values(number), timestamp_ms=NOW_MS)
    written = log.append(data, validate_produced(data, 1 << 30), NOW_MS)
    assert isinstance(written, BatchHeader), written
    return written.base_offset


def read_values(log: PartitionLog) -> list[bytes | None]:
    out: list[bytes | None] = []
    offset = log.log_start_offset
    while offset < log.high_watermark:
        data = bytes(log.read(offset, 1 << 30, log.high_watermark, min_one=True))
        position = 0
        while position < len(data):
            batch, size = read_batch(data, position)
            position += size
            out.extend(record.value for record in batch.records)
            offset = int(batch.base_offset) + len(batch.records)
    return out


def fill_up(path: Path) -> None:
    """Write `path` until the filesystem has not one more byte."""
    block = b"\x5a" * 4096
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    with open(path, "ab", buffering=0) as f:  # the last partial page, byte by byte
        try:
            while True:
                f.write(b"\x5a")
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


@pytest.mark.parametrize("fails_at", ["append", "roll"])
def test_full_disk_write_is_undone_in_place(tmpfs: Path, fails_at: str) -> None:
    """A PartitionLog on the tmpfs: a write refused by the full disk leaves the files exactly
    whole batches (fails_at=append) or no half-made segment (fails_at=roll: the new segment's
    producer snapshot is what hits ENOSPC), the log online and its offsets unchanged; with room
    again the next write takes the same offsets; after a crash, all of it is read back."""
    directory = str(tmpfs / "full-0")
    batch_bytes = BATCH_VALUES * BATCH_VALUE_BYTES
    # "roll": every 4th batch starts a segment; "append": one segment for everything.
    segment_bytes = 4 * batch_bytes + 1024 if fails_at == "roll" else 1 << 30
    config = LogConfig(segment_bytes=segment_bytes)
    log = PartitionLog.open(OsStorage(), directory, "full", 0, config, NOW_MS, recover=False)
    written = 0
    for _ in range(BATCHES_BEFORE):
        append(log, written)
        written += 1
    if fails_at == "roll":
        while log.active.size + batch_bytes <= segment_bytes:  # until the next write rolls
            append(log, written)
            written += 1
    filler = tmpfs / "filler"
    fill_up(filler)

    files_before = sorted(os.listdir(directory))
    end_before = log.log_end_offset
    with pytest.raises(StorageError):
        append(log, written)
    assert log.offline is None, log.offline
    assert log.log_end_offset == end_before
    assert sorted(os.listdir(directory)) == files_before, "a failed roll left files behind"
    for path in segment_logs(Path(directory)):
        check_whole_batches(path)

    filler.unlink()
    assert append(log, written) == end_before, "the refused write's offsets were not reused"
    written += 1
    point = log.sync_point()
    point.run()
    log.complete_sync(point)
    log.close_files()  # a crash: no snapshot, no clean close

    reopened = PartitionLog.open(OsStorage(), directory, "full", 0, config, NOW_MS, recover=True)
    try:
        assert reopened.log_end_offset == written * BATCH_VALUES
        for path in segment_logs(Path(directory)):
            check_whole_batches(path)
        expected = [value for number in range(written) for value in batch_values(number)]
        assert read_values(reopened) == expected
    finally:
        reopened.close_files()


def test_topic_creation_on_a_full_disk_is_refused_and_leaves_nothing(
    tmpfs: Path, start_broker: StartBroker
) -> None:
    """CreateTopics while the disk is full: KAFKA_STORAGE_ERROR, and no partition directory or
    topics.json entry left half made; with room again the same topic is created and serves.

    Before the storage commit the OSError escaped the handler: the broker closed the client's
    connection, and the client saw a transport failure, not the reason."""
    data_dir = tmpfs / "data"
    broker = start_broker(data_dir, SETTINGS)
    filler = tmpfs / "filler"
    fill_up(filler)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
    future = admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC]
    with pytest.raises(confluent_kafka.KafkaException) as raised:
        future.result(timeout=15)
    error = raised.value.args[0]
    assert error.code() == confluent_kafka.KafkaError.KAFKA_STORAGE_ERROR, error
    assert not [path for path in data_dir.iterdir() if path.name.startswith(f"{TOPIC}-")]
    assert TOPIC not in json.loads((data_dir / "topics.json").read_text())

    filler.unlink()
    create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    acknowledged = produce_acked(broker.bootstrap, TOPIC, values(300, "late"), PARTITIONS)
    broker.kill9()
    broker.start()
    check_acknowledged(read_back(broker.bootstrap, TOPIC, range(PARTITIONS)), acknowledged)


def test_producer_starting_on_a_full_disk_is_told_and_gets_its_id_once_there_is_room(
    tmpfs: Path, start_broker: StartBroker
) -> None:
    """The first InitProducerId after a start reserves a block of producer ids on disk. On a
    full disk it gets KAFKA_STORAGE_ERROR (retriable: librdkafka and the Java client ask
    again) on a connection that stays open; an idempotent producer started then delivers once
    there is room.

    Before the fix the OSError of writing producer_ids.json escaped the handler: the broker
    closed the connection (and with it every other request on it) on each attempt, and the
    client saw only 'all brokers down'."""
    broker = start_broker(tmpfs / "data", SETTINGS)
    create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    filler = tmpfs / "filler"
    fill_up(filler)

    request = InitProducerIdRequest(
        transactional_id=None,
        transaction_timeout=i32Timedelta.parse(datetime.timedelta(seconds=60)),
    )
    with Conn(broker.bootstrap) as conn:
        assert conn.request(request).error_code == ErrorCode.kafka_storage_error
        assert conn.request(request).error_code == ErrorCode.kafka_storage_error  # still open

    client_errors: list[str] = []
    reports: list[confluent_kafka.KafkaError | None] = []

    def on_error(error: confluent_kafka.KafkaError) -> None:
        client_errors.append(str(error))

    producer = confluent_kafka.Producer(
        {**ACKS_ALL_IDEMPOTENT, "bootstrap.servers": broker.bootstrap, "error_cb": on_error}
    )
    producer.produce(
        TOPIC, b"started on a full disk", partition=0, on_delivery=lambda e, _m: reports.append(e)
    )
    producer.poll(1.0)
    assert not reports, "delivered while the disk was full"
    filler.unlink()
    assert producer.flush(15) == 0
    assert reports == [None], reports
    assert not client_errors, client_errors
