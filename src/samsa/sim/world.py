"""The simulated world: one broker on a simulated disk and clock, clients, and a seeded
scheduler that interleaves their requests with fsyncs, lost responses, timer ticks, client
restarts, clean restarts and crashes. `World.run` checks the invariants after every step.

Durable writes, slots and background work go through the server's own durability driver
(`samsa.durability.Driver`): the world only decides when an fsync round happens and which of
its fsyncs fail (`sync_all(failing=...)`), as the group commit's worker threads do for real.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from samsa.broker.core import Broker, Endpoint
from samsa.broker.outcomes import AwaitData, AwaitDurable, AwaitSlot, AwaitWork, Close, Reply
from samsa.config import BrokerConfig
from samsa.durability import Driver
from samsa.durability.inline import sync_logs
from samsa.log.cleaner import SWAP_STEPS, LogCleaner
from samsa.log.partition import PartitionLog
from samsa.protocol import codec
from samsa.sim.check import Checker
from samsa.sim.clients import TOPICS, Anomaly, Call, IdempotentProducer, TransactionalProducer
from samsa.sim.disk import DiskFaults, SimDisk
from samsa.sim.groups import OffsetCommitter

DATA_DIR = "/data"
Client = IdempotentProducer | TransactionalProducer | OffsetCommitter
COORDINATOR_SEGMENT_BYTES = 2048
COMMITTERS = 2  # with `groups`: members of one group, each committing offsets in transactions


@dataclass(frozen=True, slots=True)
class Odds:
    """Per-step probabilities of each kind of event."""

    crash: float = 0.02
    clean_restart: float = 0.005
    client_restart: float = 0.01
    tick: float = 0.06
    fsync: float = 0.25
    lost_response: float = 0.08  # of each response
    torn_write: float = 0.5  # of each crash: part of the unsynced tail survives
    # Disk faults, off by default (`samsa sim --disk-faults`), on the user topics' segment
    # files: a write that writes part of its bytes and fails, an fsync that fails, and (at a
    # crash) a bit flipped in a stored batch.
    write_error: float = 0.0  # of each segment file append
    fsync_error: float = 0.0  # of each segment file fsync
    bit_flip: float = 0.0  # of each crash
    # Of each cleaning pass (every tick runs the log cleaner over the coordinators' logs): a
    # crash at one of its swap's steps, drawn from the cleaner's own seeded stream.
    cleaning_crash: float = 0.1


DISK_FAULTS = Odds(write_error=0.01, fsync_error=0.004, bit_flip=0.3)


@dataclass
class Stats:
    steps: int = 0
    requests: int = 0
    lost_responses: int = 0
    fsyncs: int = 0
    crashes: int = 0
    clean_restarts: int = 0
    client_restarts: int = 0
    checks: int = 0
    write_errors: int = 0
    fsync_errors: int = 0
    bit_flips: int = 0
    offline_restarts: int = 0
    cleaning_passes: int = 0
    cleaning_crashes: int = 0


class SimClient(Protocol):
    """What the world needs of a client."""

    name: str

    def on_response(self, call: Call, response: Any) -> None: ...
    def on_lost(self) -> None: ...


@dataclass(eq=False)
class InFlight:
    """A request and, once the broker has finished it, its response."""

    client: SimClient
    call: Call
    response: Any = None
    done: bool = False


class World:
    def __init__(self, seed: int, odds: Odds | None = None, groups: bool = False) -> None:
        """`groups` adds `OffsetCommitter`s: consumer groups and transactional offset commits
        (invariant 7). Off, the seeds replay as they did before groups were simulated."""
        self.seed = seed
        self.rng = random.Random(seed)
        self.odds = odds or Odds()
        self.now_ms = 1_700_000_000_000
        self.disk = SimDisk(
            DiskFaults(self.odds.write_error, self.odds.fsync_error),
            random.Random(f"disk-{seed}"),  # its own stream: no draw taken from the world's
            tuple(f"{DATA_DIR}/{topic}-" for topic in TOPICS),
        )
        # Cluster, topic and member ids: their own stream, so no draw is taken from the world's.
        self.ids = random.Random(f"ids-{seed}")
        # The cleaner's crashes: their own stream too.
        self.cleaning_rng = random.Random(f"clean-{seed}")
        self.stats = Stats()
        self.clients: list[Client] = []
        self.clients += [
            IdempotentProducer(f"idem{i}", random.Random(self.rng.random())) for i in range(2)
        ]
        self.clients += [
            TransactionalProducer(f"txn{i}", random.Random(self.rng.random())) for i in range(2)
        ]
        if groups:
            self.clients += [
                OffsetCommitter(f"cp{i}", random.Random(self.rng.random()), ("a", i))
                for i in range(COMMITTERS)
            ]
        self.inflight: dict[int, InFlight] = {}  # one per client (by index)
        self.correlation_id = 0
        self.driver: Driver[InFlight]  # set by _boot: one per life of the broker
        self.broker = self._boot(first=True)
        self.checker = Checker(self)

    # ----------------------------------------------------------------- the broker's life
    def clock(self) -> int:
        return self.now_ms

    def new_uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.ids.getrandbits(128), version=4)

    def _boot(self, first: bool = False) -> Broker:
        self.disk.reboot()
        # Small coordinator segments, so their logs roll and the cleaner compacts them.
        config = BrokerConfig(
            transaction_max_timeout_ms=60_000,
            offsets_topic_segment_bytes=COORDINATOR_SEGMENT_BYTES,
            transaction_state_log_segment_bytes=COORDINATOR_SEGMENT_BYTES,
        )
        broker = Broker(
            config, self.disk, DATA_DIR, self.clock, Endpoint("sim", 9092), self.new_uuid
        )
        broker.open()
        if first:
            for topic, partitions in TOPICS.items():
                broker.topics.create(topic, partitions, {}, self.now_ms)
        self.driver = Driver(broker.take_background)
        return broker

    def crash(self) -> None:
        self.stats.crashes += 1
        self.checker.before_crash()
        self.disk.crash(self.rng, self.odds.torn_write)
        self._drop_inflight()
        flipped = None
        if self.odds.bit_flip > 0 and self.rng.random() < self.odds.bit_flip:
            flipped = self.disk.flip_bit(self.rng)
        self.broker = self._boot()
        if flipped is not None:
            self.stats.bit_flips += 1
            self._repair(*flipped)
        self.checker.after_restart()

    def _repair(self, path: str, position: int, mask: int) -> None:
        """A flipped bit must have taken its partition offline, never been cut away or served.
        Then the operator restores the byte (from a backup) and restarts the broker."""
        offline = [log for log in self.broker.topics.offline() if path.startswith(log.directory)]
        if not offline:
            self.checker.fail("corruption-undetected", f"{path} byte {position} served as good")
        self.disk.toggle(path, position, mask)
        self.broker.abandon()
        self.broker = self._boot()

    def restart_offline(self) -> None:
        """A partition went offline (a failed fsync, or a write that could not be undone):
        the operator restarts the broker, which recovers it from the files."""
        self.stats.offline_restarts += 1
        self.checker.before_crash()
        self.broker.close()  # not a clean shutdown: an offline log was never synced again
        self._drop_inflight()
        self.broker = self._boot()
        self.checker.after_restart()

    def clean_restart(self) -> None:
        self.stats.clean_restarts += 1
        self.sync_all()
        self.broker.close()
        self._drop_inflight()
        self.broker = self._boot()
        self.checker.after_restart()

    def _drop_inflight(self) -> None:
        for inflight in self.inflight.values():
            inflight.client.on_lost()
        self.inflight.clear()

    # ----------------------------------------------------------------- requests
    def send(self, index: int) -> None:
        client = self.clients[index]
        call = client.next_call(self.now_ms)
        if call is None:
            return
        inflight = self.submit(client, call)
        if inflight is not None:
            self.inflight[index] = inflight

    def submit(self, client: SimClient, call: Call) -> InFlight | None:
        """Hand `call` to the broker as `client`'s request, as a connection does; None if the
        broker closes the connection instead (the client is told it lost the request)."""
        self.correlation_id += 1
        frame = codec.encode_request(self.correlation_id, client.name, call.request)
        outcome = self.broker.handle_frame(frame[4:])
        self.stats.requests += 1
        inflight = InFlight(client, call)
        if isinstance(outcome, Reply):
            inflight.response, inflight.done = outcome.payload, True
        elif isinstance(outcome, AwaitDurable) and outcome.finish is not None:
            self.driver.respond(inflight, outcome.waits, outcome.finish)
        elif isinstance(outcome, AwaitSlot):
            self.driver.slot(inflight, outcome.slot)
        elif isinstance(outcome, AwaitData):
            inflight.response, inflight.done = outcome.attempt(True), True
        elif isinstance(outcome, AwaitWork):  # the simulation has no threads: run it here
            inflight.response, inflight.done = outcome.finish(_run(outcome.work)), True
        elif isinstance(outcome, Close):
            client.on_lost()
            return None
        else:
            raise RuntimeError(f"unexpected outcome {outcome!r} for {call}")
        return inflight

    def drive(self) -> None:
        """Run what the last fsyncs (or requests) made ready; note the responses it finished."""
        for inflight, payload in self.driver.run():
            inflight.response, inflight.done = payload, True

    def deliver(self) -> None:
        """Hand every finished response to its client (or lose it)."""
        self.drive()
        for index, inflight in list(self.inflight.items()):
            if not inflight.done:
                continue
            del self.inflight[index]
            if self.rng.random() < self.odds.lost_response:
                self.stats.lost_responses += 1
                inflight.client.on_lost()
                continue
            # Through the codec both ways, as a real client would see it.
            frame = codec.encode_response(self.correlation_id, inflight.response)
            _, payload = codec.decode_response(
                inflight.call.api_key, inflight.call.version, frame[4:]
            )
            inflight.client.on_response(inflight.call, payload)

    def sync_all(self, failing: Collection[PartitionLog] = ()) -> None:
        """One group-commit round: every log written since the last becomes durable, except
        that the fsyncs of the logs in `failing` fail; then what that made ready runs."""
        self.stats.fsyncs += 1
        failed = sync_logs(self.driver, self.broker.topics.logs(), failing)
        self.stats.fsync_errors += len(failed)
        self.drive()

    def tick(self) -> None:
        self.now_ms += self.rng.randint(1, 1500)
        self.broker.txn.abort_timed_out()
        self.broker.groups.tick()
        self.clean()

    def clean(self) -> None:
        """Run the log cleaner until it has nothing left to do, maybe crashing the machine at
        one step of a swap; then the coordinators' logs must replay to their live state."""
        crash_at = None
        if self.cleaning_rng.random() < self.odds.cleaning_crash:
            crash_at = self.cleaning_rng.choice(SWAP_STEPS)

        def hook(step: str) -> None:
            if step == crash_at:
                raise _CleanerCrash(step)

        cleaner = LogCleaner(self.broker.topics.logs, self.clock, 0, hook)
        before = self.checker.coordinators_replay()
        try:
            cleaner.run_until_idle()
        except _CleanerCrash:
            self.stats.cleaning_crashes += 1
            self.crash()
            return
        self.stats.cleaning_passes += cleaner.stats.passes
        if cleaner.stats.passes:
            self.checker.compaction_kept(before)

    # ----------------------------------------------------------------- the scheduler
    def step(self) -> None:
        self.stats.steps += 1
        odds = self.odds
        events: list[tuple[float, Callable[[], None]]] = [
            (odds.crash, self.crash),
            (odds.clean_restart, self.clean_restart),
            (odds.client_restart, self.restart_client),
            (odds.tick, self.tick),
            (odds.fsync, self.sync_all),
        ]
        if self.broker.topics.offline():
            self.restart_offline()
            self.deliver()
            self.checker.after_step()
            return
        roll = self.rng.random()
        for probability, event in events:
            if roll < probability:
                event()
                break
            roll -= probability
        else:
            idle = [i for i in range(len(self.clients)) if i not in self.inflight]
            if idle:
                self.send(self.rng.choice(idle))
        self.deliver()
        self.checker.after_step()

    def restart_client(self) -> None:
        """A transactional client process dies; a new instance takes over its id."""
        self.stats.client_restarts += 1
        index = self.rng.choice(
            [i for i, c in enumerate(self.clients) if isinstance(c, TransactionalProducer)]
        )
        # The broker still finishes what a request in flight started (its continuation stays
        # in the driver); only the answer is lost.
        self.inflight.pop(index, None)
        client = self.clients[index]
        if isinstance(client, TransactionalProducer):
            client.restart()

    def quiesce(self) -> None:
        """Stop starting transactions; let everything in flight finish and time out. The
        disk stops failing, and a last restart brings back what went offline."""
        self.disk.faults = DiskFaults()
        while self.broker.topics.offline():
            self.restart_offline()
        for client in self.clients:
            if isinstance(client, TransactionalProducer) and client.stage == "idle":
                client.stage = "done"
            elif isinstance(client, OffsetCommitter):
                client.stop()
        for _ in range(400):
            for index, client in enumerate(self.clients):
                busy = isinstance(client, TransactionalProducer) and client.stage not in (
                    "done",
                    "idle",
                )
                current = isinstance(client, IdempotentProducer) and client.current is not None
                committing = isinstance(client, OffsetCommitter) and client.busy
                if index not in self.inflight and (busy or current or committing):
                    self.send(index)
            self.sync_all()
            self.deliver()
            if all(
                isinstance(c, TransactionalProducer) and c.stage == "idle"
                for c in self.clients
                if isinstance(c, TransactionalProducer)
            ):
                for client in self.clients:
                    if isinstance(client, TransactionalProducer):
                        client.stage = "done"
        self.now_ms += 10 * 60_000  # past every transaction timeout
        self.broker.txn.abort_timed_out()
        for _ in range(5):
            self.sync_all()

    def anomalies(self) -> list[Anomaly]:
        found = list(self.checker.anomalies)
        for client in self.clients:
            found.extend(client.anomalies)
        return found


def run(seed: int, steps: int, odds: Odds | None = None, groups: bool = False) -> World:
    world = World(seed, odds, groups)
    for _ in range(steps):
        world.step()
    world.quiesce()
    world.checker.final()
    world.stats.write_errors = world.disk.injected["write_error"]
    return world


class _CleanerCrash(Exception):
    """The machine dies at this step of a cleaning pass."""


def _run(work: Callable[[], Any]) -> Any:
    try:
        return work()
    except OSError as exc:
        return exc
