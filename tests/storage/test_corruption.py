"""Damage done to a stopped broker's files, then a restart: what is damaged is said, offline and
left as found; what is not damaged serves every acknowledged record.

Each test produces (acks=all, idempotent) to a three-partition topic with small segments, stops
the broker (kill -9, or a clean stop), damages partition 1's files, and starts it again.
"""

from __future__ import annotations

import json
from pathlib import Path

import confluent_kafka
import pytest

from samsa.testing.damage import flip_byte
from samsa.testing.process import BrokerProcess
from samsa.testing.topics import create_topic

from .conftest import StartBroker
from .support import (
    STORAGE_ERROR,
    batches,
    check_acknowledged,
    check_whole_batches,
    fetch_error,
    fingerprint,
    half_a_batch,
    lines,
    metadata_error,
    middle_batch,
    next_offset,
    produce_acked,
    produce_error,
    read_back,
    record_byte,
    refused_without_retries,
    segment_logs,
    values,
    wait_for_line,
)

TOPIC = "damaged"
PARTITIONS = 3
DAMAGED = 1
HEALTHY = [p for p in range(PARTITIONS) if p != DAMAGED]
# About 14 batches of 10 records per segment: several sealed segments and a busy active one.
SETTINGS = {"num.partitions": str(PARTITIONS), "log.segment.bytes": "16384"}
ROUND_RECORDS = 30  # 10 per partition: one batch each
CHUNK_ROUNDS = 11  # one producer per chunk (a producer takes half a second to start and close)
SEGMENTS_MIN = 3
ACTIVE_BATCHES_MIN = 3
CHUNKS_MAX = 10


def fill(broker: BrokerProcess, data_dir: Path) -> dict[bytes, tuple[int, int]]:
    """Produce until partition DAMAGED has SEGMENTS_MIN segments, the active one holding
    ACTIVE_BATCHES_MIN batches; every record acknowledged. Returns where each one is."""
    acknowledged: dict[bytes, tuple[int, int]] = {}
    directory = data_dir / f"{TOPIC}-{DAMAGED}"
    for chunk in range(CHUNKS_MAX):
        records = values(CHUNK_ROUNDS * ROUND_RECORDS, f"chunk-{chunk:02d}")
        acknowledged.update(
            produce_acked(broker.bootstrap, TOPIC, records, PARTITIONS, ROUND_RECORDS)
        )
        logs = segment_logs(directory)
        if len(logs) >= SEGMENTS_MIN and len(batches(logs[-1])) >= ACTIVE_BATCHES_MIN:
            return acknowledged
    raise AssertionError(f"{CHUNKS_MAX} chunks did not make {SEGMENTS_MIN} segments")


@pytest.fixture
def broker(tmp_path: Path, start_broker: StartBroker) -> BrokerProcess:
    """A broker with TOPIC created, on tmp_path/data."""
    started = start_broker(tmp_path / "data", SETTINGS)
    create_topic(started.bootstrap, TOPIC, PARTITIONS)
    return started


def restart(broker: BrokerProcess) -> list[str]:
    """Start again; the lines the broker printed during this start."""
    mark = len(broker.output)
    broker.start()
    return broker.output[mark:]


def check_offline(broker: BrokerProcess) -> None:
    """Partition DAMAGED refuses producers, consumers and metadata says so: each gets
    KAFKA_STORAGE_ERROR, on connections the broker keeps open."""
    bootstrap = broker.bootstrap
    assert produce_error(bootstrap, TOPIC, DAMAGED) == STORAGE_ERROR
    assert fetch_error(bootstrap, TOPIC, DAMAGED) == STORAGE_ERROR
    assert metadata_error(bootstrap, TOPIC, DAMAGED) == STORAGE_ERROR
    refused = refused_without_retries(bootstrap, TOPIC, DAMAGED)
    assert refused is not None and refused.code() == confluent_kafka.KafkaError.KAFKA_STORAGE_ERROR
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "storage-faults-probe", "log_level": 0}
    )
    try:
        with pytest.raises(confluent_kafka.KafkaException) as raised:
            consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(TOPIC, DAMAGED), timeout=10, cached=False
            )
        assert raised.value.args[0].code() == confluent_kafka.KafkaError.KAFKA_STORAGE_ERROR
    finally:
        consumer.close()


