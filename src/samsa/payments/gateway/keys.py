"""The gateway's state: idempotency keys and charges, after Stripe's semantics and Brandur
Leach's Postgres design (see shared/reference/ecosystem.md §4).

A key is *running* from the moment the charge endpoint begins to execute until its response is
stored, then *done*. The charge row and the stored response are written in one transaction, so
the gateway itself is exactly-once per key: a retry either finds the key done (the response is
replayed, errors included) or finds no charge made (a running key whose lock is older than
`lock_timeout_ms` belongs to a crashed request and is taken over).

Choices (IETF draft-ietf-httpapi-idempotency-key-header): same key with different parameters is
422; same key while the first request runs is 409; keys older than `ttl_ms` (24 h by default)
are pruned and a reused pruned key is a new request, as at Stripe.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from samsa.effects.db import Database, Tx

TTL_MS_DEFAULT = 24 * 3600 * 1000
LOCK_TIMEOUT_MS_DEFAULT = 90_000

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS gateway_idempotency (
        idempotency_key TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL,
        locked_ms BIGINT NOT NULL,
        created_ms BIGINT NOT NULL,
        response_status INTEGER,
        response_body TEXT)""",
    """CREATE TABLE IF NOT EXISTS gateway_charges (
        charge_id TEXT PRIMARY KEY,
        idempotency_key TEXT,
        order_id TEXT NOT NULL,
        amount BIGINT NOT NULL,
        currency TEXT NOT NULL,
        created_ms BIGINT NOT NULL)""",
)


def fingerprint(params: dict[str, Any]) -> str:
    """What "the same parameters" means: the canonical JSON of the request body."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Proceed:
    """The caller now holds the key and must `complete` or `release` it."""


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The key was first used with other parameters (422)."""


@dataclass(frozen=True, slots=True)
class InProgress:
    """The first request with this key is still running (409)."""


Begin = Proceed | Replay | Mismatch | InProgress


@dataclass(frozen=True, slots=True)
class Charge:
    charge_id: str
    idempotency_key: str | None
    order_id: str
    amount: int
    currency: str
    created_ms: int


class GatewayState:
    def __init__(
        self,
        database: Database,
        clock_ms: Callable[[], int],
        ttl_ms: int = TTL_MS_DEFAULT,
        lock_timeout_ms: int = LOCK_TIMEOUT_MS_DEFAULT,
    ) -> None:
        self.database = database
        self.clock_ms = clock_ms
        self.ttl_ms = ttl_ms
        self.lock_timeout_ms = lock_timeout_ms
        with database.transaction() as tx:
            for statement in SCHEMA:
                tx.execute(statement)

    def begin(self, key: str, params: dict[str, Any]) -> Begin:
        now = self.clock_ms()
        print_ = fingerprint(params)
        with self.database.transaction() as tx:
            # An expired key is forgotten: its reuse is a new request (Stripe prunes at 24 h).
            tx.execute(
                "DELETE FROM gateway_idempotency WHERE idempotency_key = ? AND created_ms <= ?",
                (key, now - self.ttl_ms),
            )
            row = tx.fetchone(
                "INSERT INTO gateway_idempotency"
                " (idempotency_key, fingerprint, state, locked_ms, created_ms)"
                " VALUES (?, ?, 'running', ?, ?)"
                " ON CONFLICT (idempotency_key) DO UPDATE SET locked_ms = excluded.locked_ms"
                " WHERE gateway_idempotency.state = 'running'"
                "   AND gateway_idempotency.fingerprint = excluded.fingerprint"
                "   AND gateway_idempotency.locked_ms <= ?"
                " RETURNING idempotency_key",
                (key, print_, now, now, now - self.lock_timeout_ms),
            )
            if row is not None:
                return Proceed()
            existing = tx.fetchone(
                "SELECT fingerprint, state, response_status, response_body"
                " FROM gateway_idempotency WHERE idempotency_key = ?",
                (key,),
            )
        if existing is None:
            return InProgress()  # deleted concurrently; the client retries
        stored_print, state, status, body = existing
        if stored_print != print_:
            return Mismatch()
        if state == "running":
            return InProgress()
        return Replay(int(status), json.loads(body))

    def complete(
        self, key: str | None, status: int, body: dict[str, Any], charge: Charge | None
    ) -> None:
        """Store the response and make the charge, atomically. Without a key (a client that
        sends none), only the charge."""
        with self.database.transaction() as tx:
            if charge is not None:
                _insert_charge(tx, charge)
            if key is not None:
                tx.execute(
                    "UPDATE gateway_idempotency SET state = 'done', response_status = ?,"
                    " response_body = ? WHERE idempotency_key = ?",
                    (status, json.dumps(body, sort_keys=True), key),
                )

    def release(self, key: str) -> None:
        """Forget a running key whose request failed before any effect (not stored, so the
        client may retry)."""
        with self.database.transaction() as tx:
            tx.execute(
                "DELETE FROM gateway_idempotency WHERE idempotency_key = ? AND state = 'running'",
                (key,),
            )

    def prune(self) -> int:
        with self.database.transaction() as tx:
            return tx.execute(
                "DELETE FROM gateway_idempotency WHERE created_ms <= ?",
                (self.clock_ms() - self.ttl_ms,),
            )

    def charges(self) -> list[Charge]:
        with self.database.transaction() as tx:
            rows = tx.fetchall(
                "SELECT charge_id, idempotency_key, order_id, amount, currency, created_ms"
                " FROM gateway_charges ORDER BY created_ms, charge_id"
            )
        return [
            Charge(str(a), None if b is None else str(b), str(c), int(d), str(e), int(f))
            for a, b, c, d, e, f in rows
        ]


def _insert_charge(tx: Tx, charge: Charge) -> None:
    tx.execute(
        "INSERT INTO gateway_charges"
        " (charge_id, idempotency_key, order_id, amount, currency, created_ms)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            charge.charge_id,
            charge.idempotency_key,
            charge.order_id,
            charge.amount,
            charge.currency,
            charge.created_ms,
        ),
    )


def new_charge_id() -> str:
    return "ch_" + secrets.token_hex(12)
