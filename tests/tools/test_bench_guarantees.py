"""`samsa bench guarantees` end to end at a test-only size: real brokers, clients, streams app
and payment pipeline; its JSON and its two PNG plots are written and parse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image

from samsa.bench.guarantees import INTERVALS_MS

SAMSA = [sys.executable, "-m", "samsa.cli"]


def test_tiny_run_writes_json_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [*SAMSA, "bench", "guarantees", "--tiny", "--json", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads(done.stdout)
    written = json.loads((out / "guarantees.json").read_text())
    assert printed == written
    ratios = written["ratios"]
    expected = {
        "idempotent/plain",
        "read_committed/read_uncommitted",
        "streams exactly_once/at_least_once",
        "payments exactly-once/naive",
        *(f"txn {interval} ms/idempotent" for interval in INTERVALS_MS),
    }
    assert set(ratios) == expected
    assert all(ratio > 0 for ratio in ratios.values())
    [round_] = written["rounds"]
    assert all(round_[f"txn_{interval}_commit_ms"] for interval in INTERVALS_MS)
    for name in ("throughput.png", "commit-latency.png"):
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 100 and image.shape[1] > 100


def test_an_unwritable_out_dir_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = subprocess.run(
        [*SAMSA, "bench", "guarantees", "--tiny", "--out", str(blocker / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("samsa bench: cannot write to ")
    assert "Traceback" not in done.stderr
