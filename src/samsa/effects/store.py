"""The dedup store: who may run the side effect for a key, and what came of it.

Theory of operation. A key (an `idempotency_key`) is in one of three states:

- absent: nobody has tried it. `claim` inserts it as *claimed* by the caller, with a lease.
- claimed: an owner is running the effect. Another owner's `claim` answers BUSY until the lease
  runs out; then it takes the claim over (the first owner is presumed dead). The same owner
  (a restarted consumer with the same stable id, like a `transactional.id`) takes it over at
  once. Each claim bumps `attempt`, which fences: `record` and `release` only act if the
  caller still holds the claim it was given, so a zombie cannot overwrite a newer outcome.
- done: the outcome is recorded. `claim` answers DONE with it, and the effect is never run again
  for as long as the record is retained (`retention_ms`; `prune` deletes older records).

A takeover means the effect may already have happened (the owner crashed after the external
call and before `record`): that is resolved by the external system, because the handler passes
the same idempotency key again and the external system replays its stored answer.

The claim is one atomic statement (`INSERT ... ON CONFLICT DO UPDATE ... WHERE ... RETURNING`),
so of two consumers racing on one key exactly one gets CLAIMED.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from samsa.effects.db import Database, Tx

RETENTION_MS_DEFAULT = 7 * 24 * 3600 * 1000
LEASE_MS_DEFAULT = 30_000
KEY_CHARS_MAX = 255
NAMESPACE_DEFAULT = "default"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS samsa_dedup (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        state TEXT NOT NULL,
        owner TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        lease_until_ms BIGINT NOT NULL,
        outcome TEXT,
        created_ms BIGINT NOT NULL,
        done_ms BIGINT,
        PRIMARY KEY (namespace, key))""",
    "CREATE INDEX IF NOT EXISTS samsa_dedup_done ON samsa_dedup (namespace, state, done_ms)",
)

CLAIMED = "claimed"
DONE = "done"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class ClaimStatus(Enum):
    CLAIMED = "claimed"  # the caller must run the effect, then record or release
    DONE = "done"  # already done: skip the effect; `outcome` holds what it produced
    BUSY = "busy"  # another owner holds a live claim: try again later


@dataclass(frozen=True, slots=True)
class Claim:
    key: str
    status: ClaimStatus
    attempt: int = 0  # 1 on a first claim, more on a takeover
    outcome: Any = None  # the recorded outcome, when DONE
    owner: str = ""  # who holds it, when BUSY

    @property
    def takeover(self) -> bool:
        """True when an earlier attempt may have run the effect already."""
        return self.status is ClaimStatus.CLAIMED and self.attempt > 1


class ClaimLost(Exception):
    """Raised by `DedupStore.record` when the caller no longer holds the claim (its lease ran
    out and another owner took the key over). The caller must not commit its offset: the new
    owner will finish the key."""


def _check_key(key: str) -> None:
    if not key or len(key) > KEY_CHARS_MAX:
        raise ValueError(f"an idempotency key must have 1 to {KEY_CHARS_MAX} characters: {key!r}")


