"""The verify workload: real confluent-kafka clients on threads, each recording what it did.

- transactional producers write 1-4 unique values per transaction across the input partitions
  and abort some transactions on purpose;
- idempotent producers write unique values outside transactions;
- consumers read both topics at read_committed and read_uncommitted, by assign (from the
  beginning) and by subscribe (in a group, committing automatically);
- copiers consume the input at read_committed in one group and copy each value to the output
  topic in a transaction that also commits their input offsets (send_offsets_to_transaction),
  aborting some on purpose and seeking back, as Kafka's TransactionalMessageCopier does.

A client *crash* (`crash_one`) abandons a transactional producer or copier in the middle of a
transaction, without closing it, and starts a successor with the same transactional.id, whose
init_transactions fences the zombie and aborts its transaction.
"""

from __future__ import annotations

import contextlib
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic

from samsa.verify.checker import COPY_SEPARATOR
from samsa.verify.history import (
    COMMITTED,
    FAILED,
    OK,
    UNCOMMITTED,
    UNKNOWN,
    History,
    Read,
    partition_key,
)

TXN_TIMEOUT_MS = 15_000
CALL_TIMEOUT_S = 20.0
END_TXN_ATTEMPTS_MAX = 3
INIT_ATTEMPTS_MAX = 50
DRAIN_IDLE_S = 3.0
DRAIN_MAX_S = 60.0
FINAL_READ_MAX_S = 60.0
POLL_BATCH_MAX = 200
SEND_OFFSETS_TIMEOUT_S = 10.0
STUCK_GRACE_S = 3.0


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    bootstrap: str
    seed: int
    txn_producers: int = 3
    idempotent_producers: int = 2
    copiers: int = 2
    input_partitions: int = 4
    output_partitions: int = 2
    txn_values_max: int = 4
    abort_probability: float = 0.25
    pause_s: float = 0.02  # between a producer's transactions or sends
    consumers: tuple[tuple[str, str], ...] = (
        (COMMITTED, "assign"),
        (UNCOMMITTED, "assign"),
        (COMMITTED, "subscribe"),
        (UNCOMMITTED, "subscribe"),
    )
    prefix: str = "verify"  # of topic, group and transactional ids, so runs can share a cluster
    # "classic" (JoinGroup/SyncGroup) or "consumer" (KIP-848: the broker assigns partitions)
    group_protocol: str = "classic"


def group_config(protocol: str) -> dict[str, Any]:
    """A group consumer's membership settings: with the consumer protocol (KIP-848) the broker
    owns the session timeout (group.consumer.session.timeout.ms), and librdkafka refuses it."""
    if protocol == "consumer":
        return {"group.protocol": "consumer"}
    return {"session.timeout.ms": 10_000}


def client_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "socket.timeout.ms": 10_000,
        "reconnect.backoff.ms": 20,
        "reconnect.backoff.max.ms": 500,
        "log_level": 0,
        "error_cb": lambda _err: None,
    }
    config.update(extra)
    return config


def kafka_error(exc: BaseException) -> confluent_kafka.KafkaError | None:
    if isinstance(exc, confluent_kafka.KafkaException) and exc.args:
        err = exc.args[0]
        if isinstance(err, confluent_kafka.KafkaError):
            return err
    return None


