"""The idempotent consumer: check-before-process, an idempotency key on the external call,
record-then-commit (the article's payment example), on any Kafka cluster through
confluent-kafka.

For each message, in order:

1. `claim` its key in the dedup store. DONE: skip the handler (the effect already happened),
   call `after` with the recorded outcome. BUSY: another consumer is running it; rewind the
   partition to this message and try again later. CLAIMED: go on.
2. run the handler. It must pass the key to the external system (e.g. as `Idempotency-Key`), so
   that a takeover after a crash between the external call and step 3 is answered by the
   external system's replay instead of a second effect.
3. `record` the outcome (plus the caller's own writes, in the same database transaction).
4. `after` (e.g. produce a result), then, once every message of the batch is recorded, commit
   the offsets synchronously. A crash anywhere before the commit only makes Kafka redeliver, and
   step 1 turns the redelivery into a skip.

The consumer must be created with `enable.auto.commit=false`; `enable.auto.offset.store` is
irrelevant because offsets are committed explicitly.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import confluent_kafka

from samsa.effects.db import Tx
from samsa.effects.store import LEASE_MS_DEFAULT, Claim, ClaimLost, ClaimStatus, DedupStore

log = logging.getLogger("samsa.effects")

BATCH_MESSAGES_MAX = 100
POLL_TIMEOUT_S = 0.2
RETRY_BACKOFF_S = 0.05
PRUNE_INTERVAL_S = 60.0


class RetryLater(Exception):
    """Raised by a handler for a failure that is safe to retry with the same key (a timeout, a
    409 from the external system, a 5xx it did not store). The consumer releases the claim,
    rewinds the partition to the message and tries it again after a back-off."""


@dataclass(frozen=True, slots=True)
class Attempt:
    key: str
    number: int  # 1 for a first attempt; more means an earlier attempt may have had the effect

    @property
    def takeover(self) -> bool:
        return self.number > 1


class Handler(Protocol):
    def __call__(self, message: Any, attempt: Attempt) -> Any:
        """Run the effect for `message`; return a JSON-serialisable outcome."""
        ...


def json_field(name: str) -> Callable[[Any], str]:
    """A key extractor: the field `name` of the message's JSON value."""

    def key_of(message: Any) -> str:
        return str(json.loads(message.value())[name])

    return key_of


@dataclass(slots=True)
class ConsumerStats:
    processed: int = 0  # handler ran and its outcome was recorded
    skipped: int = 0  # DONE: redelivered or duplicate, handler not run
    takeovers: int = 0  # claims taken over from a dead or same-named owner
    retries: int = 0  # RetryLater, BUSY, ClaimLost
    commits: int = 0
    pruned: int = 0


class IdempotentConsumer:
    """Runs `handler` at most once per key (for as long as the store retains the key).

    `owner` names this consumer in the store; give a restarted instance the same stable name so
    it takes its own unfinished claims over at once instead of waiting out the lease.
    `record_also(tx, message, outcome)` adds the caller's writes to the outcome's transaction.
    `after(message, outcome, replayed)` runs after the record (or on a DONE skip, replayed=True),
    before the offset commit; `before_commit()` runs just before each commit (e.g. to flush a
    producer `after` used).
    """

    def __init__(
        self,
        consumer: confluent_kafka.Consumer,
        store: DedupStore,
        handler: Handler,
        *,
        owner: str,
        key_of: Callable[[Any], str] | None = None,
        lease_ms: int = LEASE_MS_DEFAULT,
        record_also: Callable[[Tx, Any, Any], None] | None = None,
        after: Callable[[Any, Any, bool], None] | None = None,
        before_commit: Callable[[], None] | None = None,
        batch_messages_max: int = BATCH_MESSAGES_MAX,
        retry_backoff_s: float = RETRY_BACKOFF_S,
        prune_interval_s: float = PRUNE_INTERVAL_S,
    ) -> None:
        self.consumer = consumer
        self.store = store
        self.handler = handler
        self.owner = owner
        self.key_of = key_of if key_of is not None else json_field("idempotency_key")
        self.lease_ms = lease_ms
        self.record_also = record_also
        self.after = after
        self.before_commit = before_commit
        self.batch_messages_max = batch_messages_max
        self.retry_backoff_s = retry_backoff_s
        self.prune_interval_s = prune_interval_s
        self.stats = ConsumerStats()
        self._next_prune = time.monotonic()
        # Offsets recorded in the store but not yet committed to Kafka (a failed commit is
        # retried with the next batch; meanwhile a redelivery is only a DONE skip).
        self._uncommitted: dict[tuple[str, int], int] = {}

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll_once()

    def poll_once(self, timeout_s: float = POLL_TIMEOUT_S) -> int:
        """Consume one batch, handle it, commit what was handled; return how many messages were
        handled or skipped."""
        self._maybe_prune()
        messages: list[Any] = self.consumer.consume(self.batch_messages_max, timeout_s)
        done: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset to commit
        rewind: dict[tuple[str, int], int] = {}
        handled = 0
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != confluent_kafka.KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", error)
                continue
            tp = (message.topic(), message.partition())
            if tp in rewind:
                continue  # an earlier message of this partition must be retried first
            if self._handle(message):
                done[tp] = message.offset() + 1
                handled += 1
            else:
                rewind[tp] = message.offset()
        self._uncommitted.update(done)
        if self._uncommitted:
            self._commit()
        if rewind:
            for (topic, partition), offset in rewind.items():
                self.consumer.seek(confluent_kafka.TopicPartition(topic, partition, offset))
            time.sleep(self.retry_backoff_s)
        return handled

    def _handle(self, message: Any) -> bool:
        """True once the message is recorded (or was already); False to retry it later."""
        key = self.key_of(message)
        claim = self.store.claim(key, self.owner, self.lease_ms)
        if claim.status is ClaimStatus.DONE:
            self.stats.skipped += 1
            if self.after is not None:
                self.after(message, claim.outcome, True)
            return True
        if claim.status is ClaimStatus.BUSY:
            self.stats.retries += 1
            return False
        return self._run(message, claim)

    def _run(self, message: Any, claim: Claim) -> bool:
        if claim.takeover:
            self.stats.takeovers += 1
        try:
            outcome = self.handler(message, Attempt(claim.key, claim.attempt))
        except RetryLater as exc:
            log.info("retrying %s later: %s", claim.key, exc)
            self.store.release(claim.key, self.owner, claim.attempt)
            self.stats.retries += 1
            return False
        except BaseException:
            self.store.release(claim.key, self.owner, claim.attempt)
            raise
        also = None
        if self.record_also is not None:
            record_also = self.record_also

            def also(tx: Tx) -> None:
                record_also(tx, message, outcome)

        try:
            self.store.record(claim.key, self.owner, claim.attempt, outcome, also)
        except ClaimLost as exc:
            log.warning("%s", exc)
            self.stats.retries += 1
            return False
        self.stats.processed += 1
        if self.after is not None:
            self.after(message, outcome, False)
        return True

    def _commit(self) -> None:
        if self.before_commit is not None:
            self.before_commit()
        offsets = [
            confluent_kafka.TopicPartition(topic, partition, offset)
            for (topic, partition), offset in self._uncommitted.items()
        ]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except confluent_kafka.KafkaException as exc:
            log.warning("offset commit failed, retried with the next batch: %s", exc)
            return
        self._uncommitted.clear()
        self.stats.commits += 1

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now >= self._next_prune:
            self.stats.pruned += self.store.prune()
            self._next_prune = now + self.prune_interval_s