class DedupStore:
    """Claims and outcomes in a `Database` table (`samsa_dedup`). Thread-safe; several
    processes may share one database."""

    def __init__(
        self,
        database: Database,
        *,
        namespace: str = NAMESPACE_DEFAULT,
        retention_ms: int = RETENTION_MS_DEFAULT,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        if retention_ms <= 0:
            raise ValueError(f"retention_ms must be positive, got {retention_ms}")
        self.database = database
        self.namespace = namespace
        self.retention_ms = retention_ms
        self._clock_ms = clock_ms
        with database.transaction() as tx:
            for statement in SCHEMA:
                tx.execute(statement)

    def claim(self, key: str, owner: str, lease_ms: int = LEASE_MS_DEFAULT) -> Claim:
        _check_key(key)
        now = self._clock_ms()
        with self.database.transaction() as tx:
            row = tx.fetchone(
                """INSERT INTO samsa_dedup
                       (namespace, key, state, owner, attempt, lease_until_ms, created_ms)
                   VALUES (?, ?, 'claimed', ?, 1, ?, ?)
                   ON CONFLICT (namespace, key) DO UPDATE
                   SET owner = excluded.owner, attempt = samsa_dedup.attempt + 1,
                       lease_until_ms = excluded.lease_until_ms
                   WHERE samsa_dedup.state = 'claimed'
                     AND (samsa_dedup.owner = excluded.owner OR samsa_dedup.lease_until_ms <= ?)
                   RETURNING attempt""",
                (self.namespace, key, owner, now + lease_ms, now, now),
            )
            if row is not None:
                return Claim(key, ClaimStatus.CLAIMED, attempt=int(row[0]))
            current = tx.fetchone(
                "SELECT state, owner, attempt, outcome FROM samsa_dedup"
                " WHERE namespace = ? AND key = ?",
                (self.namespace, key),
            )
        if current is None:  # pruned between the two statements: ask again
            return self.claim(key, owner, lease_ms)
        state, holder, attempt, outcome = current
        if state == DONE:
            return Claim(key, ClaimStatus.DONE, int(attempt), json.loads(outcome), str(holder))
        return Claim(key, ClaimStatus.BUSY, int(attempt), owner=str(holder))

    def record(
        self,
        key: str,
        owner: str,
        attempt: int,
        outcome: Any,
        also: Callable[[Tx], None] | None = None,
    ) -> None:
        """Mark the key done with `outcome` (JSON-serialisable), and run `also` (the caller's own
        writes, e.g. a ledger entry) in the same transaction. Raises ClaimLost if the caller's
        claim was taken over; then nothing is written."""
        now = self._clock_ms()
        with self.database.transaction() as tx:
            changed = tx.execute(
                """UPDATE samsa_dedup SET state = 'done', outcome = ?, done_ms = ?
                   WHERE namespace = ? AND key = ? AND state = 'claimed'
                     AND owner = ? AND attempt = ?""",
                (json.dumps(outcome, sort_keys=True), now, self.namespace, key, owner, attempt),
            )
            if changed != 1:
                raise ClaimLost(
                    f"{owner!r} no longer holds the claim on {key!r} (attempt {attempt})"
                )
            if also is not None:
                also(tx)

    def release(self, key: str, owner: str, attempt: int) -> bool:
        """Give a claim up (the effect failed in a way that is safe to retry): anyone may claim
        the key at once. Returns False if the claim was no longer the caller's."""
        with self.database.transaction() as tx:
            changed = tx.execute(
                """UPDATE samsa_dedup SET lease_until_ms = 0
                   WHERE namespace = ? AND key = ? AND state = 'claimed'
                     AND owner = ? AND attempt = ?""",
                (self.namespace, key, owner, attempt),
            )
        return changed == 1

    def get(self, key: str) -> Claim | None:
        """The key's state as a `Claim` (DONE with its outcome, or BUSY with its holder), or
        None if it is absent."""
        with self.database.transaction() as tx:
            row = tx.fetchone(
                "SELECT state, owner, attempt, outcome FROM samsa_dedup"
                " WHERE namespace = ? AND key = ?",
                (self.namespace, key),
            )
        if row is None:
            return None
        state, holder, attempt, outcome = row
        if state == DONE:
            return Claim(key, ClaimStatus.DONE, int(attempt), json.loads(outcome), str(holder))
        return Claim(key, ClaimStatus.BUSY, int(attempt), owner=str(holder))

    def prune(self) -> int:
        """Delete outcomes recorded more than `retention_ms` ago; return how many. A key whose
        record is pruned is treated as new if its message is ever seen again, so retention must
        outlast the longest redelivery (consumer lag plus the time to recover from a crash)."""
        cutoff = self._clock_ms() - self.retention_ms
        with self.database.transaction() as tx:
            return tx.execute(
                "DELETE FROM samsa_dedup WHERE namespace = ? AND state = 'done' AND done_ms < ?",
                (self.namespace, cutoff),
            )

    def count(self) -> int:
        with self.database.transaction() as tx:
            row = tx.fetchone(
                "SELECT COUNT(*) FROM samsa_dedup WHERE namespace = ?", (self.namespace,)
            )
        return 0 if row is None else int(row[0])
