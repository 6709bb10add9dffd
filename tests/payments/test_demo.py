"""The payment system end to end, under every fault, audited; and the naive baseline."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from samsa.payments import demo, scenario

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
    check_explanations(result, result["baseline"])


@pytest.mark.slow
def test_demo_payments_1000_orders() -> None:
    samsa = scenario.run("exactly-once", 1000, 7).as_dict()
    baseline = scenario.run("naive", 1000, 7).as_dict()
    assert samsa["orders"] == 1000
    check(samsa, baseline)
    check_explanations(samsa, baseline)


def check_explanations(result: dict[str, Any], baseline: dict[str, Any]) -> None:
    """The text report says why the ledger has more entries than charges and what the naive
    consumer's duplicates are; every number in the explanation agrees with the table above it
    (as the demo prints them: `samsa_text`, `baseline_text`)."""
    samsa_part, baseline_part = demo.samsa_text(result), demo.baseline_text(baseline)
    for part in (samsa_part, baseline_part):
        assert "what these figures mean:" in part
    table, said = _figures(samsa_part)
    found = re.search(
        r"(\d+) ledger entries but (\d+) charges: of (\d+) orders validation rejected (\d+) \(no"
        r" payment\), which leaves (\d+) payments, one entry each: ([^(]*) \(a declined",
        said,
    )
    assert found, said
    entries, charges, orders, rejected, payments = map(int, found.groups()[:5])
    statuses = {s.split()[1]: int(s.split()[0]) for s in found.group(6).split(", ")}
    assert entries == table["ledger"] > charges == table["charges"]  # more entries than charges
    assert orders == table["orders"] and payments == orders - rejected == entries
    assert sum(statuses.values()) == entries and statuses["charged"] == charges
    assert statuses["declined"] == entries - charges - statuses.get("failed", 0) > 0
    found = re.search(r"(\d+) lost acknowledgments?: .* holds (\d+) records for (\d+) orders", said)
    assert found, said
    assert int(found.group(1)) == table["lost acknowledgments"]
    assert int(found.group(2)) == table["records"] and int(found.group(3)) == table["orders"]
    found = re.search(
        r"(\d+) payment workers? killed -9 mid-payment and (\d+) gateway timeout", said
    )
    assert found, said
    assert int(found.group(1)) == table["kills"]
    assert int(found.group(2)) == table["gateway timeouts after charging"]
    assert (
        said.endswith(f"back: {table['duplicates']} duplicate charges.")
        and table["duplicates"] == 0
    )

    table, said = _figures(baseline_part)
    found = re.search(
        r"(\d+) charges for (\d+) chargeable orders: (\d+) duplicate charges? \(([\d.]+) USD\):"
        r" every payment Kafka delivered again \(after (\d+) kills? -9 and (\d+) gateway timeout",
        said,
    )
    assert found, said
    charges, chargeable, duplicates = map(int, found.groups()[:3])
    assert (
        charges == table["charges"] == chargeable + duplicates
        and duplicates == table["duplicates"] > 0
    )
    assert found.group(4) == table["overcharged"]
    assert int(found.group(5)) == table["kills"]
    assert int(found.group(6)) == table["gateway timeouts after charging"]
    found = re.search(
        r"(\d+) ledger entr(?:y|ies) for (\d+) payments: (\d+) entr(?:y|ies) beyond", said
    )
    assert found, said
    assert int(found.group(1)) == table["ledger"]


def _figures(part: str) -> tuple[dict[str, Any], str]:
    """The figures of one report's table, and its explanation joined into one line."""
    table, _, explanation = part.partition("what these figures mean:")
    figures: dict[str, Any] = {}
    found = re.search(r"orders +(\d+) \((\d+) records", table)
    assert found, table
    figures["orders"], figures["records"] = int(found.group(1)), int(found.group(2))
    for name, pattern in (
        ("charges", r"charges at the gateway (\d+)"),
        ("duplicates", r"duplicate charges +(\d+)"),
        ("ledger", r"ledger +(\d+) entries"),
    ):
        found = re.search(pattern, table)
        assert found, (pattern, table)
        figures[name] = int(found.group(1))
    found = re.search(r"\(([\d.]+) USD overcharged\)", table)
    assert found, table
    figures["overcharged"] = found.group(1)
    faults = {m.group(2): int(m.group(1)) for m in re.finditer(r"^ +(\d+)  (.+)$", table, re.M)}
    figures["lost acknowledgments"] = faults["lost acknowledgments (Produce responses dropped)"]
    figures["kills"] = (
        faults["payment consumer kill -9 after charge, before record"]
        + faults["payment consumer kill -9 after record, before commit"]
    )
    figures["gateway timeouts after charging"] = faults["gateway timeouts after charging"]
    lines = explanation.split("\n\n")[0].splitlines()
    return figures, " ".join(line.strip().removeprefix("- ") for line in lines)
