"""Shared pieces of the interop suite: the records every client sends, and the comparison of what
was read back with what was sent (per partition, in order, with offsets)."""

from __future__ import annotations

import glob
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from samsa.log.partition import partition_directory
from samsa.protocol.batch import iter_batches
from samsa.testing import topics

RECORD_COUNT = 10_000
PARTITIONS = 3
# Every wait in the suite is bounded; a client that stalls fails the test with a message.
DEADLINE_S = 30.0

Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes
    value: bytes
    headers: Headers


@dataclass(frozen=True, slots=True)
class Stored:
    """A record as read back: where it was, and what it was."""

    partition: int
    offset: int
    record: Record


def make_records(source: str, count: int = RECORD_COUNT, text_only: bool = False) -> list[Record]:
    """Keyed records with headers. Keys repeat (257 distinct), so a key partitioner spreads them
    over every partition; values vary in length. `text_only` keeps them printable and free of
    tabs and newlines (for kcat's line-based input)."""
    records = []
    for i in range(count):
        value = f"{source}-value-{i:05d}-".encode() + b"abcdefghij"[i % 10 : i % 10 + 1] * (i % 97)
        headers: Headers = (("index", str(i).encode()), ("source", source.encode()))
        if not text_only:
            value += bytes([i % 256, 0, 255, 10, 9])  # binary, NUL, newline, tab
            headers += (("empty", b""), ("index", f"again-{i}".encode()))  # duplicate name
        records.append(Record(f"key-{i % 257}".encode(), value, headers))
    return records


def normalize_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> Headers:
    """Clients hand headers back as None, a list or a tuple; the values must come back as sent
    (an empty value stays empty, it does not become null)."""
    return tuple((name, None if value is None else bytes(value)) for name, value in headers or ())


def expected_by_partition(
    records: Sequence[Record], placed: Mapping[int, tuple[int, int]]
) -> dict[int, list[Stored]]:
    """What each partition must hold: the records in the order they were sent, each at the
    (partition, offset) its producer was told in the acknowledgement. `placed` maps the index of
    each record in `records` to that (partition, offset)."""
    missing = [i for i in range(len(records)) if i not in placed]
    assert not missing, f"{len(missing)} records never acknowledged, first {missing[:5]}"
    result: dict[int, list[Stored]] = defaultdict(list)
    for i, record in enumerate(records):
        partition, offset = placed[i]
        result[partition].append(Stored(partition, offset, record))
    return dict(result)


def group_by_partition(stored: Iterable[Stored]) -> dict[int, list[Stored]]:
    result: dict[int, list[Stored]] = defaultdict(list)
    for item in stored:
        result[item.partition].append(item)
    return dict(result)


def assert_same_partitions(
    expected: Mapping[int, Sequence[Stored]],
    received: Mapping[int, Sequence[Stored]],
    partitions: int = PARTITIONS,
    first_offset: int = 0,
) -> None:
    """Every partition holds exactly the expected records, in send order, at consecutive offsets
    from `first_offset`; and the records were spread over all `partitions` partitions."""
    assert sorted(expected) == list(range(partitions)), (
        f"records were sent to partitions {sorted(expected)}, expected all of 0..{partitions - 1}"
    )
    assert sorted(received) == sorted(expected), (
        f"read from partitions {sorted(received)}, sent to {sorted(expected)}"
    )
    for partition in sorted(expected):
        want, got = list(expected[partition]), list(received[partition])
        offsets = [item.offset for item in want]
        assert offsets == list(range(first_offset, first_offset + len(want))), (
            f"partition {partition}: acknowledged offsets are not consecutive from "
            f"{first_offset} in send order: {offsets[:10]}..."
        )
        for position, (w, g) in enumerate(zip(want, got, strict=False)):
            assert w == g, f"partition {partition}, position {position}: sent {w}, read {g}"
        assert len(got) == len(want), (
            f"partition {partition}: sent {len(want)} records, read {len(got)}"
        )


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = PARTITIONS,
    config: Mapping[str, str] | None = None,
) -> None:
    topics.create_topic(bootstrap, name, partitions, config, timeout_s=DEADLINE_S)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # The topic is in the broker's metadata from the moment CreateTopics is answered.
    metadata = admin.list_topics(topic=name, timeout=DEADLINE_S)
    topic = metadata.topics[name]
    assert topic.error is None, topic.error
    assert len(topic.partitions) == partitions


def admin_error_code(future: object) -> int:
    """The Kafka error code an admin future failed with (the test fails if it succeeded)."""
    try:
        future.result(timeout=DEADLINE_S)  # type: ignore[attr-defined]
    except KafkaException as exc:
        code: int = exc.args[0].code()
        return code
    raise AssertionError("the admin request succeeded; an error was expected")


def stored_compression(data_dir: str, topic: str, partition: int) -> dict[int, int]:
    """Records by compression codec id (attributes & 7) over every batch in a partition's segment
    files, read from disk: what the producer really sent, whatever the consumer decoded."""
    codecs: dict[int, int] = defaultdict(int)
    directory = partition_directory(data_dir, topic, partition)
    paths = sorted(glob.glob(os.path.join(directory, "*.log")))
    assert paths, f"no segment files for {topic}-{partition} under {data_dir}"
    for path in paths:
        with open(path, "rb") as file:
            data = file.read()
        for _, header in iter_batches(data):
            codecs[header.compression] += header.records_count
    return dict(codecs)


class Deadline:
    def __init__(self, seconds: float = DEADLINE_S) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def check(self, what: str) -> None:
        assert not self.expired(), f"gave up after {self.seconds} s: {what}"