def check_healthy(broker: BrokerProcess, acknowledged: dict[bytes, tuple[int, int]]) -> None:
    """Every other partition serves all its acknowledged records, and takes new ones."""
    check_acknowledged(read_back(broker.bootstrap, TOPIC, HEALTHY), acknowledged, HEALTHY)
    for partition in HEALTHY:
        assert produce_error(broker.bootstrap, TOPIC, partition) == 0


def test_flipped_byte_in_the_active_segment_takes_the_partition_offline(
    tmp_path: Path, broker: BrokerProcess
) -> None:
    """A byte flipped inside an acknowledged batch in the middle of the active segment, found
    by recovery after kill -9 (a valid batch follows it: corruption, not a torn write).

    Before the storage commit, recovery cut the segment at the damaged batch without a word:
    every acknowledged record after it was gone, and the partition served on, handing their
    offsets to new records."""
    data_dir = tmp_path / "data"
    acknowledged = fill(broker, data_dir)
    broker.kill9()
    directory = data_dir / f"{TOPIC}-{DAMAGED}"
    active = segment_logs(directory)[-1]
    position, size = middle_batch(active)
    flip_byte(active, record_byte(position, size))
    damaged = fingerprint(directory)

    output = restart(broker)
    errors = lines(output, "ERROR")
    assert len(errors) == 1, errors
    assert f"{active} at byte {position}" in errors[0], errors[0]
    check_offline(broker)
    check_healthy(broker, acknowledged)
    assert fingerprint(directory) == damaged, "the damaged partition's files were changed"
    assert broker.terminate() == 0
    assert fingerprint(directory) == damaged, "a clean stop changed the damaged files"


def test_scrubber_finds_a_flipped_byte_in_a_sealed_segment(
    tmp_path: Path, broker: BrokerProcess
) -> None:
    """A byte flipped in an older segment after a clean stop: the start trusts the segment's
    indexes (they are intact), and nothing reads the batch until a consumer does. The
    scrubber's start-up pass reads it, finds the CRC mismatch and takes the partition offline.

    Before the storage commit there was no scrubber: the damaged batch was served to consumers
    as good data (librdkafka does not check CRCs unless check.crcs is set)."""
    data_dir = tmp_path / "data"
    acknowledged = fill(broker, data_dir)
    assert broker.terminate() == 0
    directory = data_dir / f"{TOPIC}-{DAMAGED}"
    sealed = segment_logs(directory)[0]
    position, size = middle_batch(sealed)
    flip_byte(sealed, record_byte(position, size))
    damaged = fingerprint(directory)

    broker.settings += [
        "log.scrubber.bytes.per.second=10485760",
        "log.scrubber.interval.ms=3600000",
    ]
    restart(broker)
    [found] = wait_for_line(broker.output, "ERROR", "scrub found corruption")
    assert f"{sealed} at byte {position}" in found, found
    assert "CRC" in found, found
    check_offline(broker)
    check_healthy(broker, acknowledged)
    assert len(lines(broker.output, "ERROR")) == 1, lines(broker.output, "ERROR")
    assert fingerprint(directory) == damaged, "the damaged partition's files were changed"


