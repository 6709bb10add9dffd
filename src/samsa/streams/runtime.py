"""One running instance of an application: a consumer, a producer, the state of the assigned
partitions, and the loop that moves records through the topology.

Theory of operation (exactly_once). The instance owns a transactional producer
(transactional.id `<application_id>-<instance_id>`) and a read_committed consumer without
auto-commit. The first record after a commit begins a transaction; every output of the
topology is produced inside it; when the commit interval has passed, the pending writes of each
store are produced to its changelog partition (the input partition's number), the next input
offsets are added with `send_offsets_to_transaction` and the consumer group metadata (KIP-447:
the group coordinator fences an instance whose generation is stale), and the transaction is
committed. Only then do the stores make their pending writes current. On revocation the open
transaction is committed before the partitions go; on loss it is aborted. An abortable error
aborts the transaction, rolls the stores back and seeks each input partition back to the first
offset of the transaction, so processing resumes exactly at the committed offsets. A fenced
producer stops the instance without committing anything; a retriable error is retried until
`retry_deadline_ms`.

at_least_once commits the same way without the transaction: changelog and outputs are flushed,
then the offsets are committed. at_most_once commits the offsets of each batch before it is
processed.

An output the broker refuses for good (a delivery report of MSG_SIZE_TOO_LARGE, say: over the
topic's max.message.bytes) has made the transaction abortable; Kafka Streams hands such errors
to its ProductionExceptionHandler, and so does this runtime. It aborts and rewinds, then, as
the records are processed again, asks its book of refusals (refusals.py) about each output:
produce it, produce it alone (the broker refuses whole batches: was it the culprit?), or hand it
to the production handler inside the new transaction. So every other output is written exactly
once and the instance does not rewind forever. With librdkafka, a culprit found by producing it
alone costs one more abort and an epoch bump (the sequence number it used). Outputs are tracked
(a delivery callback each, about 1 us) only while refusals are being resolved. at_least_once
rewinds the same way at its commit (outputs of that interval may repeat, as it allows) and
hands a culprit found alone to the handler at once.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from samsa.streams import restore as restoring
from samsa.streams import topics as topic_admin
from samsa.streams.errors import (
    Action,
    InstanceFenced,
    ProcessingError,
    StreamsError,
    classify,
    error_of,
)
from samsa.streams.guarantee import Guarantee
from samsa.streams.handlers import ErrorKind, OnError, dead_letter_headers
from samsa.streams.local import TaskDirectory
from samsa.streams.punctuation import PunctuationType, Punctuator
from samsa.streams.refusals import REFUSED, OutputId, Refusals, Verdict
from samsa.streams.serde import BYTES
from samsa.streams.settings import Settings
from samsa.streams.store import KeyValueStore, StoreSpec
from samsa.streams.tables import TableCatchUp
from samsa.streams.topology import Node, Topic

log = logging.getLogger("samsa.streams")

T = TypeVar("T")
TP = tuple[str, int]
POLL_TIMEOUT_S = 0.05
PROGRESS_EVERY_S = 5.0
RETRY_BACKOFF_S = 0.1
CLIENT_TIMEOUT_S = 30.0
# Offset commit refusals that mean "the group moved on": not this instance's fault.
_GROUP_MOVED = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
    }
)


# produce() refusals that concern the record, not the producer (production errors).
_RECORD_REFUSED = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._INVALID_ARG,
    }
)


DEAD_LETTER_INDEX = -1  # the output index of an input record's dead letter


class _Unproducible(Exception):
    """The client refused to produce one record (its cause chained)."""


class _Rewind(StreamsError):
    """exactly_once: the transaction can only be aborted (the broker refused an output, say);
    the loop aborts it and rewinds the input (see the module docstring)."""


class Worker:
    """Runs the topology of one application instance until `stop()` (thread-safe) or a fault."""

    def __init__(
        self,
        settings: Settings,
        sources: dict[str, tuple[Topic, Node]],
        hooks: Sequence[Callable[[], None]] = (),
        punctuators: Sequence[Punctuator] = (),
    ) -> None:
        self.settings = settings
        self.guarantee = settings.processing_guarantee
        self.instance_id = settings.resolved_instance_id()
        self.sources = sources
        self.store_specs: list[StoreSpec] = []
        sinks: dict[str, Topic] = {}
        for _topic, root in sources.values():
            for spec in root.stores():
                if spec not in self.store_specs:
                    self.store_specs.append(spec)
            for sink in root.sinks():
                sinks[sink.name] = sink
        if any(settings.on(kind) is OnError.DEAD_LETTER for kind in ErrorKind):
            dead_letters = settings.dead_letters()
            sinks[dead_letters] = Topic(dead_letters, BYTES, BYTES)
        self.punctuators = tuple(punctuators)
        for punctuator in self.punctuators:
            for spec in punctuator.stores:
                if spec not in self.store_specs:
                    self.store_specs.append(spec)
            if punctuator.to is not None:
                sinks[punctuator.to.name] = punctuator.to
        self._stream_time: dict[int, int] = {}  # task -> largest record timestamp
        self._due: dict[tuple[int, int], int] = {}  # (punctuator, task) -> next call's time
        self._dirty = False  # a punctuator wrote outside any record: commit it
        self.sinks = sinks
        # Topics read as tables (app.table) by a join: a task reads its table partitions up
        # to their end before its stream partitions (held: paused) are processed.
        table_topics = {
            table.topic.name for _topic, root in sources.values() for table in root.joins()
        }
        self._tables = (
            TableCatchUp(table_topics, self.instance_id, settings.restore_timeout_ms / 1000)
            if table_topics
            else None
        )
        self.hooks = tuple(hooks)
        self._stopping = threading.Event()
        self._tasks: dict[int, dict[str, KeyValueStore]] = {}  # input partition -> stores
        self._dirs: dict[int, TaskDirectory] = {}  # with a state_dir: each task's directory
        self._since_checkpoint: dict[int, int] = {}  # changelog records written, per task
        self._assigned: set[TP] = set()
        self._touched: set[TP] = set()  # partitions a rebalance callback moved in this poll
        self._positions: dict[TP, int] = {}  # next offset to consume, processed, uncommitted
        self._txn_start: dict[TP, int] = {}  # first offset processed since the last commit
        self._in_txn = False
        # exactly_once: the store changelogs already written to in the open transaction, as
        # (partition, store name), and the partitions whose stores are all among them.
        self._changelogs_in_txn: set[tuple[int, str]] = set()
        self._partitions_in_txn: set[int] = set()
        self._opened_at = 0.0
        self._partition = -1
        self._timestamp_ms = 0  # of the record being processed
        self._message: Message | None = None  # the record being processed
        self._outputs: list[tuple[str, bytes | None, bytes | None]] = []  # of that record
        self._callback_error: BaseException | None = None
        self._delivery_error: KafkaError | None = None
        self._refusals = Refusals()  # outputs the broker refused (refusals.py)
        self._fenced = False
        self._failed = False  # stopped by a fault: nothing more is committed or checkpointed
        self.processed = 0
        self.committed = 0
        self.commits = 0
        self.commit_seconds = 0.0  # wall time spent in commits (changelog, offsets, commit)
        self.idle_seconds = 0.0  # wall time in polls that returned nothing
        self.aborts = 0
        self.restored = 0  # changelog records applied by restores
        self.restore_seconds = 0.0  # wall time restoring (local state opened, changelog read)
        # ("assigned" | "revoked" | "lost", partitions) for each rebalance callback
        self.rebalances: list[tuple[str, list[TP]]] = []
        # "<kind>_errors" per ErrorKind, "skipped", "dead_lettered", "late_records_dropped"
        self.counters: collections.Counter[str] = collections.Counter()
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self._restorer: Consumer | None = None

    # -- lifecycle --

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        """Start, process until stopped, shut down: commit (or abort) what is open."""
        self._start()
        try:
            self._loop()
        except InstanceFenced:
            self._fenced = True
            log.error("instance %s fenced: stopping without committing", self.instance_id)
            raise
        except BaseException:
            self._failed = True
            self._abandon()
            raise
        finally:
            self._close()

    def _start(self) -> None:
        s = self.settings
        log.info(
            "starting %s instance %s (%s, commit every %d ms) on %s",
            s.application_id,
            self.instance_id,
            self.guarantee.value,
            s.commit_interval_ms,
            s.bootstrap_servers,
        )
        if s.create_topics:
            self._create_topics()
        self._check_copartitioned()
        producer_config = s.producer(self.instance_id)
        producer_config["on_delivery"] = self._on_delivery
        producer_config.setdefault("delivery.report.only.error", True)
        self.producer = Producer(producer_config)
        if self.guarantee is Guarantee.EXACTLY_ONCE:
            # Fences an older instance with this transactional.id, aborting its open txn.
            self._retrying(lambda: self._p.init_transactions(CLIENT_TIMEOUT_S))
        if self.store_specs:
            self._restorer = Consumer(s.restore_consumer())
        self.consumer = Consumer(s.consumer(self.instance_id))
        self.consumer.subscribe(
            list(self.sources),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _create_topics(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.settings.bootstrap_servers})
        counts = topic_admin.partition_counts(admin, self.sources)
        partitions = max(counts.values(), default=1)
        wanted: dict[str, tuple[int, dict[str, str]]] = {}
        for sink in self.sinks.values():
            wanted[sink.name] = (sink.partitions or partitions, sink.config)
        for spec in self.store_specs:
            # One changelog partition per input partition: compacted, key -> latest value.
            wanted[spec.changelog_topic(self.settings.application_id)] = (
                partitions,
                {"cleanup.policy": "compact"},
            )
        topic_admin.ensure(admin, wanted)

    def _check_copartitioned(self) -> None:
        """A stream-table join reads the table's partition p beside the stream's partition
        p: both topics need as many partitions (Kafka Streams' co-partitioning check)."""
        pairs = [
            (topic, table.topic.name)
            for topic, (_source, root) in self.sources.items()
            for table in root.joins()
        ]
        if not pairs:
            return
        admin = AdminClient({"bootstrap.servers": self.settings.bootstrap_servers})
        counts = topic_admin.partition_counts(admin, {name for pair in pairs for name in pair})
        for stream_topic, table_topic in pairs:
            theirs = counts.get(stream_topic), counts.get(table_topic)
            if None not in theirs and theirs[0] != theirs[1]:
                raise StreamsError(
                    f"topics {stream_topic} ({theirs[0]} partitions) and {table_topic} "
                    f"({theirs[1]} partitions) are joined but not co-partitioned: give them "
                    "the same number of partitions"
                )

    @property
    def _p(self) -> Producer:
        if self.producer is None:
            raise StreamsError("the worker is not started")
        return self.producer

    @property
    def _c(self) -> Consumer:
        if self.consumer is None:
            raise StreamsError("the worker is not started")
        return self.consumer

    def _loop(self) -> None:
        interval_s = self.settings.commit_interval_ms / 1000
        last_progress = time.monotonic()
        last_processed = 0
        while not self._stopping.is_set():
            polled = time.monotonic()
            messages = self._c.consume(self.settings.max_poll_records, POLL_TIMEOUT_S)
            if not messages:
                self.idle_seconds += time.monotonic() - polled
            self._raise_callback_error()
            messages = self._without_rebalanced(messages)
            if self._tables is not None:
                messages = self._tables.filter(
                    self._c, self._assigned, messages, _where, self._seek
                )
            if messages and self.guarantee is Guarantee.AT_MOST_ONCE:
                self._commit_offsets(self._next_offsets(messages))
            try:
                for message in messages:
                    self._process(message)
                if self.punctuators:
                    wall_ms = int(time.time() * 1000)
                    self._punctuate(PunctuationType.WALL_CLOCK_TIME, sorted(self._tasks), wall_ms)
            except _Rewind as exc:
                log.warning("%s: %s; aborting and rewinding", self.instance_id, exc)
                self._abort()
                continue  # the rest of `messages` comes again from the rewound positions
            self._p.poll(0)
            now = time.monotonic()
            if (self._positions or self._dirty) and now - self._opened_at >= interval_s:
                self._commit()
            if now - last_progress >= PROGRESS_EVERY_S:
                rate = (self.processed - last_processed) / (now - last_progress)
                log.info(
                    "%s: processed %d (%.0f/s), committed %d in %d commits, %d aborts, "
                    "partitions %s",
                    self.instance_id,
                    self.processed,
                    rate,
                    self.committed,
                    self.commits,
                    self.aborts,
                    sorted(self._assigned),
                )
                last_progress, last_processed = now, self.processed
        self._commit()
        self._checkpoint(list(self._tasks))  # a clean stop: everything is committed

    def _close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()  # leaves the group; on_revoke has nothing left to commit
        if self._restorer is not None:
            self._restorer.close()
        for stores in self._tasks.values():
            for store in stores.values():
                store.close()
        self._tasks.clear()
        if self.producer is not None and not self._fenced:
            self.producer.flush(CLIENT_TIMEOUT_S)
        # The producer holds this worker (its delivery callback), so only the cyclic GC
        # would free the pair, and with it the producer's librdkafka threads and connections.
        self.consumer = self.producer = self._restorer = None
        log.info(
            "%s stopped: processed %d, committed %d in %d commits, %d aborts",
            self.instance_id,
            self.processed,
            self.committed,
            self.commits,
            self.aborts,
        )

    def _abandon(self) -> None:
        """After a fault: abort the open transaction (exactly_once) and drop pending state,
        committing nothing, so the next owner resumes at the committed offsets."""
        try:
            if self._in_txn and not self._fenced:
                self._p.abort_transaction(CLIENT_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("abort while stopping failed: %s", exc)
        self._in_txn = False
        self._refusals.drop_pending()
        self._reset_uncommitted(seek=False)

    # -- processing --

    def _process(self, message: Message) -> None:
        topic, partition, offset = _where(message)
        tp = (topic, partition)
        if tp not in self._assigned:
            return
        self._begin()
        self._txn_start.setdefault(tp, offset)  # before processing: a _Rewind seeks here
        source, root = self.sources[topic]
        self._partition = partition
        self._timestamp_ms = message.timestamp()[1]
        self._stream_time[partition] = max(self._stream_time.get(partition, -1), self._timestamp_ms)
        self._message = message
        try:
            key = source.key_serde.deserialize(message.key())
            value = source.value_serde.deserialize(message.value())
        except Exception as exc:
            self._handle(ErrorKind.DESERIALIZATION, exc)
        else:
            self._push(root, key, value)
        self._positions[tp] = offset + 1
        self.processed += 1
        if self.punctuators:
            stream_ms = self._stream_time[partition]
            self._punctuate(PunctuationType.STREAM_TIME, [partition], stream_ms)
        if self._in_txn and partition not in self._partitions_in_txn:
            self._add_changelogs(partition)

    def _begin(self) -> None:
        """Open the transaction (exactly_once) and the commit interval, if not open."""
        if self.guarantee is Guarantee.EXACTLY_ONCE and not self._in_txn:
            self._p.begin_transaction()
            self._in_txn = True
            self._changelogs_in_txn.clear()
            self._partitions_in_txn.clear()
        if not self._positions and not self._dirty:
            self._opened_at = time.monotonic()

    def _punctuate(self, kind: PunctuationType, partitions: list[int], now_ms: int) -> None:
        """Call the punctuators of `kind` that are due at `now_ms` in these tasks. Stream
        time is checked after each record (as Kafka Streams does), wall-clock time after
        each poll."""
        for n, punctuator in enumerate(self.punctuators):
            if punctuator.kind is not kind:
                continue
            for partition in partitions:
                due = self._due.setdefault((n, partition), punctuator.next_due(now_ms))
                if now_ms >= due:
                    self._due[(n, partition)] = punctuator.next_due(now_ms)
                    self._call(punctuator, partition, now_ms)

    def _call(self, punctuator: Punctuator, partition: int, now_ms: int) -> None:
        self._begin()
        self._dirty = True
        self._partition = partition
        self._message = None
        stores = [self.store(spec) for spec in punctuator.stores]
        try:
            results = list(punctuator.fn(now_ms, *stores) or ())
            topic = punctuator.to
            if results and topic is None:
                raise ValueError("the punctuator returned records but has no `to` topic")
            if topic is not None:
                for key, value in results:
                    key_data = topic.key_serde.serialize(key)
                    value_data = topic.value_serde.serialize(value)
                    self._produce(topic.name, key_data, value_data, timestamp_ms=now_ms)
        except (StreamsError, KafkaException):
            raise
        except Exception as exc:
            raise ProcessingError(
                f"punctuator {punctuator.name()} of partition {partition} at {now_ms} failed"
            ) from exc

    def _push(self, root: Node, key: Any, value: Any) -> None:
        """Run one record through the topology: its store writes and outputs whole, or (after
        a processing error that is skipped or dead-lettered) none of them."""
        stores = self._tasks.get(self._partition, {}).values()
        for store in stores:
            store.begin_record()
        self._outputs.clear()
        try:
            root.push(self, key, value)
        except (StreamsError, KafkaException):
            raise
        except Exception as exc:
            for store in stores:
                store.undo_record()
            self._outputs.clear()
            self._handle(ErrorKind.PROCESSING, exc)
            return
        outputs, self._outputs = self._outputs, []
        for index, (topic, out_key, out_value) in enumerate(outputs):
            try:
                refused = self._produce_output(index, topic, out_key, out_value)
            except _Unproducible as exc:
                refused = exc.__cause__ or exc
            if refused is not None:
                self._handle(ErrorKind.PRODUCTION, refused)

    def _produce_output(
        self,
        index: int,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> BaseException | None:
        """Produce output `index` of the current record, or return the broker's refusal of it
        learnt in an earlier pass (exactly_once). A suspect is produced alone."""
        message = self._message
        if message is None:
            raise StreamsError(f"an output to {topic} outside a record")
        if not self._refusals.tracking:
            self._produce(topic, key, value, timestamp_ms=self._timestamp_ms, headers=headers)
            return None
        output = (*_where(message), index)
        verdict, refused = self._refusals.verdict(output, (topic, key, value))
        if verdict is Verdict.REFUSED:
            return refused
        alone = verdict is Verdict.PRODUCE_ALONE
        if alone:
            self._flush_delivered()
        callback = functools.partial(self._on_output_delivery, output)
        self._produce(
            topic,
            key,
            value,
            timestamp_ms=self._timestamp_ms,
            headers=headers,
            on_delivery=callback,
        )
        if not alone:
            return None
        self._p.flush(CLIENT_TIMEOUT_S)
        refused = self._refusals.take(output)
        if refused is None or self.guarantee is not Guarantee.EXACTLY_ONCE:
            return refused
        self._refusals.confirm(output, refused)  # and the transaction is abortable now
        raise _Rewind(str(refused))

    def _flush_delivered(self) -> None:
        self._p.flush(CLIENT_TIMEOUT_S)
        if self.guarantee is Guarantee.EXACTLY_ONCE and self._refusals.pending:
            raise _Rewind("the broker refused outputs")

    def _handle(self, kind: ErrorKind, exc: BaseException) -> None:
        """A record could not be deserialised, processed or produced: fail, skip or
        dead-letter it, as the application chose (handlers.py)."""
        message = self._message
        if message is None:
            raise StreamsError(f"{kind.value} error outside a record") from exc
        topic, partition, offset = _where(message)
        where = f"{kind.value} of {topic}[{partition}]@{offset} failed: {exc!r}"
        self.counters[f"{kind.value}_errors"] += 1
        choice = self.settings.on(kind)
        if choice is OnError.FAIL:
            raise ProcessingError(where) from exc
        if choice is OnError.SKIP:
            log.warning("%s: skipped (%s)", self.instance_id, where)
            self.counters["skipped"] += 1
            return
        log.warning("%s: dead-lettered (%s)", self.instance_id, where)
        now_ms = int(time.time() * 1000)
        headers = dead_letter_headers(kind, exc, topic, partition, offset, now_ms)
        try:
            dead_letters = self.settings.dead_letters()
            refused = self._produce_output(
                DEAD_LETTER_INDEX, dead_letters, message.key(), message.value(), headers
            )
        except _Unproducible as failed:
            refused = failed
        if refused is not None:
            raise ProcessingError(f"{where}; and dead-lettering it failed: {refused}") from exc
        self.counters["dead_lettered"] += 1

    def _add_changelogs(self, partition: int) -> None:
        """Write the first change of each store of `partition` at once. Producing to a
        changelog partition is what makes the producer add it to the transaction
        (AddPartitionsToTxn); done now, that round trip overlaps processing. Left to the
        commit, it would queue behind the commit's AddOffsetsToTxn (Kafka's coordinator
        refuses it with CONCURRENT_TRANSACTIONS while that write is pending, and the client
        retries). The commit writes the key's final value after it; the changelog is
        compacted and restored in order, so the later record wins."""
        app = self.settings.application_id
        complete = True
        for store in self._tasks.get(partition, {}).values():
            if (partition, store.spec.name) in self._changelogs_in_txn:
                continue
            change = store.first_change()
            if change is None:
                complete = False
                continue
            self._produce(store.spec.changelog_topic(app), change[0], change[1], partition)
            self._changelogs_in_txn.add((partition, store.spec.name))
        if complete:
            self._partitions_in_txn.add(partition)

    def store(self, spec: StoreSpec) -> KeyValueStore:
        try:
            return self._tasks[self._partition][spec.name]
        except KeyError:
            raise StreamsError(
                f"no store {spec.name!r} for partition {self._partition}: not assigned here"
            ) from None

    @property
    def timestamp_ms(self) -> int:
        """The timestamp of the record being processed."""
        return self._timestamp_ms

    def count(self, name: str) -> None:
        self.counters[name] += 1

    def emit(self, topic: Topic, key: Any, value: Any) -> None:
        """Keep an output of the current record; `_push` produces them once it is done."""
        try:
            key_data = topic.key_serde.serialize(key)
            value_data = topic.value_serde.serialize(value)
        except Exception as exc:
            self._handle(ErrorKind.PRODUCTION, exc)
            return
        self._outputs.append((topic.name, key_data, value_data))

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        *,
        timestamp_ms: int = 0,
        headers: list[tuple[str, bytes]] | None = None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        """Produce one record; raises _Unproducible if the client refuses this record (too
        large, say) while the producer itself is fine, and _Rewind if the client refuses it
        because the broker refused an output of this transaction."""
        args: dict[str, Any] = {"timestamp": max(timestamp_ms, 0)}
        if partition is not None:
            args["partition"] = partition
        if headers:
            args["headers"] = headers
        if on_delivery is not None:
            args["on_delivery"] = on_delivery
        while True:
            try:
                self._p.produce(topic, value, key, **args)
                return
            except BufferError:
                self._p.poll(0.05)  # the local queue is full: let deliveries drain it
            except KafkaException as exc:
                error = error_of(exc)
                if error.code() in _RECORD_REFUSED:
                    raise _Unproducible(f"produce to {topic}: {exc}") from exc
                if error.code() == KafkaError._STATE and self.guarantee is Guarantee.EXACTLY_ONCE:
                    # The transaction is abortable: a refused output, or what the client
                    # makes of the sequence number that output used (it bumps the epoch).
                    raise _Rewind(f"produce to {topic}: {error.str()}") from exc
                self._fail(exc, "produce")

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return
        if error.code() in REFUSED and message.topic() in self.sinks:
            self._refusals.reported(error, message)
        elif self._delivery_error is None:
            self._delivery_error = error

    def _on_output_delivery(
        self, output: OutputId, error: KafkaError | None, message: Message
    ) -> None:
        if error is not None and error.code() in REFUSED:
            self._refusals.reported_output(output, error, message)
        else:
            self._on_delivery(error, message)

    def _learn_refusals(self) -> None:
        """After an abort, or at an at_least_once commit that will rewind instead."""
        refused = self._refusals.learn()
        if refused:
            log.warning("%s: the broker refused %d outputs for good", self.instance_id, refused)

    # -- commits --

    def _commit(self) -> None:
        began = time.monotonic()
        try:
            if self.guarantee is Guarantee.EXACTLY_ONCE:
                self._commit_transaction()
            else:
                self._commit_flush()
        finally:
            self.commit_seconds += time.monotonic() - began

    def _write_changelogs(self) -> None:
        app = self.settings.application_id
        for partition, stores in self._tasks.items():
            for store in stores.values():
                topic = store.spec.changelog_topic(app)
                changes = store.changes()
                for key, data in changes:
                    self._produce(topic, key, data, partition)
                self._since_checkpoint[partition] = self._since_checkpoint.get(partition, 0) + len(
                    changes
                )

    def _commit_transaction(self) -> None:
        if not self._in_txn:
            return
        try:
            self._write_changelogs()
            for hook in self.hooks:
                hook()
            offsets = self._offsets()
            if offsets:
                metadata = self._c.consumer_group_metadata()
                self._retrying(
                    lambda: self._p.send_offsets_to_transaction(offsets, metadata, CLIENT_TIMEOUT_S)
                )
            self._retrying(lambda: self._p.commit_transaction(CLIENT_TIMEOUT_S))
        except _Rewind as exc:
            log.warning("%s: %s; aborting and rewinding", self.instance_id, exc)
            self._abort()
            return
        except KafkaException as exc:
            if classify(error_of(exc)) is Action.ABORT:
                log.warning("%s: transaction aborted (%s); rewinding", self.instance_id, exc)
                self._abort()
                return
            self._fail(exc, "commit")
        self._in_txn = False
        self._committed_now()

    def _abort(self) -> None:
        try:
            self._retrying(lambda: self._p.abort_transaction(CLIENT_TIMEOUT_S))
        except KafkaException as exc:
            self._fail(exc, "abort")
        self._in_txn = False
        self.aborts += 1
        self._p.poll(0)  # the delivery reports of the aborted transaction's outputs
        self._learn_refusals()
        self._reset_uncommitted(seek=True)

    def _commit_flush(self) -> None:
        if not self._positions and not self._dirty:
            return
        self._write_changelogs()
        remaining = self._p.flush(CLIENT_TIMEOUT_S)
        if self._refusals.pending:
            # As exactly_once does after its abort: learn, rewind, reprocess.
            self._learn_refusals()
            self._reset_uncommitted(seek=True)
            return
        if remaining or self._delivery_error is not None:
            raise StreamsError(
                f"{remaining} records undelivered, error {self._delivery_error}; "
                "offsets not committed"
            )
        for hook in self.hooks:
            hook()
        self._commit_stores()  # the changelog has them now, whatever happens to the offsets
        if self.guarantee is Guarantee.AT_LEAST_ONCE:
            try:
                self._commit_offsets(self._offsets())
            except KafkaException as exc:
                if error_of(exc).code() not in _GROUP_MOVED:
                    raise
                # The group is rebalancing (some coordinators refuse commits then). Keep the
                # positions: the next commit, or the one on revocation, tries again; if none
                # succeeds, the next owner repeats these records, as at_least_once allows.
                log.warning("%s: offset commit refused (%s); will retry", self.instance_id, exc)
                return
        self._committed_now()

    def _commit_offsets(self, offsets: list[TopicPartition]) -> None:
        if offsets:
            self._retrying(lambda: self._c.commit(offsets=offsets, asynchronous=False))

    def _offsets(self) -> list[TopicPartition]:
        return [TopicPartition(t, p, o) for (t, p), o in sorted(self._positions.items())]

    @staticmethod
    def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
        ends: dict[TP, int] = {}
        for m in messages:
            topic, partition, offset = _where(m)
            ends[(topic, partition)] = offset + 1
        return [TopicPartition(t, p, o) for (t, p), o in sorted(ends.items())]

    def _commit_stores(self) -> None:
        for stores in self._tasks.values():
            for store in stores.values():
                store.commit()

    def _checkpoint(self, partitions: list[int]) -> None:
        """Write the checkpoint of each task: its changelogs' end offsets, which this
        instance's successful commits have just made whole (only it writes them)."""
        if self._restorer is None:
            return
        app = self.settings.application_id
        for partition in partitions:
            directory = self._dirs.get(partition)
            if directory is None:
                continue
            offsets: dict[str, int] = {}
            try:
                for spec in self.store_specs:
                    topic = spec.changelog_topic(app)
                    _low, high = self._restorer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=CLIENT_TIMEOUT_S, cached=False
                    )
                    offsets[topic] = high
            except KafkaException as exc:
                log.warning("%s: no checkpoint for %d (%s)", self.instance_id, partition, exc)
                continue
            directory.write_checkpoint(offsets)
            self._since_checkpoint[partition] = 0

    def _committed_now(self) -> None:
        self._dirty = False
        self._commit_stores()
        if self._dirs and self.guarantee is not Guarantee.EXACTLY_ONCE:
            interval = self.settings.checkpoint_interval_records
            self._checkpoint(
                [p for p, n in self._since_checkpoint.items() if n >= interval and p in self._dirs]
            )
        self.committed += sum(self._positions[tp] - self._txn_start[tp] for tp in self._positions)
        self.commits += 1
        self._refusals.committed(self._positions)
        self._positions.clear()
        self._txn_start.clear()

    def _reset_uncommitted(self, seek: bool) -> None:
        self._dirty = False
        for stores in self._tasks.values():
            for store in stores.values():
                store.rollback()
        if seek:
            for (topic, partition), offset in sorted(self._txn_start.items()):
                if (topic, partition) in self._assigned:
                    self._seek(topic, partition, offset)
        self._positions.clear()
        self._txn_start.clear()

    def _seek(self, topic: str, partition: int, offset: int) -> None:
        try:
            self._c.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:
            raise StreamsError(f"cannot rewind {topic}[{partition}] to {offset}: {exc}") from exc

    def _retrying(self, operation: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.settings.retry_deadline_ms / 1000
        while True:
            try:
                return operation()
            except KafkaException as exc:
                action = classify(error_of(exc))
                if action is Action.FENCED:
                    raise InstanceFenced(str(exc)) from exc
                if action is not Action.RETRY or time.monotonic() >= deadline:
                    raise
                log.info("retrying after %s", exc)
                time.sleep(RETRY_BACKOFF_S)

    def _fail(self, exc: KafkaException, what: str) -> None:
        if classify(error_of(exc)) is Action.FENCED:
            raise InstanceFenced(f"{what}: {exc}") from exc
        raise StreamsError(f"{what} failed: {exc}") from exc

    # -- rebalances (called from inside consume()) --

    def _without_rebalanced(self, messages: list[Message]) -> list[Message]:
        """Drop records a rebalance callback in the same consume() may have made stale, and
        seek still-owned partitions back to the first dropped offset, which the next
        consume() returns again."""
        errors = [m for m in messages if m.error() is not None]
        for m in errors:
            error = m.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                if error.fatal():
                    raise StreamsError(f"consumer: {error}")
                log.warning("consumer: %s", error)
        messages = [m for m in messages if m.error() is None]
        if not self._touched:
            return messages
        touched, self._touched = self._touched, set()
        kept: list[Message] = []
        rewind: dict[TP, int] = {}
        for m in messages:
            topic, partition, offset = _where(m)
            if (topic, partition) in touched:
                rewind.setdefault((topic, partition), offset)
            else:
                kept.append(m)
        for (topic, partition), offset in sorted(rewind.items()):
            if (topic, partition) in self._assigned:
                self._seek(topic, partition, offset)
        return kept

    def _raise_callback_error(self) -> None:
        error, self._callback_error = self._callback_error, None
        if error is not None:
            raise error

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            tps = {(tp.topic, tp.partition) for tp in partitions}
            self.rebalances.append(("assigned", sorted(tps)))
            self._assigned |= tps
            self._touched |= tps
            self._open_tasks(sorted({p for _, p in tps}))
            if self._tables is not None:
                self._tables.assigned(tps)
            log.info("%s: assigned %s", self.instance_id, sorted(tps))
        except BaseException as exc:
            self._callback_error = exc

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.rebalances.append(("revoked", sorted((tp.topic, tp.partition) for tp in partitions)))
        try:
            if not (self._fenced or self._failed) and self._callback_error is None:
                self._commit()  # hand the partitions over with everything processed committed
                self._checkpoint(sorted({tp.partition for tp in partitions} & set(self._tasks)))
        except BaseException as exc:
            self._callback_error = exc
            self._abandon()
        self._drop(partitions)

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Someone else may own them already: committing now could overwrite their progress.
        log.warning("%s: partitions lost %s", self.instance_id, partitions)
        self.rebalances.append(("lost", sorted((tp.topic, tp.partition) for tp in partitions)))
        self._abandon()
        self._drop(partitions)

    def _drop(self, partitions: list[TopicPartition]) -> None:
        tps = {(tp.topic, tp.partition) for tp in partitions}
        self._assigned -= tps
        self._touched |= tps
        owned = {p for _, p in self._assigned}
        for partition in list(self._tasks):
            if partition not in owned:
                for store in self._tasks.pop(partition).values():
                    store.close()
                self._dirs.pop(partition, None)
                self._since_checkpoint.pop(partition, None)
                self._stream_time.pop(partition, None)
                for n in range(len(self.punctuators)):
                    self._due.pop((n, partition), None)
        if self._tables is not None:
            self._tables.dropped(owned, tps)
        if tps:
            log.info("%s: revoked %s", self.instance_id, sorted(tps))

    def _open_tasks(self, partitions: list[int]) -> None:
        app = self.settings.application_id
        fresh: list[tuple[str, KeyValueStore]] = []
        starts: dict[TP, int] = {}
        began = time.monotonic()
        for partition in partitions:
            if partition in self._tasks:
                continue
            state_dir = self.settings.state_dir
            if state_dir is None or not self.store_specs:
                stores = {spec.name: KeyValueStore(spec, partition) for spec in self.store_specs}
            else:
                stores, checkpoint = self._open_local(state_dir, partition)
                starts.update({(topic, partition): o for topic, o in checkpoint.items()})
            self._tasks[partition] = stores
            fresh += [(s.spec.changelog_topic(app), s) for s in stores.values()]
        if fresh and self._restorer is not None:
            applied = restoring.restore(
                self._restorer,
                fresh,
                self.settings.restore_timeout_ms,
                self._stopping.is_set,
                starts,
            )
            self.restored += applied
            self.restore_seconds += time.monotonic() - began
            log.info(
                "%s: restored %d store partitions from %d changelog records in %.2f s",
                self.instance_id,
                len(fresh),
                applied,
                time.monotonic() - began,
            )

    def _open_local(
        self, state_dir: str, partition: int
    ) -> tuple[dict[str, KeyValueStore], dict[str, int]]:
        """A task's stores on disk, and the checkpoint to restore from: none (restore all,
        after discarding the local state) unless the last stop was clean. Under exactly_once
        the checkpoint is deleted once read, so an unclean stop leaves none (Kafka Streams)."""
        s = self.settings
        directory = TaskDirectory(state_dir, f"{s.application_id}-{self.instance_id}", partition)
        checkpoint = directory.read_checkpoint()
        changelogs = {spec.changelog_topic(s.application_id) for spec in self.store_specs}
        if self.guarantee is Guarantee.EXACTLY_ONCE:
            directory.delete_checkpoint()
        if not changelogs <= set(checkpoint):
            directory.wipe()
            checkpoint = {}
        self._dirs[partition] = directory
        self._since_checkpoint[partition] = 0
        stores = {
            spec.name: KeyValueStore(spec, partition, directory.open(spec.name))
            for spec in self.store_specs
        }
        log.info(
            "%s: task %d local state %s",
            self.instance_id,
            partition,
            f"from checkpoint {checkpoint}" if checkpoint else "discarded: restoring it all",
        )
        return stores, {t: o for t, o in checkpoint.items() if t in changelogs}


def _where(message: Message) -> tuple[str, int, int]:
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise StreamsError(f"a consumed record without a position: {message!r}")
    return topic, partition, offset
