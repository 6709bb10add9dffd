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
from typing import Any

from samsa.payments import scenario

ORDERS_DEFAULT = 1000
SEED_DEFAULT = 7

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


def main(orders: int, seed: int, as_json: bool, postgres: str | None = None) -> int:
    logging.getLogger("samsa.chaos").setLevel(logging.CRITICAL)  # restarts make it chatty
    if not as_json:
        store = "PostgreSQL" if postgres else "SQLite"
        print(
            f"samsa demo payments: {orders} orders, seed {seed}, {store};"
            " running samsa's pipeline...",
            flush=True,
        )
    samsa = summary(scenario.run("exactly-once", orders, seed, postgres=postgres))
    if not as_json:
        print(_report("samsa (idempotent consumer + gateway idempotency keys)", samsa), flush=True)
        print("\nrunning the same scenario with a naive at-least-once consumer...", flush=True)
    baseline = summary(scenario.run("naive", orders, seed, postgres=postgres))
    held = exactly_once_held(samsa)
    if as_json:
        print(
            json.dumps({**samsa, "exactly_once_held": held, "baseline": baseline}, sort_keys=True)
        )
    else:
        print(_report("baseline (naive at-least-once consumer: no dedup, no key)", baseline))
        verdict = "HELD" if held else "VIOLATED"
        print(
            f"\nexactly-once {verdict}: samsa charged {samsa['gateway_charges']} times for"
            f" {samsa['expected_charges']} chargeable orders; the naive consumer charged"
            f" {baseline['gateway_charges']} times ({baseline['duplicate_charges']} duplicates)."
        )
    return 0 if held else 1
