"""`samsa log repair`: every intact batch kept, the lost offsets named exactly, the originals
moved aside, and the broker serving the partition again."""

from __future__ import annotations

import os
import random
import re
import time
from datetime import UTC, datetime

import confluent_kafka
import pytest
from kio.schema.errors import ErrorCode

from samsa.log.partition import LOG_START_FILE, CorruptLog, LogConfig, PartitionLog
from samsa.log.segment import segment_name
from samsa.log.storage import OsStorage
from samsa.protocol.batch import TRANSACTIONAL_FLAG, validate_produced
from samsa.protocol.batch_writer import record_batch
from samsa.state.producers import Duplicate
from samsa.testing.damage import flip_byte
from samsa.testing.embedded import embedded_broker
from samsa.testing.topics import placed, value_of
from samsa.tools import RepairFailed, repair
from samsa.tools.repair import describe
from tools.support import (
    TOPIC,
    Batch,
    build_partition,
    in_segment,
    layout,
    partition,
    read_back,
    remove_segment,
    samsa,
    segments,
    tree,
)

REPAIRED = f"repaired {TOPIC}-0: the broker rebuilds producer state from the log on start"


def run_repair(data_dir: str, *extra: str) -> list[str]:
    result = samsa("repair", "--data-dir", data_dir, "--topic", TOPIC, "--partition", "0", *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def aside(data_dir: str) -> str:
    """The one directory the originals were moved to."""
    found = [name for name in os.listdir(data_dir) if name.startswith(f"{TOPIC}-0.repair-")]
    assert len(found) == 1, found
    assert re.fullmatch(rf"{TOPIC}-0\.repair-\d{{8}}T\d{{6}}Z", found[0]), found[0]
    return found[0]


def values(batches: list[Batch]) -> list[bytes]:
    return [value for batch in batches for value in batch.values]


def damage_line(batch: Batch) -> str:
    return (
        f"{TOPIC}-0/{batch.log} byte {batch.position}: CRC-32C mismatch (expected offset "
        f"{batch.first}); the next intact batch is at byte {batch.position + batch.size}"
    )


def test_damaged_batches_are_dropped_and_their_offsets_named(
    data_dir: str, batches: list[Batch]
) -> None:
    first, middle = segments(batches)[:2]
    one, two = in_segment(batches, first)[2], in_segment(batches, middle)[1]
    for batch in (one, two):
        flip_byte(os.path.join(partition(data_dir), batch.log), batch.position + 40)
    originals = tree(partition(data_dir))
    lines = run_repair(data_dir)
    moved = aside(data_dir)
    end = batches[-1].last + 1
    assert lines == [
        damage_line(one),
        damage_line(two),
        f"lost offsets {one.first}-{one.last} (damage at {one.log} byte {one.position})",
        f"lost offsets {two.first}-{two.last} (damage at {two.log} byte {two.position})",
        f"kept {len(batches) - 2} batch(es) in {len(segments(batches))} segment(s): log start "
        f"0, log end {end}",
        f"moved the original files to {moved} (delete it once satisfied)",
        REPAIRED,
    ]
    # The originals, every file of them, are aside as they were.
    assert tree(os.path.join(data_dir, moved)) == originals
    kept = [b for b in batches if b not in (one, two)]
    for recover in (True, False):
        log = read_back(data_dir, recover=recover)
        assert log.values == values(kept)
        assert (log.log_start_offset, log.log_end_offset) == (0, end)
    assert samsa("verify", "--data-dir", data_dir).returncode == 0


def test_a_lost_segment_leaves_a_hole_the_broker_loads(data_dir: str, batches: list[Batch]) -> None:
    first, middle, third = segments(batches)[:3]
    remove_segment(partition(data_dir), middle)
    lines = run_repair(data_dir)
    assert lines[1] == (
        f"lost offsets {middle}-{third - 1} (missing between {segment_name(first)}.log and "
        f"{segment_name(third)}.log)"
    )
    assert read_back(data_dir).values == values([b for b in batches if b.segment != middle])
    verified = samsa("verify", "--data-dir", data_dir)
    assert verified.returncode == 0, verified.stdout


def test_a_lost_first_segment_moves_the_log_start(data_dir: str, batches: list[Batch]) -> None:
    second = segments(batches)[1]
    remove_segment(partition(data_dir), 0)
    lines = run_repair(data_dir)
    assert lines[1] == f"lost offsets 0-{second - 1} (missing before {segment_name(second)}.log)"
    with open(os.path.join(partition(data_dir), LOG_START_FILE)) as f:
        assert f.read() == f"{second}\n"
    log = read_back(data_dir, recover=False)
    assert log.log_start_offset == second
    assert log.values == values([b for b in batches if b.segment != 0])


def test_a_lost_last_segment_is_a_lost_tail(data_dir: str, batches: list[Batch]) -> None:
    last = segments(batches)[-1]
    remove_segment(partition(data_dir), last, (".log",))
    lines = run_repair(data_dir)
    assert (
        f"lost offsets from {last} on ({segment_name(last)}.log missing, its .index is there; "
        "the old log end is unknown)"
    ) in lines
    log = read_back(data_dir, recover=False)
    assert log.values == values([b for b in batches if b.segment != last])
    assert log.log_end_offset == last


def test_damage_at_the_end_loses_the_tail(data_dir: str, batches: list[Batch]) -> None:
    one, tail = batches[4], batches[-3]
    for batch in (one, tail):
        flip_byte(os.path.join(partition(data_dir), batch.log), batch.position + 40)
    os.truncate(os.path.join(partition(data_dir), tail.log), tail.position + tail.size + 20)
    lines = run_repair(data_dir)
    assert [line for line in lines if line.startswith("lost ")] == [
        f"lost offsets {one.first}-{one.last} (damage at {one.log} byte {one.position})",
        f"lost offsets from {tail.first} on (damage at {tail.log} byte {tail.position}; the old "
        "log end is unknown)",
    ]
    log = read_back(data_dir, recover=False)
    assert log.values == values([b for b in batches[: batches.index(tail)] if b != one])
    assert log.log_end_offset == tail.first


@pytest.mark.parametrize("seed", range(6))
def test_random_damage_keeps_exactly_the_intact_batches(tmp_path: object, seed: int) -> None:
    """Bytes flipped in the CRC-covered part of random batches: those batches, and no other,
    are lost, each run of them named once, at the byte where it starts."""
    rng = random.Random(seed)
    data_dir = os.path.join(str(tmp_path), "data")
    batches = build_partition(
        data_dir, batches=rng.randint(10, 60), segment_bytes=rng.choice((300, 700, 2000))
    )
    damaged = rng.sample(batches, rng.randint(1, min(6, len(batches))))
    for batch in damaged:
        flip_byte(
            os.path.join(partition(data_dir), batch.log),
            batch.position + rng.randint(21, batch.size - 1),
        )
    expected: list[str] = []
    run: list[Batch] = []
    for maybe_batch in [*batches, None]:
        if maybe_batch in damaged:
            assert maybe_batch is not None
            run.append(maybe_batch)
            continue
        if run:
            cause = f"damage at {run[0].log} byte {run[0].position}"
            if maybe_batch is None:
                expected.append(
                    f"lost offsets from {run[0].first} on ({cause}; the old log end is unknown)"
                )
            else:
                expected.append(f"lost offsets {run[0].first}-{run[-1].last} ({cause})")
            run = []
    outcome = repair(data_dir, TOPIC, 0, datetime.now(UTC))
    lost = [line for line in describe(outcome, data_dir) if line.startswith("lost ")]
    assert lost == expected, f"seed {seed}"
    read = read_back(data_dir, recover=False).values
    assert read == values([b for b in batches if b not in damaged]), f"seed {seed}"
    assert samsa("verify", "--data-dir", data_dir).returncode == 0, f"seed {seed}"


def test_a_repaired_copy_that_does_not_open_changes_nothing(
    data_dir: str, batches: list[Batch], monkeypatch: pytest.MonkeyPatch
) -> None:
    flip_byte(os.path.join(partition(data_dir), batches[3].log), batches[3].position + 40)
    before = tree(data_dir)

    def refuse(*args: object, **kwargs: object) -> PartitionLog:
        raise CorruptLog("staging", None, "planted")

    monkeypatch.setattr(PartitionLog, "open", refuse)
    with pytest.raises(RepairFailed, match="planted"):
        repair(data_dir, TOPIC, 0, datetime.now(UTC))
    assert tree(data_dir) == before  # no staging copy left behind either


def test_an_open_transaction_is_pointed_out(data_dir: str, batches: list[Batch]) -> None:
    """Its marker may have been in the lost bytes: the transaction would then hang."""
    log = PartitionLog.open(OsStorage(), partition(data_dir), TOPIC, 0, LogConfig(), 0, False)
    data = record_batch(
        [b"in a transaction"],
        timestamp_ms=0,
        producer_id=7,
        producer_epoch=0,
        base_sequence=0,
        attributes=TRANSACTIONAL_FLAG,
    )
    written = log.append(data, validate_produced(data, 1 << 20), 0, lambda _: ErrorCode.none)
    assert not isinstance(written, Duplicate)
    log.close()
    flip_byte(os.path.join(partition(data_dir), batches[3].log), batches[3].position + 40)
    lines = describe(repair(data_dir, TOPIC, 0, datetime.now(UTC)), data_dir)
    assert (
        f"producer 7 has a transaction open from offset {written.base_offset}: if its marker "
        "was lost it hangs; see `samsa txn find-hanging` and `samsa txn abort`"
    ) in lines


def test_dry_run_changes_nothing(data_dir: str, batches: list[Batch]) -> None:
    batch = batches[5]
    flip_byte(os.path.join(partition(data_dir), batch.log), batch.position + 40)
    before = tree(data_dir)
    lines = run_repair(data_dir, "--dry-run")
    assert tree(data_dir) == before
    assert (
        lines[1]
        == f"lost offsets {batch.first}-{batch.last} (damage at {batch.log} byte {batch.position})"
    )
    assert lines[2].startswith(f"would keep {len(batches) - 1} batch(es)")
    assert re.fullmatch(
        rf"would move the original files to {TOPIC}-0\.repair-\d{{8}}T\d{{6}}Z "
        r"\(dry run: nothing changed\)",
        lines[3],
    ), lines[3]
    assert len(lines) == 4


def test_nothing_to_repair(data_dir: str, batches: list[Batch]) -> None:
    before = tree(data_dir)
    assert run_repair(data_dir) == [f"{TOPIC}-0: nothing to repair (verify found no problem)"]
    assert tree(data_dir) == before


def test_refused_while_a_broker_holds_the_data_dir(data_dir: str, batches: list[Batch]) -> None:
    flip_byte(os.path.join(partition(data_dir), batches[3].log), batches[3].position + 40)
    with embedded_broker(data_dir=data_dir):
        before = tree(data_dir)
        result = samsa("repair", "--data-dir", data_dir, "--topic", TOPIC, "--partition", "0")
        assert tree(data_dir) == before
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"samsa log repair: data dir {data_dir} is in use by process {os.getpid()} (its lock "
        "file is held): stop the broker first\n"
    )


