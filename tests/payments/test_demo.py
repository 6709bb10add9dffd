"""The payment system end to end, under every fault, audited; and the naive baseline."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from samsa.payments import scenario

FAULT_KINDS = (
    "lost_acks",
    "consumer_kills_after_charge",
    "consumer_kills_before_commit",
    "gateway_fail_before_charge",
    "gateway_timeout_after_charge",
    "gateway_slow",
    "broker_restarts",
)


def check(result: dict[str, object], baseline: dict[str, object]) -> None:
    assert result["completed"] is True
    assert result["duplicate_charges"] == 0
    assert result["missing_charges"] == 0
    assert result["unexpected_charges"] == 0
    assert result["gateway_charges"] == result["expected_charges"]
    assert result["ledger_consistent"] is True, result["ledger_problems"]
    assert result["results_missing"] == 0
    faults = result["faults"]
    assert isinstance(faults, dict)
    for kind in FAULT_KINDS:
        assert faults[kind] >= 1, f"{kind} was never injected: {faults}"
    assert baseline["duplicate_charges"] > 0  # type: ignore[operator]
    assert baseline["ledger_consistent"] is False
    assert baseline["faults"]["consumer_kills"] >= 1  # type: ignore[index]


def test_demo_payments_json_small() -> None:
    """`samsa demo payments --json` as a user runs it, with fewer orders for speed."""
    completed = subprocess.run(
        [sys.executable, "-m", "samsa.cli", "demo", "payments", "--orders", "120", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)
    assert result["orders"] == 120
    check(result, result["baseline"])


@pytest.mark.slow
def test_demo_payments_1000_orders() -> None:
    samsa = scenario.run("exactly-once", 1000, 7).as_dict()
    baseline = scenario.run("naive", 1000, 7).as_dict()
    assert samsa["orders"] == 1000
    check(samsa, baseline)
