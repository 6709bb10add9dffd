"""An application's settings, and the client configurations they give."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from samsa.streams import guarantee as guarantees
from samsa.streams.guarantee import Guarantee
from samsa.streams.handlers import ErrorKind, OnError

GROUP_PROTOCOLS = ("classic", "consumer")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    application_id: str
    bootstrap_servers: str = "127.0.0.1:9092"
    processing_guarantee: Guarantee = Guarantee.EXACTLY_ONCE
    commit_interval_ms: int = 100
    # Stable per instance: the transactional.id is `<application_id>-<instance_id>`, so a
    # restarted instance's init_transactions aborts what its crashed predecessor left open
    # (instead of that transaction holding read_committed readers for transaction.timeout.ms).
    instance_id: str | None = None
    # group.instance.id = transactional.id (KIP-345): a restarted instance takes its partitions
    # back without a rebalance. A stopped one keeps them until session.timeout.ms passes.
    static_membership: bool = False
    auto_offset_reset: str = "earliest"
    # "classic" or "consumer" (KIP-848: the broker assigns partitions, its range assignor keeping
    # partition p of every input topic on one instance, as the classic range assignor does)
    group_protocol: str = "classic"
    create_topics: bool = True
    consumer_config: dict[str, Any] = field(default_factory=dict)
    producer_config: dict[str, Any] = field(default_factory=dict)
    # Limits: records per consume() call, time for a retriable operation, time to restore.
    max_poll_records: int = 500
    retry_deadline_ms: int = 30_000
    restore_timeout_ms: int = 120_000
    # A record that cannot be deserialised, processed or produced: "fail", "skip" or
    # "dead_letter" (samsa/streams/handlers.py). `on_error` is the default of the three.
    on_error: str = "fail"
    on_deserialization_error: str | None = None
    on_processing_error: str | None = None
    on_production_error: str | None = None
    # Kafka's state.dir: None keeps stores in memory (restored from the whole changelog on
    # each assignment); a directory keeps them on disk with checkpoints (streams/local.py).
    state_dir: str | None = None
    # Under at_least_once, a checkpoint after a commit once this many changelog records have
    # been written since the last one (Kafka Streams' 10,000); exactly_once writes one only
    # at a clean close or hand-over.
    checkpoint_interval_records: int = 10_000
    # Kafka's errors.dead.letter.queue.topic.name; None: `<application_id>-dlq`.
    dead_letter_topic: str | None = None

    def __post_init__(self) -> None:
        for kind in ErrorKind:
            self.on(kind)  # refuses an unknown choice now, not at the first bad record
        if self.group_protocol not in GROUP_PROTOCOLS:
            raise ValueError(
                f"group_protocol must be one of {GROUP_PROTOCOLS}, got {self.group_protocol!r}"
            )
        if self.commit_interval_ms <= 0:
            raise ValueError(f"commit_interval_ms must be positive, got {self.commit_interval_ms}")
        if self.processing_guarantee is Guarantee.EXACTLY_ONCE:
            timeout_ms = int(
                self.producer_config.get(
                    "transaction.timeout.ms", guarantees.TRANSACTION_TIMEOUT_MS
                )
            )
            if self.commit_interval_ms >= timeout_ms:
                # The coordinator aborts a transaction open that long: nothing would commit.
                raise ValueError(
                    f"commit_interval_ms ({self.commit_interval_ms}) must be below the "
                    f"producer's transaction.timeout.ms ({timeout_ms})"
                )

    def on(self, kind: ErrorKind) -> OnError:
        """What a `kind` error does to the record."""
        chosen = getattr(self, f"on_{kind.value}_error")
        return OnError.parse(self.on_error if chosen is None else chosen)

    def dead_letters(self) -> str:
        return self.dead_letter_topic or f"{self.application_id}-dlq"

    def resolved_instance_id(self) -> str:
        return self.instance_id if self.instance_id is not None else uuid.uuid4().hex[:12]

    def consumer(self, instance_id: str) -> dict[str, Any]:
        config = guarantees.consumer_config(
            self.processing_guarantee,
            self.bootstrap_servers,
            self.application_id,
            self.auto_offset_reset,
        )
        if self.static_membership:
            config["group.instance.id"] = f"{self.application_id}-{instance_id}"
        if self.group_protocol == "consumer":
            # librdkafka refuses client-side assignment settings with the consumer protocol.
            del config["partition.assignment.strategy"]
            config["group.protocol"] = "consumer"
            config["group.remote.assignor"] = "range"
        config.update(self.consumer_config)
        return config

    def producer(self, instance_id: str) -> dict[str, Any]:
        config = guarantees.producer_config(
            self.processing_guarantee,
            self.bootstrap_servers,
            f"{self.application_id}-{instance_id}",
        )
        config.update(self.producer_config)
        return config

    def restore_consumer(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": f"{self.application_id}-restore",  # never joined, never committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            # Restoring waits on the changelog end; librdkafka's 500 ms fetch wait on a caught-up
            # partition would add to every assignment.
            "fetch.wait.max.ms": 10,
        }
        for name in ("security.protocol", "sasl.mechanisms", "sasl.username", "sasl.password"):
            if name in self.consumer_config:
                config[name] = self.consumer_config[name]
        return config
