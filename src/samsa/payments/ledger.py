"""The ledger: one row per payment outcome, in the payment consumer's database.

No uniqueness constraint on purpose: the table records what the consumer did, so the audit can
see a naive consumer's duplicate entries instead of a constraint hiding them.
"""

from __future__ import annotations

from dataclasses import dataclass

from samsa.effects.db import Database, Tx

SCHEMA = """CREATE TABLE IF NOT EXISTS ledger (
    order_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status TEXT NOT NULL,
    charge_id TEXT,
    amount BIGINT NOT NULL,
    recorded_ms BIGINT NOT NULL)"""


@dataclass(frozen=True, slots=True)
class Entry:
    order_id: str
    idempotency_key: str
    status: str  # "charged" | "declined" | "failed"
    charge_id: str | None
    amount: int


def create(database: Database) -> None:
    with database.transaction() as tx:
        tx.execute(SCHEMA)


def insert(tx: Tx, entry: Entry, recorded_ms: int) -> None:
    tx.execute(
        "INSERT INTO ledger (order_id, idempotency_key, status, charge_id, amount, recorded_ms)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            entry.order_id,
            entry.idempotency_key,
            entry.status,
            entry.charge_id,
            entry.amount,
            recorded_ms,
        ),
    )


def entries(database: Database) -> list[Entry]:
    with database.transaction() as tx:
        rows = tx.fetchall(
            "SELECT order_id, idempotency_key, status, charge_id, amount FROM ledger"
        )
    return [
        Entry(str(a), str(b), str(c), None if d is None else str(d), int(e))
        for a, b, c, d, e in rows
    ]
