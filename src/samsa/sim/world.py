"""The simulated world: one broker on a simulated disk and clock, clients, and a seeded
scheduler that interleaves their requests with fsyncs, lost responses, timer ticks, client
restarts, clean restarts and crashes. `World.run` checks the invariants after every step."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from samsa.broker.core import Broker, Endpoint
from samsa.broker.outcomes import AwaitData, AwaitDurable, Close, Reply
from samsa.config import BrokerConfig
from samsa.durability import Durable, Later
from samsa.protocol import codec
from samsa.protocol.build import build
from samsa.sim.check import Checker
from samsa.sim.clients import TOPICS, Anomaly, Call, IdempotentProducer, TransactionalProducer
from samsa.sim.disk import DiskFaults, SimDisk

DATA_DIR = "/data"
Client = IdempotentProducer | TransactionalProducer


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


@dataclass
class InFlight:
    client: Client
    call: Call
    # Waiting for durability: the writes, and what builds the response once they are durable.
    waits: list[Any] = field(default_factory=list)
    finish: Callable[[set[Any]], Any] | None = None
    response: Any = None
    done: bool = False


class World:
    def __init__(self, seed: int, odds: Odds | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.odds = odds or Odds()
        self.now_ms = 1_700_000_000_000
        self.disk = SimDisk(
            DiskFaults(self.odds.write_error, self.odds.fsync_error),
            random.Random(f"disk-{seed}"),  # its own stream: no draw taken from the world's
            tuple(f"{DATA_DIR}/{topic}-" for topic in TOPICS),
        )
        self.stats = Stats()
        self.clients: list[Client] = [
            IdempotentProducer(f"idem{i}", random.Random(self.rng.random())) for i in range(2)
        ] + [TransactionalProducer(f"txn{i}", random.Random(self.rng.random())) for i in range(2)]
        self.inflight: dict[int, InFlight] = {}  # one per client (by index)
        self.laters: list[Later] = []
        self.orphans: list[InFlight] = []  # requests whose client is gone, still in progress
        self.correlation_id = 0
        self.broker = self._boot(first=True)
        self.checker = Checker(self)

    # ----------------------------------------------------------------- the broker's life
    def clock(self) -> int:
        return self.now_ms

    def _boot(self, first: bool = False) -> Broker:
        self.disk.reboot()
        config = BrokerConfig(transaction_max_timeout_ms=60_000)
        broker = Broker(config, self.disk, DATA_DIR, self.clock, Endpoint("sim", 9092))
        broker.open()
        if first:
            for topic, partitions in TOPICS.items():
                broker.topics.create(topic, partitions, {}, self.now_ms)
        self.laters = broker.take_background()
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
        self.laters.clear()
        self.orphans.clear()

    # ----------------------------------------------------------------- requests
    def send(self, index: int) -> None:
        client = self.clients[index]
        call = client.next_call(self.now_ms)
        if call is None:
            return
        self.correlation_id += 1
        schema = codec.request_type(call.api_key, call.version)
        if schema is None:
            raise RuntimeError(f"no schema for {call}")
        frame = codec.encode_request(self.correlation_id, client.name, build(schema, call.body))
        outcome = self.broker.handle_frame(frame[4:])
        self.stats.requests += 1
        self.laters.extend(self.broker.take_background())
        inflight = InFlight(client, call)
        if isinstance(outcome, Reply):
            inflight.response, inflight.done = outcome.payload, True
        elif isinstance(outcome, AwaitDurable) and outcome.finish is not None:
            inflight.waits, inflight.finish = outcome.waits, outcome.finish
        elif isinstance(outcome, AwaitData):
            inflight.response, inflight.done = outcome.attempt(True), True
        elif isinstance(outcome, Close):
            client.on_lost()
            return
        else:
            raise RuntimeError(f"unexpected outcome {outcome!r} for {call}")
        self.inflight[index] = inflight

    def _durable(self, waits: list[Any]) -> bool:
        """Every wait is durable, or will never be (it fails)."""
        return all(_never(log, offset) or log.high_watermark >= offset for log, offset in waits)

    @staticmethod
    def _failed(waits: list[Any]) -> set[Any]:
        return {log for log, offset in waits if _never(log, offset)}

    def deliver(self) -> None:
        """Hand every finished response to its client (or lose it)."""
        for orphan in list(self.orphans):
            if orphan.finish is not None and self._durable(orphan.waits):
                result = orphan.finish(self._failed(orphan.waits))
                self.laters.extend(self.broker.take_background())
                if isinstance(result, Durable):
                    orphan.waits, orphan.finish = result.waits, result.then
                else:
                    self.orphans.remove(orphan)
        for index, inflight in list(self.inflight.items()):
            if not inflight.done and inflight.finish is not None and self._durable(inflight.waits):
                result = inflight.finish(self._failed(inflight.waits))
                self.laters.extend(self.broker.take_background())
                if isinstance(result, Durable):
                    inflight.waits, inflight.finish = result.waits, result.then
                else:
                    inflight.response, inflight.done = result, True
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

    def sync_all(self) -> None:
        """One group-commit round: every log written since the last becomes durable."""
        self.stats.fsyncs += 1
        for log in self.broker.topics.logs():
            point = log.sync_point()
            try:
                point.run()
            except OSError as exc:
                self.stats.fsync_errors += 1
                log.fail_sync(point, str(exc))
                continue
            log.complete_sync(point)
        self._run_laters()

    def _run_laters(self) -> None:
        progress = True
        while progress:
            progress = False
            for later in list(self.laters):
                if self._durable(later.waits):
                    self.laters.remove(later)
                    following = later.then(self._failed(later.waits))
                    self.laters.extend(self.broker.take_background())
                    if following is not None:
                        self.laters.append(following)
                    progress = True

    def tick(self) -> None:
        self.now_ms += self.rng.randint(1, 1500)
        self.broker.txn.abort_timed_out()
        self.broker.groups.tick()
        self.laters.extend(self.broker.take_background())

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
        inflight = self.inflight.pop(index, None)
        if inflight is not None and not inflight.done:
            # The broker still finishes what the request started; only the answer is lost.
            self.orphans.append(inflight)
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
        for _ in range(400):
            for index, client in enumerate(self.clients):
                busy = isinstance(client, TransactionalProducer) and client.stage not in (
                    "done",
                    "idle",
                )
                current = isinstance(client, IdempotentProducer) and client.current is not None
                if index not in self.inflight and (busy or current):
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
        self.laters.extend(self.broker.take_background())
        for _ in range(5):
            self.sync_all()

    def anomalies(self) -> list[Anomaly]:
        found = list(self.checker.anomalies)
        for client in self.clients:
            found.extend(client.anomalies)
        return found


def _never(log: Any, offset: int) -> bool:
    """A wait that can never be met: the log is offline, or the write was refused and undone
    (the GroupCommit's rule)."""
    return log.offline is not None or offset > log.log_end_offset


def run(seed: int, steps: int, odds: Odds | None = None) -> World:
    world = World(seed, odds)
    for _ in range(steps):
        world.step()
    world.quiesce()
    world.checker.final()
    world.stats.write_errors = world.disk.injected["write_error"]
    return world