def bounded_call(call: Callable[[], object], timeout_s: float) -> str | None:
    """Run a blocking client call on a helper thread: "ok", "error" (it raised a
    KafkaException), or None if it has not returned after `timeout_s` (it is left running)."""
    outcome: list[str] = []

    def run() -> None:
        try:
            call()
            outcome.append("ok")
        except confluent_kafka.KafkaException:
            outcome.append("error")

    thread = threading.Thread(target=run, name="verify-bounded-call", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return outcome[0] if outcome else None


def _where(thread: threading.Thread) -> str:
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return "?"
    return " <- ".join(
        f"{entry.name}:{entry.lineno} {entry.line}"
        for entry in traceback.extract_stack(frame)[-3:][::-1]
    )


def _read(message: Any) -> Read:
    value = message.value()
    return (
        partition_key(str(message.topic()), int(message.partition())),
        int(message.offset()),
        value.decode() if value else "",
    )


class Client(threading.Thread):
    def __init__(self, name: str, workload: Workload) -> None:
        super().__init__(name=f"verify-{name}", daemon=True)
        self.base = name
        self.workload = workload
        self.history = workload.history
        self.rng = random.Random(f"{workload.config.seed}/{name}")
        self.stopping = threading.Event()
        self.crash_requested = threading.Event()
        self.error: BaseException | None = None
        self.generation = 0

    @property
    def process(self) -> str:
        return f"{self.base}.{self.generation}"

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:  # reported by Workload.stop
            self.error = exc

    def work(self) -> None:
        raise NotImplementedError

    def _rebalanced(self, kind: str) -> Callable[[Any, list[Any]], None]:
        """A consumer's on_assign/on_revoke callback that records the rebalance."""

        def callback(_consumer: Any, partitions: list[Any]) -> None:
            self.history.record(
                kind,
                self.process,
                OK,
                self.history.now(),
                offsets={partition_key(tp.topic, tp.partition): -1 for tp in partitions},
            )

        return callback


class _Sender:
    """One producer instance: its sends, numbered in the order they were made, and recorded
    when their delivery report arrives (or as unknown if it never does)."""

    def __init__(self, history: History, process: str, config: dict[str, Any]) -> None:
        self.history = history
        self.process = process
        self.producer = confluent_kafka.Producer(config)
        self.seq = 0
        self.pending: dict[int, tuple[str, str, float, str | None]] = {}
        self.lock = threading.Lock()

    def send(self, topic: str, partition: int, value: str, txn: str | None) -> None:
        seq = self.seq
        self.seq += 1
        key = partition_key(topic, partition)
        with self.lock:
            self.pending[seq] = (value, key, self.history.now(), txn)

        def report(err: Any, msg: Any) -> None:
            with self.lock:
                entry = self.pending.pop(seq, None)
            if entry is None:
                return
            value, key, start, txn = entry
            ok = err is None
            self.history.record(
                "send",
                self.process,
                OK if ok else UNKNOWN,
                start,
                value=value,
                partition=key,
                offset=msg.offset() if ok else None,
                txn=txn,
                seq=seq,
                detail=None if ok else str(err),
            )

        while True:
            try:
                self.producer.produce(topic, value.encode(), None, partition, on_delivery=report)
                return
            except BufferError:
                self.producer.poll(0.05)

    def abandon(self, why: str) -> None:
        """Sends without a delivery report are indeterminate."""
        with self.lock:
            pending, self.pending = self.pending, {}
        for seq, (value, key, start, txn) in sorted(pending.items()):
            self.history.record(
                "send",
                self.process,
                UNKNOWN,
                start,
                value=value,
                partition=key,
                txn=txn,
                seq=seq,
                detail=why,
            )


class TransactionalClient(Client):
    """Shared by the transactional producer and the copier: a producer with a fixed
    transactional.id, ended transactions recorded, recreated on fatal errors and crashes."""

    transactional_id = ""
    sender: _Sender | None = None
    txn_number = 0

    def producer_config(self) -> dict[str, Any]:
        return client_config(
            self.workload.config.bootstrap,
            **{
                "transactional.id": self.transactional_id,
                "transaction.timeout.ms": TXN_TIMEOUT_MS,
                "message.timeout.ms": TXN_TIMEOUT_MS,
                "linger.ms": 5,
            },
        )

    def open_producer(self, crashed_txn: str | None = None) -> bool:
        """A new producer instance; after its init_transactions a crashed predecessor's
        transaction is known to be aborted. False if stopping before it could init."""
        for _ in range(INIT_ATTEMPTS_MAX):
            if self.stopping.is_set() and crashed_txn is None:
                return False
            self.generation += 1
            self.sender = _Sender(self.history, self.process, self.producer_config())
            start = self.history.now()
            try:
                self.sender.producer.init_transactions(CALL_TIMEOUT_S)
            except confluent_kafka.KafkaException as exc:
                err = kafka_error(exc)
                self.history.record("init", self.process, FAILED, start, detail=str(err))
                self.workload.zombies.append(self.sender.producer)
                time.sleep(0.2)
                continue
            self.history.record("init", self.process, OK, start)
            if crashed_txn is not None:
                self.history.record("txn", self.process, OK, start, txn=crashed_txn, action="crash")
            return True
        raise RuntimeError(f"{self.base}: init_transactions failed {INIT_ATTEMPTS_MAX} times")

    def new_txn(self) -> str:
        self.txn_number += 1
        return f"{self.process}/{self.txn_number}"

    def crash(self, txn: str | None) -> None:
        """Abandon the producer mid-transaction, as kill -9 of a client would, and start its
        successor."""
        self.crash_requested.clear()
        sender = self.sender
        if sender is not None:
            sender.abandon("client crashed")
            self.workload.zombies.append(sender.producer)
        self.open_producer(crashed_txn=txn)

    def end_txn(self, txn: str, commit: bool) -> str:
        """Commit or abort; returns the transaction's fate as far as this client knows:
        committed, aborted or unknown (the producer has then been replaced)."""
        sender = self.sender
        if sender is None:
            raise RuntimeError(f"{self.base}: no producer")
        action = "commit" if commit else "abort"
        start = self.history.now()
        last: confluent_kafka.KafkaError | None = None
        for _ in range(END_TXN_ATTEMPTS_MAX):
            try:
                if commit:
                    sender.producer.commit_transaction(CALL_TIMEOUT_S)
                else:
                    sender.producer.abort_transaction(CALL_TIMEOUT_S)
            except confluent_kafka.KafkaException as exc:
                last = kafka_error(exc)
                if last is not None and last.retriable():
                    continue  # the same call resumes where it stopped
                if commit and last is not None and last.txn_requires_abort():
                    self.history.record(
                        "txn", self.process, FAILED, start, txn=txn, action=action, detail=str(last)
                    )
                    return self.end_txn(txn, commit=False)
                break
            else:
                self.history.record("txn", self.process, OK, start, txn=txn, action=action)
                return "committed" if commit else "aborted"
        # Indeterminate: never abort after a failed commit; a successor resolves it.
        self.history.record(
            "txn", self.process, UNKNOWN, start, txn=txn, action=action, detail=str(last)
        )
        sender.abandon(f"{action} indeterminate")
        self.workload.zombies.append(sender.producer)
        self.open_producer()
        return "unknown"

    def begin(self) -> bool:
        sender = self.sender
        if sender is None:
            return False
        try:
            sender.producer.begin_transaction()
        except confluent_kafka.KafkaException:
            self.workload.zombies.append(sender.producer)
            self.open_producer()
            return False
        return True


class TransactionalProducer(TransactionalClient):
    def __init__(self, index: int, workload: Workload) -> None:
        super().__init__(f"txn{index}", workload)
        self.transactional_id = f"{workload.config.prefix}-txn-{index}"

    def work(self) -> None:
        config = self.workload.config
        if not self.open_producer():
            return
        while not self.stopping.is_set():
            if not self.begin():
                continue
            txn = self.new_txn()
            sender = self.sender
            assert sender is not None
            for k in range(self.rng.randint(1, config.txn_values_max)):
                partition = self.rng.randrange(config.input_partitions)
                sender.send(self.workload.input_topic, partition, f"{txn}.{k}", txn)
                sender.producer.poll(0)
            if self.crash_requested.is_set():
                self.crash(txn)
                continue
            commit = self.rng.random() >= config.abort_probability
            if not commit and self.rng.random() < 0.5:
                # librdkafka purges what it has not sent when it aborts; half the aborts are of
                # records the broker already holds, which read_committed readers must skip.
                sender.producer.flush(CALL_TIMEOUT_S)
            self.end_txn(txn, commit=commit)
            time.sleep(self.rng.uniform(0, 2 * config.pause_s))
        if self.sender is not None:
            self.sender.producer.flush(CALL_TIMEOUT_S)
            self.sender.abandon("never reported")


class IdempotentProducer(Client):
    def __init__(self, index: int, workload: Workload) -> None:
        super().__init__(f"idem{index}", workload)

    def work(self) -> None:
        config = self.workload.config
        settings = client_config(
            config.bootstrap,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 30_000,
            },
        )
        self.generation = 1
        sender = _Sender(self.history, self.process, settings)
        n = 0
        while not self.stopping.is_set():
            n += 1
            partition = self.rng.randrange(config.input_partitions)
            sender.send(self.workload.input_topic, partition, f"{self.process}/{n}", None)
            sender.producer.poll(0)
            time.sleep(self.rng.uniform(0, config.pause_s))
        sender.producer.flush(60)
        sender.abandon("never reported")


