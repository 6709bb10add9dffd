"""Shared pieces of the storage fault tests: a real small tmpfs, producing with every
acknowledgement kept, reading everything back, and looking at (and damaging) the files.

The rule every test checks: each record a client was told is stored (a delivery report without
error) is read back after the fault, at the partition and offset it was acknowledged with.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka.admin import AdminClient
from kio.schema.errors import ErrorCode

from protocol.wire import Conn, fetch_request, make_batch, produce_request
from samsa.demo.guarantees import ProduceResult, produce
from samsa.protocol.batch import HEADER_BYTES, crc_ok, iter_batches, parse_header
from samsa.testing.requirements import missing, require_binary
from samsa.testing.topics import placed

MIB = 1024 * 1024
TMPFS_BYTES = 20 * MIB
STORAGE_ERROR = int(ErrorCode.kafka_storage_error)  # 56
READ_TIMEOUT_S = 20.0
WAIT_TIMEOUT_S = 15.0

# acks=all and idempotent: what a careful application runs. Small batches, so a few hundred
# records make many batches (and segments, with a small log.segment.bytes) to damage.
ACKS_ALL_IDEMPOTENT: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 1,
    "batch.num.messages": 10,
    "message.timeout.ms": 20_000,
    "reconnect.backoff.ms": 20,
    "reconnect.backoff.max.ms": 200,
    "log_level": 0,
}

Acknowledged = Mapping[bytes, tuple[int, int]]  # value -> (partition, offset)
Stored = dict[int, dict[int, bytes | None]]  # partition -> offset -> value


# ------------------------------------------------------------------ a small real disk
def mount_tmpfs(mount_point: Path, size_bytes: int, inodes: int | None = None) -> None:
    """A tmpfs of `size_bytes`, and of at most `inodes` files and directories if given."""
    mount_point.mkdir(parents=True, exist_ok=True)
    options = f"size={size_bytes}" + (f",nr_inodes={inodes}" if inodes else "")
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        missing("MISSING TOOL: 'mount' is not installed; this storage test did NOT run")
    if result.returncode != 0:
        missing(
            f"CANNOT MOUNT a tmpfs at {mount_point} ({result.stderr.strip()}; root is needed): "
            "this storage test did NOT run"
        )


def unmount(mount_point: Path) -> None:
    """Unmount; if something still holds the mount, detach it lazily (the kernel frees it when
    the last file closes), so no test leaves a mount behind."""
    result = subprocess.run(["umount", str(mount_point)], capture_output=True, text=True)
    if result.returncode != 0:
        subprocess.run(["umount", "-l", str(mount_point)], check=True, capture_output=True)


def fill(path: Path, size_bytes: int) -> None:
    """A file of `size_bytes` real (not sparse) bytes."""
    block = b"\xa5" * MIB
    with open(path, "wb") as f:
        remaining = size_bytes
        while remaining > 0:
            remaining -= f.write(block[: min(remaining, len(block))])


# ------------------------------------------------------------------ clients
def values(count: int, prefix: str, value_bytes: int = 100) -> list[bytes]:
    """Distinct values padded to `value_bytes`; with `produce`, value i goes to partition
    i % partitions."""
    return [f"{prefix}-{i:07d}-".encode().ljust(value_bytes, b".") for i in range(count)]


def produce_acked(
    bootstrap: str,
    topic: str,
    records: Sequence[bytes],
    partitions: int,
    round_records: int | None = 30,
) -> dict[bytes, tuple[int, int]]:
    """Produce (acks=all, idempotent) and demand that every record is acknowledged; returns
    where. `round_records`: wait for the reports after every so many records, so each round
    makes its own batches."""
    result = produce(
        bootstrap, topic, records, ACKS_ALL_IDEMPOTENT, partitions, round_records=round_records
    )
    check_clean(result)
    assert len(result.acknowledged) == len(records), "not every record was acknowledged"
    return dict(result.acknowledged)


class RoundProducer:
    """One idempotent acks=all producer kept across a fault (a full disk, a failing fsync), so
    its sequence numbers must stay in step with the broker across the refused writes. Refused
    writes are retried by librdkafka until `message_timeout_ms`: short, so the tests are too."""

    def __init__(
        self, bootstrap: str, topic: str, partitions: int, message_timeout_ms: int = 3000
    ) -> None:
        self.topic = topic
        self.partitions = partitions
        self.acknowledged: dict[bytes, tuple[int, int]] = {}
        self.failed: dict[bytes, confluent_kafka.KafkaError] = {}
        self.fatal: list[str] = []
        config: dict[str, Any] = {
            **ACKS_ALL_IDEMPOTENT,
            "bootstrap.servers": bootstrap,
            "message.timeout.ms": message_timeout_ms,
            "error_cb": self._on_error,
        }
        self._producer = confluent_kafka.Producer(config)

    def _on_error(self, error: confluent_kafka.KafkaError) -> None:
        if error.fatal():
            self.fatal.append(str(error))

    def _on_delivery(self, error: confluent_kafka.KafkaError | None, message: Any) -> None:
        if error is None:
            self.acknowledged[message.value()] = (message.partition(), message.offset())
        else:
            self.failed[message.value()] = error

    def round(self, records: Sequence[bytes]) -> int:
        """Send the records (record i to partition i % partitions), wait for every report;
        returns how many failed. A fatal error (a sequence the broker lost track of) fails."""
        failed_before = len(self.failed)
        for index, value in enumerate(records):
            while True:
                try:
                    self._producer.produce(
                        self.topic,
                        value,
                        partition=index % self.partitions,
                        on_delivery=self._on_delivery,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)
            self._producer.poll(0)
        assert self._producer.flush(30) == 0, "reports missing"
        assert not self.fatal, f"the producer hit a fatal error: {self.fatal}"
        return len(self.failed) - failed_before

    def close(self) -> None:
        self._producer.flush(10)


def check_clean(result: ProduceResult) -> None:
    assert not result.fatal_errors, f"fatal producer error: {result.fatal_errors}"
    assert not result.delivery_errors, f"delivery errors: {result.delivery_errors[:3]}"
    assert result.unflushed == 0, f"{result.unflushed} records never reported"


def read_back(
    bootstrap: str, topic: str, partitions: Iterable[int], timeout_s: float = READ_TIMEOUT_S
) -> Stored:
    """Every record of the given partitions, from the log start to the high watermark, with a
    read_committed consumer (librdkafka's default isolation). Unlike
    `durability_support.read_partitions`, it takes any set of partitions: the damaged ones of a
    topic cannot be asked for their watermarks."""
    wanted = sorted(partitions)
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "storage-faults-reader",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "log_level": 0,
        }
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, p), timeout=timeout_s, cached=False
            )[1]
            for p in wanted
        }
        stored: Stored = {p: {} for p in wanted}
        consumer.assign(
            [
                confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                for p in wanted
                if ends[p] > 0
            ]
        )
        deadline = time.monotonic() + timeout_s
        done = {p for p in wanted if ends[p] == 0}
        while len(done) < len(wanted):
            assert time.monotonic() < deadline, (
                f"{topic}: read timed out; read {[len(stored[p]) for p in wanted]} records of "
                f"partitions {wanted}, high watermarks {ends}"
            )
            for message in consumer.consume(1000, 0.2):
                error = message.error()
                assert error is None, f"{topic}: consume error: {error}"
                p, offset = placed(message)
                assert offset not in stored[p], f"{topic}-{p}: offset {offset} read twice"
                stored[p][offset] = message.value()
                if offset + 1 >= ends[p]:
                    done.add(p)
        return stored
    finally:
        consumer.close()


def check_acknowledged(
    stored: Stored, acknowledged: Acknowledged, partitions: Iterable[int] | None = None
) -> None:
    """Every acknowledged record of the partitions read is stored at its acknowledged offset."""
    wanted = set(stored if partitions is None else partitions)
    wrong = [
        (value, (p, offset), stored[p].get(offset))
        for value, (p, offset) in acknowledged.items()
        if p in wanted and stored[p].get(offset) != value
    ]
    checked = sum(1 for p, _ in acknowledged.values() if p in wanted)
    assert not wrong, (
        f"{len(wrong)} of {checked} acknowledged records are not at their acknowledged offset; "
        f"first (value, acknowledged at, found there): {wrong[:3]}"
    )


def produce_error(bootstrap: str, topic: str, partition: int, value_bytes: int = 5) -> int:
    """The error code of one raw Produce (acks=all) of a one-record batch; the connection must
    stay open after it (a fetch of nothing answers on it)."""
    with Conn(bootstrap) as conn:
        batch = make_batch([b"p" * value_bytes])
        request = produce_request(topic, {partition: batch})
        response = conn.request(request)
        [data] = response.responses[0].partition_responses
        conn.request(fetch_request(topic, []))  # still answers: the connection was not dropped
        return int(data.error_code)


def refused_without_retries(
    bootstrap: str, topic: str, partition: int, value_bytes: int = 5
) -> confluent_kafka.KafkaError | None:
    """The error a plain producer (acks=all, no retries) is told for one record; None if it
    was acknowledged. librdkafka retries a KAFKA_STORAGE_ERROR until the message times out, and
    then reports the timeout: without retries it reports the broker's error itself."""
    errors: list[confluent_kafka.KafkaError | None] = []
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": False,
            "message.send.max.retries": 0,
            "message.timeout.ms": int(WAIT_TIMEOUT_S * 1000),
            "log_level": 0,
        }
    )
    producer.produce(
        topic,
        b"p" * value_bytes,
        partition=partition,
        on_delivery=lambda error, _message: errors.append(error),
    )
    assert producer.flush(WAIT_TIMEOUT_S + 5) == 0, "no delivery report"
    return errors[0]


