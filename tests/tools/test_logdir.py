"""`samsa log verify` over data dirs the broker's log code wrote, then damaged on disk."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct

import confluent_kafka

from samsa.log.partition import LOG_START_FILE
from samsa.log.segment import segment_name
from samsa.testing.damage import flip_byte
from samsa.testing.embedded import embedded_broker
from tools.support import (
    TOPIC,
    Batch,
    in_segment,
    partition,
    remove_segment,
    samsa,
    segments,
    tree,
)


def findings(data_dir: str) -> list[str]:
    """The finding lines of a verify that must have found something."""
    result = samsa("verify", "--data-dir", data_dir)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == (
        f"{TOPIC}-0: with the broker stopped, `samsa log repair --data-dir {data_dir} "
        f"--topic {TOPIC} --partition 0`"
    )
    assert lines[-2].startswith("checked 1 partition(s), ")
    return lines[:-2]


def test_a_clean_data_dir_passes(data_dir: str, batches: list[Batch]) -> None:
    result = samsa("verify", "--data-dir", data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    size = sum(b.size for b in batches)
    assert result.stdout.splitlines() == [
        f"checked 1 partition(s), {len(segments(batches))} segment(s), {len(batches)} "
        f"batch(es), {size} byte(s): no problems"
    ]
    assert result.stderr == ""


def test_what_a_broker_wrote_passes_and_verify_runs_beside_it(tmp_path: object) -> None:
    """Every file a real broker writes (internal topics, snapshots, indexes) passes, and the
    check only reads: it runs while the broker holds the data dir and changes nothing."""
    data_dir = os.path.join(str(tmp_path), "data")
    with embedded_broker(data_dir=data_dir, settings={"log.segment.bytes": "1024"}) as broker:
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(40):
            producer.produce(TOPIC, f"value-{i:03d}".encode() * 5)
            producer.flush(10)
        before = tree(data_dir)
        result = samsa("verify", "--data-dir", data_dir)
        assert tree(data_dir) == before
    assert result.returncode == 0, result.stdout + result.stderr
    summary = (
        r"checked 3 partition\(s\), \d+ segment\(s\), 40 batch\(es\), \d+ byte\(s\): no problems"
    )
    assert re.fullmatch(summary + "\n", result.stdout), result.stdout


def test_every_damaged_batch_is_named_by_file_and_byte(data_dir: str, batches: list[Batch]) -> None:
    first, middle = segments(batches)[:2]
    one, two = in_segment(batches, first)[2], in_segment(batches, middle)[1]
    flip_byte(os.path.join(partition(data_dir), one.log), one.position + 40)
    flip_byte(os.path.join(partition(data_dir), two.log), two.position + 40)
    assert findings(data_dir) == [
        f"{TOPIC}-0/{one.log} byte {one.position}: CRC-32C mismatch (expected offset "
        f"{one.first}); the next intact batch is at byte {one.position + one.size}",
        f"{TOPIC}-0/{two.log} byte {two.position}: CRC-32C mismatch (expected offset "
        f"{two.first}); the next intact batch is at byte {two.position + two.size}",
    ]


def test_a_damaged_length_is_skipped_to_the_next_intact_batch(
    data_dir: str, batches: list[Batch]
) -> None:
    batch = in_segment(batches, segments(batches)[1])[2]
    flip_byte(os.path.join(partition(data_dir), batch.log), batch.position + 8)  # batchLength
    assert findings(data_dir) == [
        f"{TOPIC}-0/{batch.log} byte {batch.position}: a partial or unreadable batch (expected "
        f"offset {batch.first}); the next intact batch is at byte {batch.position + batch.size}"
    ]


def test_a_torn_tail_is_told_from_corruption(data_dir: str, batches: list[Batch]) -> None:
    last = batches[-1]
    os.truncate(os.path.join(partition(data_dir), last.log), last.position + 30)
    os.remove(os.path.join(partition(data_dir), f"{segment_name(last.last + 1)}.snapshot"))
    assert findings(data_dir) == [
        f"{TOPIC}-0/{last.log} byte {last.position}: a partial or unreadable batch (expected "
        f"offset {last.first}); nothing intact after it: a torn tail, which the broker cuts off "
        "when it loads"
    ]


def test_a_lost_segment_is_a_gap(data_dir: str, batches: list[Batch]) -> None:
    first, middle, third = segments(batches)[:3]
    remove_segment(partition(data_dir), middle)
    assert findings(data_dir) == [
        f"{TOPIC}-0/{segment_name(third)}.log: offsets {middle}-{third - 1} are missing between "
        f"{segment_name(first)}.log and this segment"
    ]


def test_a_lost_first_segment_is_found_by_the_log_start(
    data_dir: str, batches: list[Batch]
) -> None:
    second = segments(batches)[1]
    remove_segment(partition(data_dir), 0)
    assert findings(data_dir) == [
        f"{TOPIC}-0/{segment_name(0)}.log: missing: the log starts at offset 0 (no "
        f"checkpoint), its first segment at {second}"
    ]


def test_indexes_without_their_log(data_dir: str, batches: list[Batch]) -> None:
    first, middle, third = segments(batches)[:3]
    remove_segment(partition(data_dir), middle, (".log",))
    name = segment_name(middle)
    assert findings(data_dir) == [
        f"{TOPIC}-0/{name}.index: its log {name}.log is missing: that segment was lost",
        f"{TOPIC}-0/{name}.timeindex: its log {name}.log is missing: that segment was lost",
        f"{TOPIC}-0/{name}.txnindex: its log {name}.log is missing: that segment was lost",
        f"{TOPIC}-0/{segment_name(third)}.log: offsets {middle}-{third - 1} are missing between "
        f"{segment_name(first)}.log and this segment",
    ]


def test_an_offset_index_entry_off_a_batch_start(data_dir: str, batches: list[Batch]) -> None:
    base = segments(batches)[1]
    path = os.path.join(partition(data_dir), segment_name(base) + ".index")
    with open(path, "r+b") as f:
        relative, position = struct.unpack(">ii", f.read(16)[8:])
        f.seek(8)
        f.write(struct.pack(">ii", relative, position + 1))
    assert findings(data_dir) == [
        f"{TOPIC}-0/{segment_name(base)}.index byte 8: offset {base + relative}: byte "
        f"{position + 1} is not the start of an intact batch"
    ]


def test_a_time_index_entry_outside_its_segment(data_dir: str, batches: list[Batch]) -> None:
    base = segments(batches)[0]
    end = in_segment(batches, base)[-1].last + 1
    with open(os.path.join(partition(data_dir), segment_name(base) + ".timeindex"), "ab") as f:
        f.write(struct.pack(">qi", 1 << 60, end - base))
    size = os.path.getsize(os.path.join(partition(data_dir), segment_name(base) + ".timeindex"))
    assert findings(data_dir) == [
        f"{TOPIC}-0/{segment_name(base)}.timeindex byte {size - 12}: offset {end} is outside "
        f"the segment's offsets {base}-{end - 1}"
    ]


def test_a_producer_snapshot_past_the_log_end(data_dir: str, batches: list[Batch]) -> None:
    end = batches[-1].last + 1
    shutil.copy(
        os.path.join(partition(data_dir), f"{segment_name(end)}.snapshot"),
        os.path.join(partition(data_dir), f"{segment_name(end + 50)}.snapshot"),
    )
    assert findings(data_dir) == [
        f"{TOPIC}-0/{segment_name(end + 50)}.snapshot: a producer snapshot at offset "
        f"{end + 50}, past the log end {end}: the log lost its end (after a clean stop the "
        "broker refuses the partition)"
    ]


def test_topics_json_and_the_directories_must_agree(data_dir: str, batches: list[Batch]) -> None:
    shutil.copytree(partition(data_dir), os.path.join(data_dir, "stray-0"))
    path = os.path.join(data_dir, "topics.json")
    with open(path) as f:
        entries = json.load(f)
    entries[TOPIC]["partitions"] = 2
    with open(path, "w") as f:
        json.dump(entries, f)
    result = samsa("verify", "--data-dir", data_dir)
    assert result.returncode == 1
    assert result.stdout.splitlines()[:2] == [
        f"{TOPIC}-1: listed in topics.json, but its directory is missing",
        "stray-0: not listed in topics.json: the broker adds it back with default configs, or "
        "refuses to start if the topic's partitions are unclear",
    ]
    assert "checked 2 partition(s)" in result.stdout


def test_one_topic_or_partition_and_json(data_dir: str, batches: list[Batch]) -> None:
    shutil.copytree(partition(data_dir), os.path.join(data_dir, "other-0"))
    batch = batches[3]
    flip_byte(os.path.join(data_dir, "other-0", batch.log), batch.position + 40)
    clean = samsa("verify", "--data-dir", data_dir, "--topic", TOPIC, "--partition", "0")
    assert clean.returncode == 0, clean.stdout
    assert clean.stdout.startswith("checked 1 partition(s)")
    result = samsa("verify", "--data-dir", data_dir, "--topic", "other", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["clean"] is False
    assert report["partitions"] == 1
    assert report["batches"] == len(batches) - 1
    assert (
        report["findings"]
        == [
            {
                "path": f"other-0/{batch.log}",
                "position": batch.position,
                "problem": f"CRC-32C mismatch (expected offset {batch.first}); the next intact "
                f"batch is at byte {batch.position + batch.size}",
            },
            {
                "path": "other-0",
                "position": None,
                "problem": "not listed in topics.json: the broker adds it back with default "
                "configs, or refuses to start if the topic's partitions are unclear",
            },
        ][::-1]
    )
    assert report["damaged_partitions"] == ["other-0"]


def test_verify_changes_nothing_even_with_files_missing(
    data_dir: str, batches: list[Batch]
) -> None:
    base = segments(batches)[1]
    os.remove(os.path.join(partition(data_dir), segment_name(base) + ".index"))
    flip_byte(os.path.join(partition(data_dir), batches[-1].log), batches[-1].position + 40)
    before = tree(data_dir)
    lines = findings(data_dir)
    assert tree(data_dir) == before
    assert lines[0] == (
        f"{TOPIC}-0/{segment_name(base)}.index: empty, though the log holds data (the broker "
        "rebuilds it when it loads)"
    )


def test_a_log_start_inside_the_first_segment_is_no_finding(
    data_dir: str, batches: list[Batch]
) -> None:
    """DeleteRecords leaves the log start inside a segment; the segments below it are gone."""
    second = segments(batches)[1]
    remove_segment(partition(data_dir), 0)
    with open(os.path.join(partition(data_dir), LOG_START_FILE), "w") as f:
        f.write(f"{in_segment(batches, second)[1].first}\n")
    verified = samsa("verify", "--data-dir", data_dir)
    assert verified.returncode == 0, verified.stdout