def consume_all(bootstrap: str, expected: int, timeout_s: float = 30.0) -> list[tuple[int, bytes]]:
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "repair-check", "enable.auto.commit": False}
    )
    consumer.assign([confluent_kafka.TopicPartition(TOPIC, 0, confluent_kafka.OFFSET_BEGINNING)])
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            got.append((placed(message)[1], value_of(message)))
    finally:
        consumer.close()
    return got


def test_the_broker_serves_the_repaired_partition(data_dir: str) -> None:
    """Written by a broker, damaged, refused by the broker, repaired, served again."""
    settings = {"log.segment.bytes": "1024"}
    with embedded_broker(data_dir=data_dir, settings=settings) as broker:
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(40):
            producer.produce(TOPIC, f"value-{i:03d}".encode() * 5)
            producer.flush(10)
    written = layout(partition(data_dir))
    bases = segments(written)
    assert len(bases) >= 4
    gone = bases[1]
    remove_segment(partition(data_dir), gone)
    hit = in_segment(written, bases[2])[1]
    flip_byte(os.path.join(partition(data_dir), hit.log), hit.position + 40)

    with embedded_broker(data_dir=data_dir, settings=settings) as broker:
        assert broker.server is not None
        refused = broker.server.broker.topics.partition(TOPIC, 0)
        assert refused is not None and refused.offline is not None

    lines = run_repair(data_dir)
    kept = [b for b in written if b.segment != gone and b != hit]
    assert lines[2:5] == [
        f"lost offsets {gone}-{bases[2] - 1} (missing between {segment_name(bases[0])}.log and "
        f"{segment_name(bases[2])}.log)",
        f"lost offset {hit.first} (damage at {hit.log} byte {hit.position})",
        f"kept {len(kept)} batch(es) in {len(bases) - 1} segment(s): log start 0, log end "
        f"{written[-1].last + 1}",
    ], lines

    with embedded_broker(data_dir=data_dir, settings=settings) as broker:
        got = consume_all(broker.bootstrap, len(kept))
        assert got == [(b.first, b.values[0]) for b in kept]
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
        delivered: list[int] = []
        producer.produce(
            TOPIC, b"after", on_delivery=lambda err, msg: delivered.append(placed(msg)[1])
        )
        producer.flush(10)
        assert delivered == [written[-1].last + 1]


def test_a_log_start_inside_the_first_segment_stays_there(
    data_dir: str, batches: list[Batch]
) -> None:
    """DeleteRecords left the log start inside the first segment: repair keeps the batches
    before it in that segment, loses nothing there, and checkpoints the same start."""
    second = segments(batches)[1]
    remove_segment(partition(data_dir), 0)
    start = in_segment(batches, second)[1].first
    with open(os.path.join(partition(data_dir), LOG_START_FILE), "w") as f:
        f.write(f"{start}\n")
    damaged = in_segment(batches, segments(batches)[-1])[0]
    flip_byte(os.path.join(partition(data_dir), damaged.log), damaged.position + 40)
    lines = run_repair(data_dir)
    assert [line for line in lines if line.startswith("lost")] == [
        f"lost offsets {damaged.first}-{damaged.last} (damage at {damaged.log} byte "
        f"{damaged.position})"
    ]
    with open(os.path.join(partition(data_dir), LOG_START_FILE)) as f:
        assert f.read() == f"{start}\n"
    assert read_back(data_dir, recover=False).log_start_offset == start
