"""A transactional copier, after Kafka's TransactionalMessageCopier (kafka-eos.md §5.1), run as
a subprocess by the copier tests so that it can be killed with SIGKILL at any moment.

    python tests/groups/copier.py BOOTSTRAP GROUP INPUT OUTPUT TRANSACTIONAL_ID SEED
        [--group-protocol classic|consumer]

With `--group-protocol consumer` the consumer uses the KIP-848 protocol: the broker assigns the
partitions, and the offsets a transaction commits carry the member epoch as its generation.

It consumes INPUT in consumer group GROUP (subscribe, read_committed, no auto-commit), and in
one transaction per batch copies partition i of INPUT to partition i of OUTPUT and commits the
consumer's positions with `send_offsets_to_transaction(..., consumer_group_metadata())`
(KIP-447: the group coordinator checks the generation and member). About one transaction in
three is aborted on purpose, after which the consumer is rewound to the committed offsets.

Errors: fenced (another instance of the transactional id, or a fatal error) -> exit 3, the test
starts a new instance; abortable -> abort and rewind; retriable -> retry the same call.
SIGTERM stops it between transactions (exit 0). One line per event on stdout, flushed.
"""

from __future__ import annotations

import faulthandler
import functools
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from samsa.testing.topics import placed, value_of

T = TypeVar("T")
ABORT_EVERY = 3
BATCH_MAX = 200
CALL_TIMEOUT_S = 10.0
EXIT_FENCED = 3
EXIT_REWIND_FAILED = 4

stopping = threading.Event()
# librdkafka debug contexts for the consumer, e.g. SAMSA_COPIER_DEBUG=cgrp,fetch
DEBUG = (
    {"debug": os.environ["SAMSA_COPIER_DEBUG"], "log_level": 7}
    if os.environ.get("SAMSA_COPIER_DEBUG")
    else {}
)


def say(line: str) -> None:
    sys.stdout.write(f"{time.monotonic():.3f} {line}\n")
    sys.stdout.flush()


class Fenced(Exception):
    """The producer cannot go on (fenced, or another fatal error): a new instance must start."""


class Abortable(Exception):
    """The transaction must be aborted and the consumer rewound."""


def call(what: str, action: Callable[[], T]) -> T:
    """Run a transactional call: retry what is retriable, classify the rest."""
    while True:
        try:
            return action()
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.fatal():
                raise Fenced(f"{what}: {error}") from exc
            if error.txn_requires_abort():
                raise Abortable(f"{what}: {error}") from exc
            if error.retriable():
                say(f"retry {what}: {error}")
                time.sleep(0.2)
                continue
            raise Abortable(f"{what}: {error}") from exc


def rewind(consumer: confluent_kafka.Consumer) -> None:
    """Seek every assigned partition back to its committed offset (start when none)."""
    assignment = consumer.assignment()
    if not assignment:
        return
    committed = consumer.committed(assignment, timeout=CALL_TIMEOUT_S)
    for tp in committed:
        if tp.error is not None:
            raise RuntimeError(f"committed offset of {tp}: {tp.error}")
        offset = tp.offset if tp.offset >= 0 else confluent_kafka.OFFSET_BEGINNING
        consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
    say("rewound " + " ".join(f"{tp.partition}:{tp.offset}" for tp in committed))


def copy_loop(
    producer: confluent_kafka.Producer,
    consumer: confluent_kafka.Consumer,
    output: str,
    rng: random.Random,
) -> None:
    while not stopping.is_set():
        messages = [m for m in consumer.consume(BATCH_MAX, 0.3) if m.error() is None]
        if not messages:
            continue
        abort = rng.randrange(ABORT_EVERY) == 0
        try:
            call("begin", producer.begin_transaction)
            for message in messages:
                while True:
                    try:
                        producer.produce(
                            output, value_of(message), message.key(), placed(message)[0]
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
            positions = consumer.position(consumer.assignment())
            metadata = consumer.consumer_group_metadata()
            call(
                "send_offsets",
                functools.partial(
                    producer.send_offsets_to_transaction, positions, metadata, CALL_TIMEOUT_S
                ),
            )
            if abort:
                raise Abortable("on purpose")
            call("commit", lambda: producer.commit_transaction(CALL_TIMEOUT_S))
            say(
                f"committed {len(messages)} "
                + " ".join(f"{tp.partition}:{tp.offset}" for tp in positions)
            )
        except Abortable as reason:
            say(f"aborting ({reason})")
            call("abort", lambda: producer.abort_transaction(CALL_TIMEOUT_S))
            say("aborted")
            rewind(consumer)


def group_settings(protocol: str) -> dict[str, object]:
    """The consumer's group settings: with the consumer protocol the broker owns the session
    and heartbeat timing (group.consumer.*), and librdkafka refuses them."""
    if protocol == "consumer":
        return {"group.protocol": "consumer"}
    return {"session.timeout.ms": 3_000, "heartbeat.interval.ms": 300}


def main() -> None:
    bootstrap, group, source, output, transactional_id, seed = sys.argv[1:7]
    options = sys.argv[7:]
    protocol = options[1] if options[:1] == ["--group-protocol"] else "classic"
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    faulthandler.register(signal.SIGUSR1)  # a stack dump of a copier that seems stuck
    rng = random.Random(int(seed))
    say(f"started {transactional_id} seed {seed} group protocol {protocol}")
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": 10_000,
            "linger.ms": 5,
            # librdkafka 2.10+ "re-bootstraps" when every broker is down (a broker kill -9) and
            # decommissions the old broker handles; a group coordinator cached on such a handle
            # makes send_offsets_to_transaction hang past its timeout (confluentinc/librdkafka
            # issue 5511). One broker here, so re-bootstrapping buys nothing.
            "metadata.recovery.strategy": "none",
            "log_level": 0,
            **DEBUG,
        }
    )
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": transactional_id,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **group_settings(protocol),
            "metadata.recovery.strategy": "none",
            "log_level": 0,
            **DEBUG,
        }
    )
    try:
        call("init", lambda: producer.init_transactions(CALL_TIMEOUT_S))
        say("initialised")
        consumer.subscribe([source])
        copy_loop(producer, consumer, output, rng)
    except Fenced as reason:
        say(f"fenced ({reason})")
        sys.exit(EXIT_FENCED)
    except (Abortable, RuntimeError, KafkaException) as reason:
        say(f"giving up ({reason!r})")
        sys.exit(EXIT_REWIND_FAILED)
    consumer.close()
    say("closed")


if __name__ == "__main__":
    main()
