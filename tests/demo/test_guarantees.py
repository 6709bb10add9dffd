"""`samsa demo guarantees`: the three delivery guarantees under the same faults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from samsa.demo.guarantees import MODES, Tally, format_table, tally

SAMSA = str(Path(sys.executable).parent / "samsa")
RECORDS = 2000
TIMEOUT_S = 240
KEYS = {"sent", "acknowledged", "stored", "lost", "duplicated", "faults"}


def test_demo_shows_loss_duplicates_and_exactly_once() -> None:
    completed = subprocess.run(
        [SAMSA, "demo", "guarantees", "--records", str(RECORDS), "--seed", "7", "--json"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout)  # stdout is exactly one JSON object
    assert set(report) == {"at_most_once", "at_least_once", "exactly_once", "consume"}
    consume = report.pop("consume")
    for name, mode in report.items():
        assert set(mode) == KEYS, name
        assert mode["sent"] == RECORDS, name
        assert sum(mode["faults"].values()) > 0, (name, mode)
        assert mode["stored"] == RECORDS - mode["lost"] + mode["duplicated"], (name, mode)

    at_most, at_least, exactly = (
        report[k] for k in ("at_most_once", "at_least_once", "exactly_once")
    )
    assert at_most["lost"] > 0, at_most
    assert at_most["duplicated"] == 0, at_most  # no retries, so no second copies
    # acks=0: the producer counted records as delivered that the broker never saw.
    assert at_most["acknowledged"] > at_most["stored"], at_most
    assert at_least["duplicated"] > 0, at_least
    assert at_least["lost"] == 0, at_least
    assert exactly["lost"] == 0 and exactly["duplicated"] == 0, exactly
    assert exactly["acknowledged"] == exactly["stored"] == RECORDS, exactly
    assert exactly["faults"]["dropped_responses"] > 0, exactly

    # The consume side (issue 5): a processor crashed between its processing and its commit.
    assert set(consume) == {"at_most_once", "at_least_once", "exactly_once"}
    for name, mode in consume.items():
        assert set(mode) == KEYS, name
        assert mode["sent"] == RECORDS, name
        assert mode["faults"]["crashes"] > 0, (name, mode)
        assert mode["stored"] == RECORDS - mode["lost"] + mode["duplicated"], (name, mode)
    at_most, at_least, exactly = (
        consume[k] for k in ("at_most_once", "at_least_once", "exactly_once")
    )
    assert at_most["lost"] > 0 and at_most["duplicated"] == 0, at_most  # committed, then died
    assert at_least["duplicated"] > 0 and at_least["lost"] == 0, at_least  # processed, then died
    assert exactly["lost"] == 0 and exactly["duplicated"] == 0, exactly


def test_tally_counts_lost_and_duplicated_records() -> None:
    sent = [b"a", b"b", b"c", b"d"]
    result = tally(sent, 4, [b"a", b"b", b"b", b"b", b"d"], {"cuts": 2})
    assert result == Tally(
        sent=4, acknowledged=4, stored=5, lost=1, duplicated=2, faults={"cuts": 2}
    )


def test_table_has_a_row_per_mode() -> None:
    row = Tally(sent=10, acknowledged=9, stored=12, lost=1, duplicated=3, faults={"cuts": 4})
    table = format_table({mode.key: row for mode in MODES}).splitlines()
    assert len(table) == 1 + len(MODES)
    assert table[0].split() == [
        "sent",
        "acknowledged",
        "stored",
        "lost",
        "duplicated",
        "faults",
        "injected",
    ]
    for mode, line in zip(MODES, table[1:], strict=True):
        assert line.startswith(mode.title)
        assert line.split()[1:7] == ["10", "9", "12", "1", "3", "4"]