class Consumer(Client):
    def __init__(self, isolation: str, mode: str, workload: Workload) -> None:
        short = "rc" if isolation == COMMITTED else "ru"
        super().__init__(f"{short}-{mode}", workload)
        self.generation = 1
        self.isolation = isolation
        self.mode = mode

    def work(self) -> None:
        config = self.workload.config
        isolation = "read_committed" if self.isolation == COMMITTED else "read_uncommitted"
        group = f"{config.prefix}-{self.base}"
        consumer = confluent_kafka.Consumer(
            client_config(
                config.bootstrap,
                **{
                    "group.id": group,
                    "isolation.level": isolation,
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": self.mode == "subscribe",
                    "auto.commit.interval.ms": 500,
                    **group_config(config.group_protocol),
                },
            )
        )
        topics = self.workload.topics()
        if self.mode == "assign":
            consumer.assign(
                [
                    confluent_kafka.TopicPartition(t, p, confluent_kafka.OFFSET_BEGINNING)
                    for t, n in topics
                    for p in range(n)
                ]
            )
            self.history.record(
                "assign",
                self.process,
                OK,
                self.history.now(),
                offsets={partition_key(t, p): 0 for t, n in topics for p in range(n)},
            )
        else:
            consumer.subscribe(
                [t for t, _ in topics],
                on_assign=self._rebalanced("assign"),
                on_revoke=self._rebalanced("revoke"),
            )
        try:
            self.workload.consume_until_drained(self, consumer, self.isolation, self.stopping)
        finally:
            consumer.close()


