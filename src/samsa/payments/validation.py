"""Validation: exactly-once read-process-write from `orders` to `payments` (valid orders) and
`payment-results` (rejected ones), with a transactional producer and the consumer's offsets
sent to the transaction (`send_offsets_to_transaction`).

A failed transaction is aborted and the consumer rewound to its committed offsets, so the batch
is processed again; a fatal producer error (fenced, or a broken state after a broker restart)
replaces the producer: `init_transactions` with the same `transactional.id` aborts whatever the
old one left open.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import confluent_kafka

from samsa.payments.model import ORDERS, PAYMENTS, RESULTS, Order, rejection, result

log = logging.getLogger("samsa.payments")

BATCH_MESSAGES_MAX = 50
TXN_TIMEOUT_S = 30.0
COMMIT_ATTEMPTS_MAX = 20


class Validator:
    def __init__(
        self,
        bootstrap: str,
        partitions: int,
        *,
        group: str = "validation",
        transactional_id: str = "validation-0",
        client_config: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.transactional_id = transactional_id
        self.client_config = dict(client_config or {})
        self.consumer = confluent_kafka.Consumer(
            {
                **self.client_config,
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
            }
        )
        self.partitions = [confluent_kafka.TopicPartition(ORDERS, p) for p in range(partitions)]
        self.producer = self._new_producer()
        self.validated = 0
        self.rejected = 0
        self.aborts = 0
        self.producer_restarts = 0

    def _new_producer(self) -> confluent_kafka.Producer:
        producer = confluent_kafka.Producer(
            {
                **self.client_config,
                "bootstrap.servers": self.bootstrap,
                "transactional.id": self.transactional_id,
                "linger.ms": 5,
            }
        )
        producer.init_transactions(TXN_TIMEOUT_S)
        return producer

    def run(self, stop: threading.Event) -> None:
        self._rewind()
        while not stop.is_set():
            messages = [
                m for m in self.consumer.consume(BATCH_MESSAGES_MAX, 0.2) if m.error() is None
            ]
            if messages:
                self._process(messages)
        self.consumer.close()

    def _rewind(self) -> None:
        """Back to the committed offsets (the start of the first uncommitted transaction)."""
        committed = self.consumer.committed(self.partitions, TXN_TIMEOUT_S)
        self.consumer.assign(
            [
                confluent_kafka.TopicPartition(
                    tp.topic,
                    tp.partition,
                    tp.offset if tp.offset >= 0 else confluent_kafka.OFFSET_BEGINNING,
                )
                for tp in committed
            ]
        )

    def _process(self, messages: list[Any]) -> None:
        try:
            self.producer.begin_transaction()
            counts = [0, 0]
            for message in messages:
                order = Order.decode(message.value())
                reason = rejection(order)
                if reason is None:
                    self.producer.produce(PAYMENTS, message.value(), key=message.key())
                    counts[0] += 1
                else:
                    self.producer.produce(RESULTS, result(order, "rejected", reason=reason))
                    counts[1] += 1
            positions = self.consumer.position(self.consumer.assignment())
            self.producer.send_offsets_to_transaction(
                positions, self.consumer.consumer_group_metadata(), TXN_TIMEOUT_S
            )
            self._commit()
        except confluent_kafka.KafkaException as exc:
            error = exc.args[0]
            log.warning("validation transaction failed: %s", error)
            if error.fatal() or not error.txn_requires_abort():
                self.producer_restarts += 1
                self.producer = self._new_producer()
            else:
                self.producer.abort_transaction(TXN_TIMEOUT_S)
            self.aborts += 1
            self._rewind()
            return
        self.validated += counts[0]
        self.rejected += counts[1]

    def _commit(self) -> None:
        for _ in range(COMMIT_ATTEMPTS_MAX):
            try:
                self.producer.commit_transaction(TXN_TIMEOUT_S)
                return
            except confluent_kafka.KafkaException as exc:
                if not exc.args[0].retriable():
                    raise
        raise confluent_kafka.KafkaException(
            confluent_kafka.KafkaError(confluent_kafka.KafkaError._FATAL, "commit kept failing")
        )
