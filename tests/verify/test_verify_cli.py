"""`samsa verify` end to end: a `samsa serve` subprocess behind the chaos proxy, every fault kind,
and no anomaly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from samsa.testing import EmbeddedBroker
from samsa.testing.process import SAMSA
from samsa.testing.terminal import in_terminal
from samsa.verify import checker
from samsa.verify.faults import ALL_FAULTS

pytestmark = pytest.mark.interop


def test_a_short_verify_run_injects_every_fault_and_finds_no_anomaly(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    command = [
        sys.executable,
        "-m",
        "samsa.cli",
        "verify",
        "--duration",
        "20",
        "--fault-interval",
        "1",
        "--json",
        "--history",
        str(history),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.stdout, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["anomalies"] == {kind: 0 for kind in checker.CLASSES}, report["examples"]
    assert all(report["faults"][kind] > 0 for kind in ALL_FAULTS), report["faults"]
    assert report["ops"]["send"]["ok"] > 100
    assert report["ops"]["txn"]["ok"] > 10
    assert done.returncode == 0
    # The kept history checks the same again.
    again = subprocess.run(
        [sys.executable, "-m", "samsa.cli", "verify", "--check", str(history), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(again.stdout)["anomalies"] == report["anomalies"]


def test_a_verify_run_with_the_consumer_group_protocol_finds_no_anomaly() -> None:
    """`--group-protocol consumer`: the copiers and subscribing consumers are KIP-848 members
    (the broker assigns; TxnOffsetCommit carries member epochs), under faults."""
    command = [
        *(sys.executable, "-m", "samsa.cli", "verify", "--duration", "12"),
        *("--fault-interval", "2", "--seed", "3", "--group-protocol", "consumer", "--json"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.stdout, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["anomalies"] == {kind: 0 for kind in checker.CLASSES}, report["examples"]
    assert report["ops"]["assign"]["ok"] > 0 and report["ops"]["txn"]["ok"] > 10
    assert done.returncode == 0


def test_two_runs_against_one_cluster_are_both_valid(samsa_broker: EmbeddedBroker) -> None:
    """Each run names its topics afresh: the second does not read the first one's records (it
    used to report thousands of duplicates and reads past the LSO). Naming the first run's
    topics again is refused, unless told to reuse them. The first run is on a terminal, where it
    says which phase it is in."""
    verify = [SAMSA, "verify", "--bootstrap", samsa_broker.bootstrap, "--duration", "2"]
    code, shown = in_terminal(verify)
    assert code == 0, shown
    for phase in (
        f"connecting to {samsa_broker.bootstrap}",
        "starting the clients",
        "workload under faults (client-crash)",
        "stopping the writers",
        "reading every partition back",
        "checking",
    ):
        assert phase in shown, phase
    assert "VALID: no anomaly found" in shown
    found = re.search(r", topics (verify-[0-9a-f]+)-\*", shown)
    assert found, shown
    first = found.group(1)

    done = subprocess.run([*verify, "--json"], capture_output=True, text=True, timeout=120)
    assert done.stdout, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["valid"] is True, report["anomalies"]
    assert report["ops"]["final-read"]["ok"] == 2
    assert done.returncode == 0
    assert report["topic_prefix"] != first

    again = subprocess.run(
        [*verify, "--topic-prefix", first], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 2
    assert again.stderr.splitlines() == [
        f"samsa verify: topics {first}-in, {first}-out exist from an earlier run, and their "
        "records would read as anomalies: choose another --topic-prefix (or leave it out for a "
        "fresh one), or pass --reuse-topics"
    ]
    assert again.stdout == ""