def fetch_error(bootstrap: str, topic: str, partition: int) -> int:
    with Conn(bootstrap) as conn:
        response = conn.request(fetch_request(topic, [partition]))
        [data] = response.responses[0].partitions
        return int(data.error_code)


def metadata_error(bootstrap: str, topic: str, partition: int) -> int:
    """The partition's error in a Metadata response, as librdkafka reports it (0: none)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    described = admin.list_topics(topic, timeout=WAIT_TIMEOUT_S).topics[topic]
    error = described.partitions[partition].error
    return 0 if error is None else int(error.code())


def commit(bootstrap: str, group: str, topic: str, offset: int) -> None:
    """Commit `offset` for partition 0 of `topic` as `group` (raises KafkaException if refused)."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0}
    )
    try:
        consumer.commit(
            offsets=[confluent_kafka.TopicPartition(topic, 0, offset)], asynchronous=False
        )
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str) -> int:
    """The offset `group` has committed for partition 0 of `topic`."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0}
    )
    try:
        [found] = consumer.committed(
            [confluent_kafka.TopicPartition(topic, 0)], timeout=WAIT_TIMEOUT_S
        )
        return int(found.offset)
    finally:
        consumer.close()


# ------------------------------------------------------------------ files
def fingerprint(directory: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `directory` (directories as 'dir')."""
    found: dict[str, str] = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), directory)] = "dir"
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return found