@pytest.mark.parametrize("deleted", ["log file", "every file"])
def test_missing_middle_segment_takes_the_partition_offline(
    tmp_path: Path, broker: BrokerProcess, deleted: str
) -> None:
    """A middle segment lost after a clean stop: its .log file alone (its indexes are still
    there: the error names the file), or all of its files (the error names the offsets missing
    between its neighbours).

    Before the storage commit the log was opened from the .log files it found: the offsets of
    the lost segment were silently skipped, and a consumer read on past the hole."""
    data_dir = tmp_path / "data"
    acknowledged = fill(broker, data_dir)
    assert broker.terminate() == 0
    directory = data_dir / f"{TOPIC}-{DAMAGED}"
    logs = segment_logs(directory)
    lost = logs[len(logs) // 2]
    assert lost not in (logs[0], logs[-1])
    first_lost, after = int(lost.stem), int(logs[logs.index(lost) + 1].stem)
    for path in directory.glob(f"{lost.stem}.*") if deleted == "every file" else [lost]:
        path.unlink()
    damaged = fingerprint(directory)

    output = restart(broker)
    errors = lines(output, "ERROR")
    assert len(errors) == 1, errors
    if deleted == "log file":
        assert f"{lost}: segment missing" in errors[0], errors[0]
    else:
        assert f"offsets {first_lost} to {after - 1} are missing" in errors[0], errors[0]
    check_offline(broker)
    check_healthy(broker, acknowledged)
    assert fingerprint(directory) == damaged, "the damaged partition's files were changed"


def test_lost_topics_json_is_rebuilt_from_the_partition_directories(
    tmp_path: Path, broker: BrokerProcess
) -> None:
    """topics.json deleted after a kill -9: each topic comes back from its directory names, with
    a WARNING that its configs were lost, and every acknowledged record is read back.

    Before the storage commit a start without topics.json knew no topics: the directories were
    ignored (and creating a topic of the same name deleted them), so every record was lost."""
    data_dir = tmp_path / "data"
    other = "other"
    create_topic(broker.bootstrap, other, 1)
    acknowledged = fill(broker, data_dir)
    acknowledged_other = produce_acked(broker.bootstrap, other, values(50, "other"), 1)
    broker.kill9()
    (data_dir / "topics.json").unlink()

    output = restart(broker)
    for topic, count in ((TOPIC, "3 partition directories"), (other, "1 partition directory")):
        warned = lines(output, "WARNING", f"topic {topic} was missing from topics.json")
        assert len(warned) == 1 and count in warned[0], warned
    assert not lines(output, "ERROR"), lines(output, "ERROR")
    listed = json.loads((data_dir / "topics.json").read_text())
    assert listed[TOPIC]["partitions"] == PARTITIONS and listed[other]["partitions"] == 1
    check_acknowledged(read_back(broker.bootstrap, TOPIC, range(PARTITIONS)), acknowledged)
    check_acknowledged(read_back(broker.bootstrap, other, [0]), acknowledged_other)


@pytest.mark.parametrize("where", ["active segment", "new segment"])
def test_torn_tail_is_cut_with_a_warning(tmp_path: Path, broker: BrokerProcess, where: str) -> None:
    """Half a batch at the end of the log after kill -9, as a crash mid-write leaves it: at the
    end of the active segment, or alone in a segment just rolled. Nothing valid follows it, so
    it was never acknowledged: recovery cuts it off with a WARNING naming the partition, the
    file, the byte position, the bytes removed and the new log end; nothing acknowledged is
    lost, and new records continue at the right offset.

    Before the storage commit the tail was cut too, but silently: a torn tail could not be told
    from lost data in the broker's log."""
    data_dir = tmp_path / "data"
    acknowledged = fill(broker, data_dir)
    broker.kill9()
    directory = data_dir / f"{TOPIC}-{DAMAGED}"
    active = segment_logs(directory)[-1]
    end_offset = next_offset(active)
    torn = half_a_batch(end_offset)
    if where == "active segment":
        path, position = active, active.stat().st_size
        with open(path, "ab") as f:
            f.write(torn)
    else:
        path, position = directory / f"{end_offset:020d}.log", 0
        path.write_bytes(torn)

    output = restart(broker)
    warned = lines(output, "WARNING", f"{TOPIC}-{DAMAGED}: torn tail cut off in {path}")
    assert len(warned) == 1, lines(output, "WARNING")
    assert f"at byte {position}" in warned[0], warned[0]
    assert f"{len(torn)} byte(s) removed" in warned[0], warned[0]
    assert f"ends at offset {end_offset}" in warned[0], warned[0]
    assert not lines(output, "ERROR"), lines(output, "ERROR")
    assert path.stat().st_size == position
    check_whole_batches(path)

    check_acknowledged(read_back(broker.bootstrap, TOPIC, range(PARTITIONS)), acknowledged)
    more = produce_acked(broker.bootstrap, TOPIC, values(PARTITIONS, "after"), PARTITIONS)
    assert more[values(PARTITIONS, "after")[DAMAGED]] == (DAMAGED, end_offset)
