"""samsa.effects: exactly-once past Kafka's boundary, for side effects in other systems.

- `IdempotentConsumer` + `DedupStore`: check-before-process, an idempotency key on the external
  call, record-then-commit (for effects outside any database you own: a payment gateway, email).
- `TransactionalSink`: the effect is a database write, committed in one transaction with the
  consumer's offsets; the consumer seeks to them on every assignment (Kafka Connect's way).

Both work on any Kafka cluster through confluent-kafka, and on SQLite (a file; the default) or
PostgreSQL (psycopg 3): `open_database("postgresql://...")`.
"""

from samsa.effects.consumer import (
    Attempt,
    ConsumerStats,
    Handler,
    IdempotentConsumer,
    RetryLater,
    json_field,
)
from samsa.effects.db import Database, PostgresDatabase, SQLiteDatabase, Tx, open_database
from samsa.effects.sink import TransactionalSink
from samsa.effects.store import Claim, ClaimLost, ClaimStatus, DedupStore

__all__ = [
    "Attempt",
    "Claim",
    "ClaimLost",
    "ClaimStatus",
    "ConsumerStats",
    "Database",
    "DedupStore",
    "Handler",
    "IdempotentConsumer",
    "PostgresDatabase",
    "RetryLater",
    "SQLiteDatabase",
    "TransactionalSink",
    "Tx",
    "json_field",
    "open_database",
]
