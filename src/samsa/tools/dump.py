"""`samsa log dump`: every batch of segment files, as Kafka's `kafka-dump-log.sh --files`
prints them, and with `--deep-iteration` / `--print-data-log` every record.

The segments are walked by `samsa.tools.walk` (the walk `samsa log verify` and `repair` make):
an intact batch is printed with `isvalid: true`; a batch whose header is whole but whose CRC-32C
does not match is printed with `isvalid: false` (its records are not decoded: nothing in them
can be trusted), and bytes that hold no batch at all are printed as one line with their
position, size and what is wrong, after which the walk resumes at the next valid batch. As
kafka-dump-log, damage is shown, not an exit status: `samsa log verify` is the check that
exits 1.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from samsa.protocol.batch import HEADER_BYTES, TIMESTAMP_TYPE_MASK, BatchHeader, parse_header
from samsa.protocol.compression import CODEC_NAMES
from samsa.protocol.control import ABORT, COMMIT, marker_type
from samsa.protocol.records import RecordView, records
from samsa.tools.logdir import select_partitions
from samsa.tools.walk import Damage, is_number, list_partition, log_name, open_segment, walk
from samsa.usage import UsageError

CONTROL_TYPES = {ABORT: "ABORT", COMMIT: "COMMIT"}
# What a dump inflates one compressed batch to at most (records are decoded one batch at a time).
INFLATED_BYTES_MAX = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Options:
    deep: bool = False  # each record's offset, timestamp, sizes, sequence and header keys
    data: bool = False  # and its key, value and headers (implies `deep`)


def segment_files(
    files: list[str], data_dir: str | None, topic: str | None, partition: int | None
) -> list[str]:
    """The `.log` files to dump: those named, or every segment of one partition."""
    if files and data_dir is not None:
        raise UsageError("give --files or --data-dir, not both")
    if not files:
        if data_dir is None or topic is None or partition is None:
            raise UsageError("give --files, or --data-dir with --topic and --partition")
        refs, _ = select_partitions(data_dir, topic, partition)
        if not refs:
            raise UsageError(f"no data for partition {partition} of topic {topic} in {data_dir}")
        directory = os.path.join(data_dir, refs[0].name)
        return [os.path.join(directory, log_name(base)) for base in list_partition(directory).bases]
    for path in files:
        stem, ext = os.path.splitext(os.path.basename(path))
        if ext != ".log" or not is_number(stem):
            raise UsageError(f"{path}: not a segment file (<base offset>.log)")
        if not os.path.isfile(path):
            raise UsageError(f"no file {path}")
    return files


def dump(path: str, options: Options) -> Iterator[dict[str, Any]]:
    """One dict per batch (`"kind": "batch"`), record (`"record"`) or damaged region
    (`"damage"`) of the segment file at `path`, in file order."""
    directory, name = os.path.split(path)
    segment = open_segment(directory or ".", int(name[: -len(".log")]))
    try:
        for item in walk(segment, segment.base_offset):
            if not isinstance(item, Damage):
                yield _batch(path, item.position, item.header, item.data, True)
                if options.deep or options.data:
                    yield from _records(path, item.data, options.data)
                continue
            end = item.end
            if item.problem == "CRC-32C mismatch":
                header = parse_header(segment.read(item.start, item.start + HEADER_BYTES))
                yield _batch(path, item.start, header, b"", False)
                if item.start + header.size >= end:
                    continue
                item = Damage(item.start + header.size, end, "no batch", item.expected_offset)
            yield {
                "kind": "damage",
                "file": path,
                "position": item.start,
                "size": item.end - item.start,
                "isvalid": False,
                "problem": item.problem,
            }
    finally:
        segment.close()


def _batch(
    path: str, position: int, header: BatchHeader, data: bytes, valid: bool
) -> dict[str, Any]:
    batch: dict[str, Any] = {
        "kind": "batch",
        "file": path,
        "baseOffset": header.base_offset,
        "lastOffset": header.last_offset,
        "count": header.records_count,
        "baseSequence": header.base_sequence,
        "lastSequence": header.last_sequence,
        "producerId": header.producer_id,
        "producerEpoch": header.producer_epoch,
        "partitionLeaderEpoch": header.partition_leader_epoch,
        "isTransactional": header.is_transactional,
        "isControl": header.is_control,
        "position": position,
        _timestamp_type(header): header.max_timestamp,
        "size": header.size,
        "magic": header.magic,
        "compresscodec": CODEC_NAMES.get(header.compression, str(header.compression)),
        "crc": header.crc,
        "isvalid": valid,
    }
    if header.is_control and valid:
        try:
            control = marker_type(data)
            batch["endTxnMarker"] = CONTROL_TYPES.get(control, str(control))
        except Exception as exc:  # kio's reader: a marker it cannot read is shown, not fatal
            batch["endTxnMarker"] = f"unreadable ({exc})"
    return batch


def _timestamp_type(header: BatchHeader) -> str:
    return "LogAppendTime" if header.attributes & TIMESTAMP_TYPE_MASK else "CreateTime"


def _records(path: str, data: bytes, payloads: bool) -> Iterator[dict[str, Any]]:
    header = parse_header(data)
    try:
        found = records(data, INFLATED_BYTES_MAX, with_headers=True)
    except Exception as exc:  # DecompressionFailed, RecordsInvalid: shown, and the dump goes on
        yield {
            "kind": "damage",
            "file": path,
            "position": None,
            "size": 0,
            "isvalid": False,
            "problem": f"records of batch {header.base_offset} unreadable: {exc}",
        }
        return
    for index, record in enumerate(found):
        yield _record(path, header, index, record, payloads)


def _record(
    path: str, header: BatchHeader, index: int, record: RecordView, payloads: bool
) -> dict[str, Any]:
    sequence = header.base_sequence + index if header.base_sequence >= 0 else -1
    row: dict[str, Any] = {
        "kind": "record",
        "file": path,
        "offset": record.offset,
        _timestamp_type(header): record.timestamp,
        "keySize": -1 if record.key is None else len(record.key),
        "valueSize": -1 if record.value is None else len(record.value),
        "sequence": sequence,
        "headerKeys": [text(key) for key, _ in record.headers],
    }
    if payloads:
        row["key"] = text(record.key)
        row["payload"] = text(record.value)
        row["headers"] = {text(key): text(value) for key, value in record.headers}
    return row


def text(data: bytes | None) -> str | None:
    """Bytes as Kafka's dump prints them: UTF-8 text; bytes that are not are base64, prefixed."""
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


def line(row: dict[str, Any]) -> str:
    """kafka-dump-log's text form: `name: value` pairs; a record's line starts with `| `."""
    fields = " ".join(
        f"{name}: {_value(value)}" for name, value in row.items() if name not in ("kind", "file")
    )
    if row["kind"] == "record":
        return "| " + fields
    if row["kind"] == "damage":
        return "damaged bytes: " + fields
    return fields


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "[" + ", ".join(f"{k}={v}" for k, v in value.items()) + "]"
    return str(value)
