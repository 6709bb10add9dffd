"""`samsa demo payments`: the article's payment system end to end, under faults, audited; then the
same scenario with a naive at-least-once payment consumer (no dedup, no idempotency key).

    samsa demo payments [--orders N] [--seed S] [--json] [--postgres URL]

Everything runs here: an embedded broker behind the chaos proxy, the gateway on 127.0.0.1, the
payment consumers as subprocesses, SQLite files in a temporary directory (or PostgreSQL schemas,
dropped afterwards, with --postgres). Exit status 0 when samsa's pipeline charged every order
exactly once with a consistent ledger, 1 otherwise.
"""

from __future__ import annotations

import json
import logging
import textwrap
from typing import Any

from samsa.payments import scenario
from samsa.progress import Progress

ORDERS_DEFAULT = 1000
SEED_DEFAULT = 7
EXPLANATION_WIDTH = 96

FAULT_TITLES = {
    "lost_acks": "lost acknowledgments (Produce responses dropped)",
    "consumer_kills_after_charge": "payment consumer kill -9 after charge, before record",
    "consumer_kills_before_commit": "payment consumer kill -9 after record, before commit",
    "gateway_fail_before_charge": "gateway failures before charging (503)",
    "gateway_timeout_after_charge": "gateway timeouts after charging",
    "gateway_slow": "slow gateway responses",
    "broker_restarts": "broker restarts",
}


def summary(outcome: scenario.Outcome) -> dict[str, Any]:
    return outcome.as_dict()


def exactly_once_held(result: dict[str, Any]) -> bool:
    return bool(
        result["completed"]
        and result["duplicate_charges"] == 0
        and result["missing_charges"] == 0
        and result["unexpected_charges"] == 0
        and result["ledger_consistent"]
    )


def _report(title: str, result: dict[str, Any]) -> str:
    lines = [
        title,
        f"  orders                 {result['orders']} ({result['order_records']} records in"
        f" `orders`; {result['expected_charges']} to charge, the rest rejected or declined)",
        f"  charges at the gateway {result['gateway_charges']}",
        f"  duplicate charges      {result['duplicate_charges']}"
        f" ({result['overcharged_cents'] / 100:.2f} USD overcharged)",
        f"  missing charges        {result['missing_charges']}",
        f"  ledger                 {result['ledger_entries']} entries, "
        + ("consistent" if result["ledger_consistent"] else "INCONSISTENT"),
    ]
    lines += [f"      {problem}" for problem in result["ledger_problems"][:5]]
    lines.append(
        f"  results missing        {result['results_missing']}"
        f"   (finished in {result['elapsed_s']} s"
        + ("" if result["completed"] else ", DEADLINE PASSED")
        + ")"
    )
    lines.append("  faults injected:")
    lines += [f"    {result['faults'][key]:>5}  {text}" for key, text in FAULT_TITLES.items()]
    return "\n".join(lines)


def samsa_text(result: dict[str, Any]) -> str:
    """samsa's figures as the demo prints them, and what they mean."""
    title = "samsa (idempotent consumer + gateway idempotency keys)"
    return "\n".join([_report(title, result), *explain_samsa(result)])


def baseline_text(result: dict[str, Any]) -> str:
    title = "baseline (naive at-least-once consumer: no dedup, no key)"
    return "\n".join([_report(title, result), *explain_baseline(result)])


