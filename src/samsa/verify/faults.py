"""The nemesis: seeded faults against the broker, the network and the clients, each recorded in
the history as a `fault` operation.

Fault kinds:
- `kill`: kill -9 the broker process, restart it on the same port and data dir;
- `pause`: SIGSTOP the broker for a moment, then SIGCONT;
- `client-crash`: abandon a transactional producer or copier mid-transaction and start a
  successor with the same transactional.id;
- `lost-ack`: the proxy forwards the next few requests of one api and swallows their responses;
- `cut`: the proxy cuts connections (before or after forwarding a request, or all at once);
- `delay`: the proxy holds back the next responses;
- `blackhole`: the proxy swallows all traffic for a moment (a network partition).

Every round injects each enabled kind once, in a seeded order, so a short run sees them all.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Literal

from samsa.chaos import EmbeddedChaosProxy
from samsa.protocol.apis import ApiKey
from samsa.testing.process import START_TIMEOUT_S, BrokerProcess
from samsa.verify.history import FAILED, OK, History

KILL = "kill"
PAUSE = "pause"
CLIENT_CRASH = "client-crash"
LOST_ACK = "lost-ack"
CUT = "cut"
DELAY = "delay"
BLACKHOLE = "blackhole"
BROKER_FAULTS = (KILL, PAUSE)
PROXY_FAULTS = (LOST_ACK, CUT, DELAY, BLACKHOLE)
ALL_FAULTS = (*BROKER_FAULTS, CLIENT_CRASH, *PROXY_FAULTS)

# Requests whose lost response or cut connection leaves the client unsure what happened.
TARGET_APIS = (
    ApiKey.PRODUCE,
    ApiKey.END_TXN,
    ApiKey.ADD_PARTITIONS_TO_TXN,
    ApiKey.ADD_OFFSETS_TO_TXN,
    ApiKey.TXN_OFFSET_COMMIT,
    ApiKey.INIT_PRODUCER_ID,
    ApiKey.FETCH,
    ApiKey.OFFSET_COMMIT,
    ApiKey.FIND_COORDINATOR,
)


class Nemesis(threading.Thread):
    def __init__(
        self,
        history: History,
        seed: int,
        kinds: Sequence[str],
        interval_s: float,
        proxy: EmbeddedChaosProxy | None,
        broker: BrokerProcess | None,
        crash_client: Callable[[random.Random], str | None],
        apis: Sequence[int] | None = None,
    ) -> None:
        super().__init__(name="verify-nemesis", daemon=True)
        unknown = set(kinds) - set(ALL_FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {ALL_FAULTS}")
        if proxy is None and set(kinds) & set(PROXY_FAULTS):
            raise ValueError("proxy faults need the chaos proxy")
        if broker is None and set(kinds) & set(BROKER_FAULTS):
            raise ValueError("broker faults need a broker process")
        self.history = history
        self.rng = random.Random(f"{seed}/nemesis")
        self.kinds = list(kinds)
        self.interval_s = interval_s
        self.proxy = proxy
        self.broker = broker
        self.crash_client = crash_client
        self.apis = [ApiKey(api) for api in apis or TARGET_APIS]
        self.stopping = threading.Event()
        self.counts: Counter[str] = Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                order = list(self.kinds)
                self.rng.shuffle(order)
                for kind in order:
                    if self.stopping.wait(self.rng.uniform(0.5, 1.5) * self.interval_s):
                        return
                    self.inject(kind)
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            self.heal()

    def inject(self, kind: str) -> None:
        start = self.history.now()
        rng = self.rng
        detail: str | None
        if kind == KILL:
            assert self.broker is not None
            self.broker.kill9()
            self.stopping.wait(rng.uniform(0.0, 1.0))
            self.broker.start()
            detail = "kill -9, restarted"
        elif kind == PAUSE:
            assert self.broker is not None
            seconds = rng.uniform(0.5, 3.0)
            self.broker.pause()
            self.stopping.wait(seconds)
            self.broker.resume()
            detail = f"SIGSTOP for {seconds:.1f} s"
        elif kind == CLIENT_CRASH:
            detail = self.crash_client(rng)
        else:
            detail = self._proxy_fault(kind, rng)
        if detail is None:
            self.history.record(
                "fault", "nemesis", FAILED, start, action=kind, detail="nothing to do"
            )
            return
        self.counts[kind] += 1
        self.history.record("fault", "nemesis", OK, start, action=kind, detail=detail)

    def _proxy_fault(self, kind: str, rng: random.Random) -> str:
        proxy = self.proxy
        assert proxy is not None
        api = rng.choice(self.apis)
        count = rng.randint(1, 3)
        if kind == LOST_ACK:
            proxy.drop_next_response(api_key=api, count=count)
            return f"drop the responses to the next {count} {api.name} requests"
        if kind == CUT:
            choice = rng.random()
            if choice < 0.3:
                return f"cut all {proxy.cut_all()} connections"
            when: Literal["before", "after"] = "before" if choice < 0.65 else "after"
            proxy.cut_next_request(api_key=api, count=count, when=when)
            return f"cut the next {count} {api.name} requests, {when} forwarding"
        if kind == DELAY:
            ms = rng.randint(50, 1500)
            count = rng.randint(1, 20)
            proxy.delay(ms, api_key=None, count=count)
            return f"delay the next {count} responses by {ms} ms"
        if kind == BLACKHOLE:
            seconds = rng.uniform(0.5, 2.5)
            proxy.blackhole(seconds)
            self.stopping.wait(seconds)
            return f"black-hole all traffic for {seconds:.1f} s"
        raise ValueError(f"not a proxy fault: {kind}")

    def heal(self) -> None:
        """End every fault: a stopped broker continues, a dead one restarts, the proxy
        forgets its pending rules."""
        if self.proxy is not None:
            self.proxy.clear()
        broker = self.broker
        if broker is not None:
            broker.resume()
            if broker.process is None or broker.process.poll() is not None:
                broker.start()

    def stop(self) -> None:
        self.stopping.set()
        self.join(START_TIMEOUT_S + 10)
        if self.error is not None:
            raise RuntimeError(f"the nemesis failed: {self.error!r}") from self.error
