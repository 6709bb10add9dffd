"""`samsa log dump` over a data dir a real broker wrote: an idempotent producer's batch, a
committed and an aborted transaction (their COMMIT and ABORT markers), and a segment with one
flipped byte."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from samsa.cli import main
from samsa.protocol.batch import HEADER_BYTES
from samsa.testing import EmbeddedBroker
from samsa.testing.damage import flip_byte
from samsa.testing.topics import create_topic
from tools.support import samsa

TOPIC = "dumped"
TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = str(tmp_path_factory.mktemp("dump") / "data")
    with EmbeddedBroker(data_dir=directory) as broker:
        create_topic(broker.bootstrap, TOPIC)
        idempotent = Producer(
            {"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 50}
        )
        for i in range(3):
            idempotent.produce(
                TOPIC, f"value-{i}".encode(), key=f"key-{i}".encode(), headers=[("h", b"x")]
            )
        idempotent.flush(TIMEOUT_S)
        transactional = Producer(
            {"bootstrap.servers": broker.bootstrap, "transactional.id": "dump-tx", "linger.ms": 50}
        )
        transactional.init_transactions(TIMEOUT_S)
        for outcome in ("committed", "aborted"):
            transactional.begin_transaction()
            transactional.produce(TOPIC, outcome.encode())
            transactional.flush(TIMEOUT_S)
            if outcome == "committed":
                transactional.commit_transaction(TIMEOUT_S)
            else:
                transactional.abort_transaction(TIMEOUT_S)
    return directory  # the broker stopped cleanly: every marker is written


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`samsa log dump ARGS` in this process (the subprocess form is tested once, below)."""
    code = main(["log", "dump", *args])
    out, err = capsys.readouterr()
    return code, out, err


def rows(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    code, out, err = run(capsys, "--json", *args)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_each_batch_shows_its_producer_its_transaction_and_its_marker(
    data_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    found = rows(capsys, "--data-dir", data_dir, "--topic", TOPIC, "--partition", "0")
    batches = [row for row in found if row["kind"] == "batch"]
    assert all(row["isvalid"] for row in batches)
    first = batches[0]
    assert (first["baseOffset"], first["lastOffset"], first["count"]) == (0, 2, 3)
    assert first["producerId"] >= 0 and first["producerEpoch"] >= 0
    assert (first["baseSequence"], first["lastSequence"]) == (0, 2)
    assert not first["isTransactional"] and not first["isControl"]
    assert first["position"] == 0 and first["compresscodec"] == "none"
    assert first["CreateTime"] > 0 and first["size"] > HEADER_BYTES
    assert batches[1]["position"] == first["size"]
    markers = [row for row in batches if row["isControl"]]
    assert [row["endTxnMarker"] for row in markers] == ["COMMIT", "ABORT"]
    assert all(row["isTransactional"] and row["baseSequence"] == -1 for row in markers)
    data = [row for row in batches if row["isTransactional"] and not row["isControl"]]
    assert [row["baseOffset"] for row in data] == [3, 5]  # each followed by its marker
    assert data[0]["producerId"] == markers[0]["producerId"] != first["producerId"]
    assert not any(row["kind"] == "record" for row in found)  # records only when asked


def test_print_data_log_shows_each_record_s_key_value_and_headers(
    data_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    found = rows(
        capsys, "--data-dir", data_dir, "--topic", TOPIC, "--partition", "0", "--print-data-log"
    )
    records = [row for row in found if row["kind"] == "record"]
    assert [(r["offset"], r["key"], r["payload"]) for r in records[:3]] == [
        (i, f"key-{i}", f"value-{i}") for i in range(3)
    ]
    assert records[0]["headers"] == {"h": "x"} and records[0]["sequence"] == 0
    assert [r["payload"] for r in records if r["offset"] in (3, 5)] == ["committed", "aborted"]


def test_text_output_reads_like_kafka_dump_log(data_dir: str) -> None:
    segment = os.path.join(data_dir, f"{TOPIC}-0", "00000000000000000000.log")
    result = samsa("dump", "--files", segment, "--deep-iteration")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [f"Dumping {segment}", "Log starting offset: 0"]
    assert lines[2].startswith("baseOffset: 0 lastOffset: 2 count: 3 baseSequence: 0 ")
    assert "isTransactional: false" in lines[2] and lines[2].endswith("isvalid: true")
    assert lines[3].startswith("| offset: 0 CreateTime: ") and "keySize: 5" in lines[3]
    assert "payload" not in lines[3]  # --deep-iteration without --print-data-log
    assert sum("endTxnMarker: COMMIT" in line for line in lines) == 1
    assert sum("endTxnMarker: ABORT" in line for line in lines) == 1


def test_a_flipped_byte_shows_its_batch_invalid_and_the_rest_valid(
    data_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = str(tmp_path / "00000000000000000000.log")
    shutil.copy(os.path.join(data_dir, f"{TOPIC}-0", "00000000000000000000.log"), copy)
    flip_byte(copy, HEADER_BYTES + 5)  # inside the first batch's records
    found = rows(capsys, "--files", copy)
    batches = [row for row in found if row["kind"] == "batch"]
    assert [row["isvalid"] for row in batches] == [False] + [True] * (len(batches) - 1)
    assert batches[0]["baseOffset"] == 0 and batches[0]["count"] == 3
    assert len(batches) == 5  # nothing was lost from view
    code, out, _ = run(capsys, "--files", copy)
    assert code == 0  # as kafka-dump-log: shown, not an exit status
    assert out.splitlines()[2].endswith("isvalid: false")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--files", "{dir}/nope.log"], "not a segment file"),
        (["--files", "{dir}/00000000000000000099.log"], "no file"),
        (["--data-dir", "{data}"], "give --files, or --data-dir with --topic and --partition"),
        (["--data-dir", "{data}", "--topic", "missing", "--partition", "0"], "no topic missing"),
    ],
    ids=["not-a-segment", "missing-file", "no-partition", "unknown-topic"],
)
def test_misuse_is_one_line_and_exit_2(
    data_dir: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = {"data": data_dir, "dir": os.path.join(data_dir, f"{TOPIC}-0")}
    code, out, err = run(capsys, *(arg.format(**paths) for arg in args))
    assert code == 2, out + err
    assert out == "" and len(err.splitlines()) == 1, err
    assert message in err
    assert err.startswith("samsa log dump: ")