def segment_logs(partition_dir: Path) -> list[Path]:
    return sorted(partition_dir.glob("*.log"))


def batches(path: Path) -> list[tuple[int, int]]:
    """(position, size) of each whole batch in a segment file."""
    data = path.read_bytes()
    return [(position, header.size) for position, header in iter_batches(data)]


def check_whole_batches(path: Path) -> None:
    """The segment file is exactly whole, CRC-valid batches with consecutive offsets (no partial
    batch left by a failed write)."""
    data = path.read_bytes()
    end = 0
    expected: int | None = None
    for position, header in iter_batches(data):
        assert position == end
        assert crc_ok(data, position, header), f"{path} at byte {position}: CRC mismatch"
        if expected is not None:
            assert header.base_offset == expected, f"{path} at byte {position}: offset gap"
        expected = header.next_offset
        end = position + header.size
    assert end == len(data), f"{path}: {len(data) - end} byte(s) after the last whole batch"


def middle_batch(path: Path) -> tuple[int, int]:
    """(position, size) of a batch with whole batches before and after it."""
    found = batches(path)
    assert len(found) >= 3, f"{path} holds {len(found)} batches; the test needs 3 or more"
    return found[len(found) // 2]


def record_byte(position: int, size: int) -> int:
    """A byte inside the records of a batch (past its header): covered by the CRC only."""
    return position + HEADER_BYTES + (size - HEADER_BYTES) // 2


def next_offset(path: Path) -> int:
    data = path.read_bytes()
    last = [header for _, header in iter_batches(data)][-1]
    return last.next_offset


def half_a_batch(base_offset: int) -> bytes:
    """The first half of a valid batch at `base_offset`: what a crash mid-write leaves."""
    batch = bytearray(make_batch([b"never acknowledged"] * 20))
    batch[0:8] = base_offset.to_bytes(8, "big")  # the base offset is outside the CRC
    assert parse_header(bytes(batch)).base_offset == base_offset
    return bytes(batch[: len(batch) // 2])


# ------------------------------------------------------------------ broker output
def lines(output: Sequence[str], level: str, *needles: str) -> list[str]:
    """Log lines of `level` ('ERROR', 'WARNING') that contain every needle."""
    return [
        line
        for line in output
        if f" {level} " in line and all(needle in line for needle in needles)
    ]


def wait_for_line(output: Sequence[str], level: str, *needles: str) -> list[str]:
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while not (found := lines(output, level, *needles)):
        assert time.monotonic() < deadline, (
            f"no {level} line with {needles} in the broker's output; its last lines:\n"
            + "\n".join(output[-20:])
        )
        time.sleep(0.05)
    return found


# ------------------------------------------------------------------ a disk whose fsync fails
class ThinDisk:
    """An ext4 filesystem on a loop device whose backing file is sparse, on a small tmpfs: the
    filesystem believes it has room that the tmpfs does not. Once the tmpfs is full, the loop
    device's writes fail: write() still succeeds (into the page cache) and fsync reports EIO.
    A real failed fsync, without device-mapper (which this kernel does not have).

    The filesystem is made with errors=continue: a failing device must never panic the host.
    """

    IMAGE_BYTES = 64 * MIB
    BACKING_BYTES = 32 * MIB

    def __init__(self, root: Path) -> None:
        self.backing = root / "backing"
        self.image = self.backing / "disk.img"
        self.filler = self.backing / "filler"
        self.mount_point = root / "ext4"
        self.loop: str | None = None
        self.mounted = False
        self.backing_mounted = False

    def create(self) -> None:
        for tool in ("losetup", "mkfs.ext4", "e2fsck"):
            require_binary(tool)
        mount_tmpfs(self.backing, self.BACKING_BYTES)
        self.backing_mounted = True
        with open(self.image, "wb") as f:
            f.truncate(self.IMAGE_BYTES)
        _run(["mkfs.ext4", "-q", "-F", "-e", "continue", "-E", "nodiscard", str(self.image)])
        self.mount()

    def mount(self) -> None:
        attached = subprocess.run(
            ["losetup", "--find", "--show", str(self.image)], capture_output=True, text=True
        )
        if attached.returncode != 0:
            missing(
                f"NO LOOP DEVICE ({attached.stderr.strip()}): the real fsync-failure test did "
                "NOT run"
            )
        self.loop = attached.stdout.strip()
        self.mount_point.mkdir(exist_ok=True)
        _run(["mount", "-o", "errors=continue", self.loop, str(self.mount_point)])
        self.mounted = True

    def unmount(self) -> None:
        if self.mounted:
            unmount(self.mount_point)
            self.mounted = False
        if self.loop is not None:
            _run(["losetup", "--detach", self.loop])
            self.loop = None

    def fill_backing(self, leave_bytes: int) -> None:
        """Take all but `leave_bytes` of the tmpfs under the image."""
        stat = os.statvfs(self.backing)
        fill(self.filler, stat.f_bavail * stat.f_frsize - leave_bytes)

    def free_backing(self) -> None:
        self.filler.unlink()

    def repair(self) -> None:
        """e2fsck the (unmounted) image: a failing device leaves an aborted journal."""
        result = subprocess.run(["e2fsck", "-f", "-y", str(self.image)], capture_output=True)
        assert result.returncode in (0, 1, 2), result  # 1, 2: errors corrected

    def destroy(self) -> None:
        self.unmount()
        if self.backing_mounted:
            unmount(self.backing)
            self.backing_mounted = False


def _run(command: Sequence[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(command)}: {result.stderr.strip()}"
