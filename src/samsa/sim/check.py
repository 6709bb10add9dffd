"""Invariants of ARCHITECTURE.md, checked against the simulated broker through its own Fetch API
and against the clients' ground truth.

- acknowledged batches survive every crash, at the offsets they were acknowledged at (1);
- an offset below the high watermark never changes, and LSO <= HW <= log end (2);
- no value is stored twice, an idempotent producer's values stay in send order (3);
- read_committed never returns a value whose transaction did not commit (4), and every
  transaction is all or nothing across partitions;
- after quiescence no transaction is left open or prepared, and no LSO is held back (5);
- with committers (`samsa sim --groups`), offsets committed in a transaction become visible
  exactly when its COMMIT marker does (7; `samsa.sim.groups.OffsetsCheck`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.fetch.v12.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.types import TopicName
from kio.static.primitive import i8, i32, i64

from samsa.broker.outcomes import AwaitData
from samsa.coordinator.group.offsets import OffsetStore
from samsa.coordinator.txn.machine import TxnStateMachine, read_txn_record
from samsa.protocol import codec
from samsa.protocol.apis import ApiKey
from samsa.protocol.batch import iter_batches
from samsa.protocol.control import ABORT, marker_type
from samsa.protocol.records import records as decode_records
from samsa.sim.clients import TOPICS, Anomaly, IdempotentProducer, TransactionalProducer, ms
from samsa.sim.groups import OffsetsCheck

if TYPE_CHECKING:
    from samsa.sim.world import World

READ_EVERY_STEPS = 10
# The checker's reads take everything there is: the simulated logs stay far below these.
FETCH_BYTES_MAX = 16 << 20
FETCH_PARTITION_BYTES_MAX = 1 << 20
Partition = tuple[str, int]
Stored = tuple[int, bytes]  # offset, value


class Checker:
    def __init__(self, world: World) -> None:
        self.world = world
        self.anomalies: list[Anomaly] = []
        self.stable: dict[tuple[str, int, int], bytes] = {}
        self.committed_seen: set[bytes] = set()
        self.high_watermarks: dict[Partition, int] = {}
        # Where the incremental reads continue, and the values each has seen.
        self.cursor: dict[Partition, int] = {}
        self.committed_cursor: dict[Partition, int] = {}
        self.values_seen: dict[Partition, set[bytes]] = {}
        self.durable_before_crash: dict[Partition, int] = {}
        # The high watermark of each offline log when it went offline: it must never move.
        self.offline_high_watermarks: dict[Partition, int] = {}
        self.offsets = OffsetsCheck(self)  # invariant 7, when the world has committers

    def fail(self, kind: str, detail: str) -> None:
        anomaly = Anomaly(kind, f"seed {self.world.seed}: {detail}")
        if anomaly not in self.anomalies:  # each is reported once, however often it is seen
            self.anomalies.append(anomaly)

    # ----------------------------------------------------------------- reading
    def read(
        self, isolation: int, start: dict[Partition, int] | None = None
    ) -> dict[Partition, list[Stored]]:
        """What a consumer at this isolation level receives from `start` (default: the
        beginning) to the end, through Fetch v12 requests for every partition at once."""
        found: dict[Partition, list[Stored]] = {
            (topic, partition): [] for topic, n in TOPICS.items() for partition in range(n)
        }
        position = {key: (start or {}).get(key, 0) for key in found}
        active = set(found)
        for _ in range(10_000):
            if not active:
                return found
            response = self._fetch({key: position[key] for key in sorted(active)}, isolation)
            for topic_response in response.responses:
                for data in topic_response.partitions:
                    key = (str(topic_response.topic), int(data.partition_index))
                    records = bytes(data.records or b"")
                    if not records:
                        active.discard(key)
                        continue
                    position[key] = self._decode(
                        records, data.aborted_transactions, isolation, found[key]
                    )
        raise RuntimeError("the read did not finish")

    @staticmethod
    def _decode(
        records: bytes, aborted_transactions: Any, isolation: int, into: list[Stored]
    ) -> int:
        """Decode one partition's fetched batches into `into`; return the next offset.

        The client's side of read_committed (Kafka's CompletedFetch): skip the batches of
        aborted transactions, from their first offset to their ABORT marker."""
        aborted = sorted(
            (int(a.first_offset), int(a.producer_id)) for a in (aborted_transactions or ())
        )
        aborted_pids: set[int] = set()
        next_offset = 0
        for position, header in iter_batches(records):
            next_offset = header.next_offset
            while aborted and aborted[0][0] <= header.last_offset:
                aborted_pids.add(aborted.pop(0)[1])
            raw = records[position : position + header.size]
            if header.is_control:
                if marker_type(raw) == ABORT:
                    aborted_pids.discard(header.producer_id)
                continue
            if isolation == 1 and header.is_transactional and header.producer_id in aborted_pids:
                continue
            into.extend((r.offset, r.value or b"") for r in decode_records(raw))
        return next_offset

    def _fetch(self, offsets: dict[Partition, int], isolation: int) -> Any:
        by_topic: dict[str, list[FetchPartition]] = {}
        for (topic, partition), offset in offsets.items():
            by_topic.setdefault(topic, []).append(
                FetchPartition(
                    partition=i32(partition),
                    fetch_offset=i64(offset),
                    partition_max_bytes=i32(FETCH_PARTITION_BYTES_MAX),
                )
            )
        request = FetchRequest(
            max_wait=ms(0),
            min_bytes=i32(0),
            max_bytes=i32(FETCH_BYTES_MAX),
            isolation_level=i8(isolation),
            topics=tuple(
                FetchTopic(topic=TopicName(t), partitions=tuple(ps)) for t, ps in by_topic.items()
            ),
            forgotten_topics_data=(),
        )
        frame = codec.encode_request(1, "checker", request)
        outcome = self.world.broker.handle_frame(frame[4:])
        if not isinstance(outcome, AwaitData):
            raise RuntimeError(f"fetch answered {outcome!r}")
        payload = outcome.attempt(True)
        if payload is None:
            raise RuntimeError("a final fetch attempt answered nothing")
        encoded = codec.encode_response(1, payload)
        return codec.decode_response(ApiKey.FETCH, 12, encoded[4:])[1]

    # ----------------------------------------------------------------- during the run
    def after_step(self) -> None:
        world = self.world
        for topic, partitions in TOPICS.items():
            for partition in range(partitions):
                log = world.broker.topics.partition(topic, partition)
                if log is None:
                    self.fail("missing-partition", f"{topic}-{partition}")
                    continue
                key = (topic, partition)
                if not log.last_stable_offset <= log.high_watermark <= log.log_end_offset:
                    self.fail(
                        "offsets-out-of-order",
                        f"{key}: lso {log.last_stable_offset} hw {log.high_watermark} "
                        f"leo {log.log_end_offset}",
                    )
                if log.high_watermark < self.high_watermarks.get(key, 0):
                    self.fail("hw-moved-back", f"{key}: {log.high_watermark}")
                if log.offline is not None:
                    at_failure = self.offline_high_watermarks.setdefault(key, log.high_watermark)
                    if log.high_watermark > at_failure:
                        self.fail("acknowledged-after-failed-fsync", f"{key}: {log.offline}")
                self.high_watermarks[key] = log.high_watermark
        if world.stats.steps % READ_EVERY_STEPS == 0:
            self.observe()

    def observe(self) -> None:
        """Read what was added since the last look; offsets below the high watermark must
        never change, no value may appear twice."""
        self.world.stats.checks += 1
        uncommitted = self.read(0, self.cursor)
        for (topic, partition), stored in uncommitted.items():
            seen = self.values_seen.setdefault((topic, partition), set())
            for offset, value in stored:
                if value in seen:
                    self.fail("duplicate", f"{value!r} twice in {topic}-{partition}")
                seen.add(value)
                previous = self.stable.setdefault((topic, partition, offset), value)
                if previous != value:
                    self.fail(
                        "offset-changed",
                        f"{topic}-{partition}@{offset}: {previous!r} then {value!r}",
                    )
                self.cursor[topic, partition] = offset + 1
        for (topic, partition), stored in self.read(1, self.committed_cursor).items():
            for offset, value in stored:
                self.committed_seen.add(value)
                self.committed_cursor[topic, partition] = offset + 1
        self.offsets.observe()

    def coordinators_replay(self) -> tuple[Any, ...]:
        """What replaying the coordinators' logs from their start gives: the committed and
        pending offsets (to the high watermark), the transactional ids' metadata (to the log
        end: CompleteCommit and CompleteAbort are applied as they are appended). A cleaning
        pass must not change it (`compaction_kept`)."""
        broker = self.world.broker
        offsets_log = broker.groups.log
        offsets = OffsetStore(offsets_log.log_start_offset)
        offsets.catch_up(offsets_log)
        txn_log = broker.txn.txn_log
        machine = TxnStateMachine(lambda: -1, broker.txn.settings)
        for _, data in txn_log.batches(txn_log.log_start_offset, txn_log.log_end_offset):
            for record in decode_records(data):
                meta = read_txn_record(record.key, record.value)
                if meta is not None:
                    machine.replay(meta)
        return offsets.committed, offsets.pending, machine.txns

    def compaction_kept(self, before: tuple[Any, ...]) -> None:
        """After a cleaning pass: the compacted logs replay as the logs did before it (latest
        offset per key, transactions' outcomes and live transactional ids kept, aborted
        commits never resurrected)."""
        after = self.coordinators_replay()
        for name, old, new in zip(
            ("offsets", "pending offsets", "transactions"), before, after, strict=True
        ):
            if old != new:
                self.fail(
                    "compaction-changed-state",
                    f"{name} replayed before cleaning {old}, after {new}",
                )

    def before_crash(self) -> None:
        self.durable_before_crash = {
            (log.topic, log.partition): log.high_watermark
            for log in self.world.broker.topics.logs()
            if not log.topic.startswith("__")
        }

    def after_restart(self) -> None:
        """After a crash everything is read again: what was below the high watermark must
        still be there, unchanged, and so must every acknowledged batch."""
        self.high_watermarks.clear()
        self.offline_high_watermarks.clear()
        self.cursor.clear()
        self.committed_cursor.clear()
        self.values_seen.clear()
        for key, durable in self.durable_before_crash.items():
            log = self.world.broker.topics.partition(*key)
            if log is not None and log.offline is None and log.log_end_offset < durable:
                self.fail(
                    "durable-data-lost",
                    f"{key}: log end {log.log_end_offset} below "
                    f"the pre-crash high watermark {durable}",
                )
        self.observe()
        self._check_acknowledged(self.read(0))

    def _check_acknowledged(self, uncommitted: dict[Partition, list[Stored]]) -> None:
        at = {
            (t, p, offset): value
            for (t, p), stored in uncommitted.items()
            for offset, value in stored
        }
        for client in self.world.clients:
            if not isinstance(client, IdempotentProducer):
                continue
            for acked in client.acked:
                log = self.world.broker.topics.partition(acked.topic, acked.partition)
                if log is not None and log.offline is not None:
                    continue  # refused, not lost: checked again once it is recovered
                for i, value in enumerate(acked.values):
                    if at.get((acked.topic, acked.partition, acked.base_offset + i)) != value:
                        self.fail(
                            "lost-acknowledged",
                            f"{value!r} at {acked.topic}-{acked.partition}@{acked.base_offset + i}",
                        )

    # ----------------------------------------------------------------- at the end
    def final(self) -> None:
        self.after_restart()
        uncommitted = self.read(0)
        self._check_acknowledged(uncommitted)
        committed = {value for stored in self.read(1).values() for _, value in stored}
        written = {value for stored in uncommitted.values() for _, value in stored}
        for value in self.committed_seen - committed:
            self.fail("aborted-read", f"{value!r} was read at read_committed, then not committed")
        self._check_order(uncommitted)
        self._check_transactions(committed, written)
        self.offsets.final()
        for meta in self.world.broker.txn.txns.values():
            if meta.state.value not in ("Empty", "CompleteCommit", "CompleteAbort"):
                self.fail("hanging-transaction", f"{meta.transactional_id} in {meta.state.value}")
        for log in self.world.broker.topics.logs():
            if log.last_stable_offset != log.high_watermark:
                self.fail(
                    "stuck-lso",
                    f"{log.topic}-{log.partition}: lso "
                    f"{log.last_stable_offset} hw {log.high_watermark}",
                )

    def _check_order(self, uncommitted: dict[Partition, list[Stored]]) -> None:
        for (topic, partition), stored in uncommitted.items():
            last: dict[str, int] = {}
            for _, value in stored:
                name, _, number = value.decode().partition(":")
                if not name.startswith("idem"):
                    continue
                if int(number) < last.get(name, -1):
                    self.fail(
                        "reordered", f"{value!r} after {name}:{last[name]} in {topic}-{partition}"
                    )
                last[name] = int(number)

    def _check_transactions(self, committed: set[bytes], written: set[bytes]) -> None:
        for client in self.world.clients:
            if not isinstance(client, TransactionalProducer):
                continue
            for txn in client.txns:
                values = {v for vs in txn.values.values() for v in vs}
                visible = values & committed
                if txn.decision == "abort" and visible:
                    self.fail("aborted-visible", f"{client.name} txn {txn.number}: {visible}")
                if txn.decision == "commit" and visible != values:
                    self.fail(
                        "commit-incomplete",
                        f"{client.name} txn {txn.number}: missing {values - visible}",
                    )
                if visible and visible != values & written:
                    self.fail(
                        "torn-transaction",
                        f"{client.name} txn {txn.number}: visible "
                        f"{visible}, written {values & written}",
                    )