def explain_samsa(result: dict[str, Any]) -> list[str]:
    """What samsa's figures mean, in the figures' own numbers."""
    faults, payments, timeouts = _basis(result)
    by_status = ", ".join(f"{n} {status}" for status, n in result["ledger_by_status"].items())
    duplicates = _n(result["duplicate_charges"], "duplicate charge", "duplicate charges")
    return _explanation(
        f"{_n(result['ledger_entries'], 'ledger entry', 'ledger entries')} but"
        f" {_n(result['gateway_charges'], 'charge', 'charges')}: of {result['orders']} orders"
        f" validation rejected {result['rejected']} (no payment), which leaves"
        f" {_n(payments, 'payment', 'payments')}, one entry each: {by_status} (a declined card"
        " is an entry with no charge).",
        f"{_n(faults['lost_acks'], 'lost acknowledgment', 'lost acknowledgments')}: the"
        " checkout sent those batches again, and the broker recognised its idempotent"
        f" producer's retries, so `orders` holds {result['order_records']} records for"
        f" {result['orders']} orders.",
        f"{_n(faults['consumer_kills'], 'payment worker', 'payment workers')} killed -9"
        f" mid-payment and {timeouts} after charging: Kafka delivered those payments again;"
        " the consumer found the outcome recorded, or charged again with the same idempotency"
        f" key and got the first charge back: {duplicates}.",
    )


def explain_baseline(result: dict[str, Any]) -> list[str]:
    """What the naive consumer's figures mean, in its own numbers."""
    faults, payments, timeouts = _basis(result)
    return _explanation(
        f"{_n(result['gateway_charges'], 'charge', 'charges')} for"
        f" {result['expected_charges']} chargeable orders:"
        f" {_n(result['duplicate_charges'], 'duplicate charge', 'duplicate charges')}"
        f" ({result['overcharged_cents'] / 100:.2f} USD): every payment Kafka delivered again"
        f" (after {_n(faults['consumer_kills'], 'kill', 'kills')} -9 and {timeouts}"
        " after charging) was charged again, with no idempotency key to tell the gateway it was"
        " the same payment.",
        f"{_n(result['ledger_entries'], 'ledger entry', 'ledger entries')} for"
        f" {_n(payments, 'payment', 'payments')}:"
        f" {_n(result['extra_entries'], 'entry', 'entries')} beyond one per order (an order"
        " processed twice is written twice), and"
        f" {_n(result['unbooked_charges'], 'charge', 'charges')} in no entry (a worker killed"
        " after charging, before writing the ledger).",
    )


def _basis(result: dict[str, Any]) -> tuple[dict[str, int], int, str]:
    """The faults, the payments (orders validation let through), the timeouts after charging."""
    faults = result["faults"]
    timeouts = _n(faults["gateway_timeout_after_charge"], "gateway timeout", "gateway timeouts")
    return faults, result["orders"] - result["rejected"], timeouts


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _explanation(*paragraphs: str) -> list[str]:
    lines = ["  what these figures mean:"]
    for paragraph in paragraphs:
        lines += textwrap.wrap(
            paragraph, EXPLANATION_WIDTH, initial_indent="  - ", subsequent_indent="    "
        )
    return lines


def main(orders: int, seed: int, as_json: bool, postgres: str | None = None) -> int:
    logging.getLogger("samsa.chaos").setLevel(logging.CRITICAL)  # restarts make it chatty
    if not as_json:
        store = "PostgreSQL" if postgres else "SQLite"
        print(
            f"samsa demo payments: {orders} orders, seed {seed}, {store};"
            " running samsa's pipeline...",
            flush=True,
        )
    with Progress.for_command(as_json) as progress:
        samsa = summary(
            scenario.run("exactly-once", orders, seed, postgres=postgres, progress=progress)
        )
        if not as_json:
            print(samsa_text(samsa))
            print("\nrunning the same scenario with a naive at-least-once consumer...", flush=True)
        baseline = summary(
            scenario.run("naive", orders, seed, postgres=postgres, progress=progress)
        )
    held = exactly_once_held(samsa)
    if as_json:
        print(
            json.dumps({**samsa, "exactly_once_held": held, "baseline": baseline}, sort_keys=True)
        )
    else:
        print(baseline_text(baseline))
        verdict = "HELD" if held else "VIOLATED"
        print(
            f"\nexactly-once {verdict}: samsa charged {samsa['gateway_charges']} times for"
            f" {samsa['expected_charges']} chargeable orders; the naive consumer charged"
            f" {baseline['gateway_charges']} times ({baseline['duplicate_charges']} duplicates)."
        )
    return 0 if held else 1