class Copier(TransactionalClient):
    def __init__(self, index: int, workload: Workload) -> None:
        super().__init__(f"copy{index}", workload)
        self.transactional_id = f"{workload.config.prefix}-copy-{index}"
        self.consumer: Any = None
        self.copied = 0

    def open_consumer(self) -> None:
        config = self.workload.config
        self.consumer = confluent_kafka.Consumer(
            client_config(
                config.bootstrap,
                **{
                    "group.id": f"{config.prefix}-copiers",
                    "isolation.level": "read_committed",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                    **group_config(config.group_protocol),
                },
            )
        )
        self.consumer.subscribe(
            [self.workload.input_topic],
            on_assign=self._rebalanced("assign"),
            on_revoke=self._rebalanced("revoke"),
        )

    def restart(self, crashed_txn: str | None) -> None:
        """Close the consumer (its partitions go back to the group, to resume from the
        committed offsets) and replace the producer."""
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        if crashed_txn is not None:
            self.crash(crashed_txn)
        self.open_consumer()

    def work(self) -> None:
        if not self.open_producer():
            return
        self.open_consumer()
        idle_since = time.monotonic()
        started_draining: float | None = None
        while True:
            if self.stopping.is_set():
                now = time.monotonic()
                started_draining = started_draining or now
                if now - idle_since > DRAIN_IDLE_S or now - started_draining > DRAIN_MAX_S:
                    break
            if self.consume_and_copy():
                idle_since = time.monotonic()
        if self.consumer is not None:
            self.consumer.close()
        if self.sender is not None:
            self.sender.producer.flush(CALL_TIMEOUT_S)
            self.sender.abandon("never reported")

    def consume_and_copy(self) -> bool:
        """One batch: True if it read anything."""
        config = self.workload.config
        start = self.history.now()
        messages = self.consumer.consume(POLL_BATCH_MAX // 4, 0.2)
        reads = self.workload.record_poll(self.process, COMMITTED, start, messages)
        if not reads:
            return False
        if not self.begin():
            self._rewind(reads)
            return True
        txn = self.new_txn()
        sender = self.sender
        assert sender is not None
        next_offsets: dict[int, int] = {}
        for k, (key, offset, value) in enumerate(reads):
            partition = self.rng.randrange(config.output_partitions)
            out = f"{value}{COPY_SEPARATOR}{txn}.{k}"
            sender.send(self.workload.output_topic, partition, out, txn)
            input_partition = int(key.rpartition(":")[2])
            next_offsets[input_partition] = max(next_offsets.get(input_partition, 0), offset + 1)
        if self.crash_requested.is_set():
            self.restart(crashed_txn=txn)
            return True
        offsets = [
            confluent_kafka.TopicPartition(self.workload.input_topic, p, o)
            for p, o in sorted(next_offsets.items())
        ]
        start = self.history.now()
        returned = bounded_call(
            lambda: sender.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), SEND_OFFSETS_TIMEOUT_S
            ),
            SEND_OFFSETS_TIMEOUT_S + STUCK_GRACE_S,
        )
        if returned is None:
            # librdkafka can block here past its timeout (confluentinc/librdkafka#5456,
            # #5511) when its group coordinator connection went down: treat it as a crash.
            self.history.record(
                "stuck",
                self.process,
                UNKNOWN,
                start,
                txn=txn,
                detail="send_offsets_to_transaction did not return",
            )
            self.restart(crashed_txn=txn)
            return True
        commit = returned == "ok" and self.rng.random() >= config.abort_probability
        fate = self.end_txn(txn, commit)
        if fate == "aborted":
            self._rewind(reads)
        elif fate == "unknown":
            self.restart(crashed_txn=None)
        self.copied += len(reads)
        return True

    def _rewind(self, reads: list[Read]) -> None:
        """After an abort the consumer must seek back itself (KAFKA-17582)."""
        first: dict[str, int] = {}
        for key, offset, _ in reads:
            first[key] = min(first.get(key, offset), offset)
        try:
            for key, offset in first.items():
                topic, _, partition = key.rpartition(":")
                self.consumer.seek(confluent_kafka.TopicPartition(topic, int(partition), offset))
        except confluent_kafka.KafkaException:
            self.restart(crashed_txn=None)  # e.g. no longer assigned: start over from the group
            return
        self.history.record("seek", self.process, OK, self.history.now(), offsets=first)


