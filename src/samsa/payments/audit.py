"""The audit: orders against gateway charges against ledger entries against results.

Pure: it takes what was read from the topics, the gateway and the database, and says exactly
what happened to each order.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from samsa.payments.ledger import Entry
from samsa.payments.model import Order, expects_charge, rejection


@dataclass(slots=True)
class Audit:
    orders: int  # distinct orders in the `orders` topic
    order_records: int  # records in `orders` (more than `orders` = producer duplicates)
    expected_charges: int  # valid orders with a card the gateway accepts
    gateway_charges: int
    duplicate_charges: int  # charges beyond the first for an order
    missing_charges: int  # orders that should have been charged and were not
    unexpected_charges: int  # charges for orders that should not have been charged
    ledger_entries: int
    ledger_consistent: bool
    ledger_problems: list[str] = field(default_factory=list)
    results_missing: int = 0  # orders with no record in `payment-results`
    overcharged_cents: int = 0
    rejected: int = 0  # orders validation rejects: no payment, so no ledger entry
    ledger_by_status: dict[str, int] = field(default_factory=dict)  # charged, declined, failed
    extra_entries: int = 0  # ledger entries beyond the one an order should have
    unbooked_charges: int = 0  # gateway charges the ledger does not name

    def as_dict(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "order_records": self.order_records,
            "expected_charges": self.expected_charges,
            "gateway_charges": self.gateway_charges,
            "duplicate_charges": self.duplicate_charges,
            "missing_charges": self.missing_charges,
            "unexpected_charges": self.unexpected_charges,
            "overcharged_cents": self.overcharged_cents,
            "ledger_entries": self.ledger_entries,
            "ledger_consistent": self.ledger_consistent,
            "ledger_problems": self.ledger_problems[:10],
            "results_missing": self.results_missing,
            "rejected": self.rejected,
            "ledger_by_status": dict(sorted(self.ledger_by_status.items())),
            "extra_entries": self.extra_entries,
            "unbooked_charges": self.unbooked_charges,
        }


def audit(
    order_records: list[Order],
    charges: list[dict[str, Any]],
    entries: list[Entry],
    result_order_ids: set[str],
) -> Audit:
    orders = {order.order_id: order for order in order_records}
    charges_by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for charge in charges:
        charges_by_order[charge["order_id"]].append(charge)
    expected = {oid for oid, order in orders.items() if expects_charge(order)}
    duplicate = sum(max(0, len(charges_by_order[oid]) - 1) for oid in expected)
    overcharged = sum(sum(c["amount"] for c in charges_by_order[oid][1:]) for oid in expected)
    missing = sum(1 for oid in expected if not charges_by_order[oid])
    unexpected = sum(len(cs) for oid, cs in charges_by_order.items() if oid not in expected)
    problems = _ledger_problems(orders, charges, entries)
    per_order = Counter(entry.order_id for entry in entries)
    booked = {entry.charge_id for entry in entries if entry.status == "charged"}
    return Audit(
        orders=len(orders),
        order_records=len(order_records),
        expected_charges=len(expected),
        gateway_charges=len(charges),
        duplicate_charges=duplicate,
        missing_charges=missing,
        unexpected_charges=unexpected,
        ledger_entries=len(entries),
        ledger_consistent=not problems,
        ledger_problems=problems,
        results_missing=sum(1 for oid in orders if oid not in result_order_ids),
        overcharged_cents=overcharged,
        rejected=sum(1 for order in orders.values() if rejection(order) is not None),
        ledger_by_status=dict(Counter(entry.status for entry in entries)),
        extra_entries=sum(max(0, n - 1) for n in per_order.values()),
        unbooked_charges=sum(1 for charge in charges if charge["id"] not in booked),
    )


def _ledger_problems(
    orders: dict[str, Order], charges: list[dict[str, Any]], entries: list[Entry]
) -> list[str]:
    """The ledger is consistent when every order that reached the payment consumer has exactly
    one entry, every "charged" entry names a real charge of that order for its amount, and every
    gateway charge appears in the ledger (none made behind the ledger's back)."""
    problems: list[str] = []
    charge_by_id = {c["id"]: c for c in charges}
    per_order = Counter(entry.order_id for entry in entries)
    for oid, order in orders.items():
        wanted = 1 if rejection(order) is None else 0
        if per_order[oid] != wanted:
            problems.append(f"{oid}: {per_order[oid]} ledger entries, expected {wanted}")
    booked = set()
    for entry in entries:
        if entry.status != "charged":
            continue
        charge = charge_by_id.get(entry.charge_id or "")
        if charge is None or charge["order_id"] != entry.order_id:
            problems.append(f"{entry.order_id}: ledger names no such charge {entry.charge_id}")
        elif charge["amount"] != entry.amount:
            problems.append(f"{entry.order_id}: ledger amount {entry.amount} != charged")
        booked.add(entry.charge_id)
    for charge in charges:
        if charge["id"] not in booked:
            problems.append(f"{charge['order_id']}: charge {charge['id']} is not in the ledger")
    return problems