class Workload:
    def __init__(self, config: WorkloadConfig, history: History) -> None:
        self.config = config
        self.history = history
        self.input_topic = f"{config.prefix}-in"
        self.output_topic = f"{config.prefix}-out"
        self.rng = random.Random(config.seed)
        self.zombies: list[Any] = []
        self.writers: list[Client] = [
            *(TransactionalProducer(i, self) for i in range(config.txn_producers)),
            *(IdempotentProducer(i, self) for i in range(config.idempotent_producers)),
        ]
        self.copiers = [Copier(i, self) for i in range(config.copiers)]
        self.consumers = [Consumer(iso, mode, self) for iso, mode in config.consumers]
        self.lock = threading.Lock()

    def topics(self) -> list[tuple[str, int]]:
        return [
            (self.input_topic, self.config.input_partitions),
            (self.output_topic, self.config.output_partitions),
        ]

    def existing_topics(self) -> list[str]:
        """Which of this run's topics the cluster has already."""
        admin = AdminClient(client_config(self.config.bootstrap))
        present = admin.list_topics(timeout=CALL_TIMEOUT_S).topics
        return [topic for topic, _ in self.topics() if topic in present]

    def create_topics(self) -> None:
        admin = AdminClient(client_config(self.config.bootstrap))
        new = [NewTopic(t, n, 1) for t, n in self.topics()]
        for topic, future in admin.create_topics(new, operation_timeout=10).items():
            try:
                future.result(timeout=30)
            except confluent_kafka.KafkaException as exc:
                err = kafka_error(exc)
                if err is None or err.code() != confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                    raise RuntimeError(f"cannot create topic {topic}: {exc}") from exc

    def start(self) -> None:
        self.create_topics()
        for client in [*self.consumers, *self.writers, *self.copiers]:
            client.start()

    def crash_one(self, rng: random.Random) -> str | None:
        """Ask a random transactional client to crash mid-transaction; its name."""
        candidates = [
            c
            for c in [*self.writers, *self.copiers]
            if isinstance(c, TransactionalClient)
            and c.is_alive()
            and not c.crash_requested.is_set()
        ]
        if not candidates:
            return None
        client = rng.choice(candidates)
        client.crash_requested.set()
        return client.process

    def record_poll(
        self, process: str, isolation: str, start: float, messages: list[Any]
    ) -> list[Read]:
        reads: list[Read] = []
        for message in messages:
            if message.error() is None:
                reads.append(_read(message))
        if reads:
            self.history.record("poll", process, OK, start, isolation=isolation, reads=reads)
        return reads

    def consume_until_drained(
        self, client: Client, consumer: Any, isolation: str, stopping: threading.Event
    ) -> None:
        idle_since = time.monotonic()
        started_draining: float | None = None
        while True:
            if stopping.is_set():
                now = time.monotonic()
                started_draining = started_draining or now
                if now - idle_since > DRAIN_IDLE_S or now - started_draining > DRAIN_MAX_S:
                    return
            start = self.history.now()
            messages = consumer.consume(POLL_BATCH_MAX, 0.2)
            if self.record_poll(client.process, isolation, start, messages):
                idle_since = time.monotonic()

    def stop(self) -> list[str]:
        """Stop writers, then let copiers and consumers drain; the errors of clients that
        died, if any."""
        errors: list[str] = []
        # One deadline for all: a client stuck inside a librdkafka call cannot be interrupted,
        # and is reported instead of waited for.
        deadline = time.monotonic() + DRAIN_MAX_S + 2 * CALL_TIMEOUT_S
        for group in (self.writers, self.copiers, self.consumers):
            for client in group:
                client.stopping.set()
            for client in group:
                start = self.history.now()
                client.join(max(deadline - time.monotonic(), 1.0))
                self.history.record("stop", client.process, OK, start)
                if client.is_alive():
                    errors.append(f"{client.name} did not stop: stuck in {_where(client)}")
                elif client.error is not None:
                    errors.append(f"{client.name}: {client.error!r}")
        zombies, self.zombies = self.zombies, []

        def close_zombies() -> None:
            for producer in zombies:
                with contextlib.suppress(Exception):
                    producer.purge()
                    producer.close()

        bounded_call(close_zombies, 2.0)  # a zombie stuck in librdkafka stays stuck
        return errors

    def final_reads(self) -> None:
        """The copiers' committed offsets, then a fresh read of everything at each isolation
        level: the ground truth the checker compares every acknowledgment and poll against."""
        self._group_offsets()
        threads = [
            threading.Thread(target=self._final_read, args=(isolation,), daemon=True)
            for isolation in (COMMITTED, UNCOMMITTED)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(FINAL_READ_MAX_S + 30)

    def _group_offsets(self) -> None:
        consumer = confluent_kafka.Consumer(
            client_config(self.config.bootstrap, **{"group.id": f"{self.config.prefix}-copiers"})
        )
        start = self.history.now()
        try:
            committed = consumer.committed(
                [
                    confluent_kafka.TopicPartition(self.input_topic, p)
                    for p in range(self.config.input_partitions)
                ],
                timeout=CALL_TIMEOUT_S,
            )
            offsets = {
                partition_key(tp.topic, tp.partition): tp.offset
                for tp in committed
                if tp.error is None and tp.offset >= 0
            }
            self.history.record("group-offsets", "final", OK, start, offsets=offsets)
        except confluent_kafka.KafkaException as exc:
            self.history.record("group-offsets", "final", FAILED, start, detail=str(exc))
        finally:
            consumer.close()

    def _final_read(self, isolation: str) -> None:
        consumer = confluent_kafka.Consumer(
            client_config(
                self.config.bootstrap,
                **{
                    "group.id": f"{self.config.prefix}-final-{isolation}",
                    "isolation.level": f"read_{isolation}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                },
            )
        )
        start = self.history.now()
        reads: list[Read] = []
        try:
            partitions = [
                confluent_kafka.TopicPartition(t, p) for t, n in self.topics() for p in range(n)
            ]
            ends = {}
            for tp in partitions:
                _low, high = consumer.get_watermark_offsets(
                    tp, timeout=CALL_TIMEOUT_S, cached=False
                )
                ends[partition_key(tp.topic, tp.partition)] = high
            consumer.assign(
                [
                    confluent_kafka.TopicPartition(
                        tp.topic, tp.partition, confluent_kafka.OFFSET_BEGINNING
                    )
                    for tp in partitions
                ]
            )
            done: set[str] = set()
            deadline = time.monotonic() + FINAL_READ_MAX_S
            while len(done) < len(ends) and time.monotonic() < deadline:
                for message in consumer.consume(1000, 0.5):
                    key, offset, value = _read(message)
                    err = message.error()
                    if err is not None:
                        if err.code() == confluent_kafka.KafkaError._PARTITION_EOF and (
                            offset >= ends[key]
                        ):
                            done.add(key)
                        continue
                    reads.append((key, offset, value))
            missing = sorted(set(ends) - done)
            self.history.record(
                "final-read",
                "final",
                OK if not missing else UNKNOWN,
                start,
                isolation=isolation,
                reads=reads,
                offsets=ends,
                detail=f"did not reach the end of {missing}" if missing else None,
            )
        finally:
            consumer.close()
