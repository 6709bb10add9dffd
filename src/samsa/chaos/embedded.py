"""A chaos proxy on its own thread and event loop, driven from synchronous code (tests).

with proxied_broker() as (broker, proxy):
    producer = confluent_kafka.Producer({"bootstrap.servers": proxy.bootstrap})
    proxy.drop_next_response(api_key=ApiKey.PRODUCE)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Literal, TypeVar

from samsa.chaos.faults import FaultEvent
from samsa.chaos.proxy import Address, ChaosProxy
from samsa.chaos.schedule import Schedule
from samsa.chaos.stats import FaultStats
from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.loop_thread import LoopThread

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
CONTROL_TIMEOUT_S = 10.0

T = TypeVar("T")


class EmbeddedChaosProxy:
    """The `ChaosProxy` control methods, callable from any thread (each runs on the proxy's
    loop and returns once done)."""

    def __init__(
        self,
        upstream: Address | None = None,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        schedule: Schedule | None = None,
    ) -> None:
        self.proxy = ChaosProxy(upstream, listen_host, listen_port, schedule)
        self._thread = LoopThread("samsa-chaos", START_TIMEOUT_S, STOP_TIMEOUT_S)

    # -- lifecycle

    def start(self) -> EmbeddedChaosProxy:
        async def run(ready: Callable[[], None], stop: asyncio.Event) -> None:
            await self.proxy.start()
            try:
                ready()
                await stop.wait()
            finally:
                await self.proxy.stop()

        self._thread.start(run)
        return self

    def stop(self) -> None:
        self._thread.stop()

    def __enter__(self) -> EmbeddedChaosProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, function: Callable[[], T]) -> T:
        return self._thread.call(function, CONTROL_TIMEOUT_S)

    # -- addresses

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def bootstrap(self) -> str:
        return self.proxy.bootstrap

    @property
    def upstream(self) -> Address | None:
        return self.proxy.upstream

    @upstream.setter
    def upstream(self, address: Address | None) -> None:
        def assign() -> None:
            self.proxy.upstream = address

        self._call(assign)

    # -- control

    def drop_next_response(self, api_key: int | None = None, count: int | None = 1) -> None:
        self._call(lambda: self.proxy.drop_next_response(api_key, count))

    def cut_next_request(
        self,
        api_key: int | None = None,
        count: int | None = 1,
        when: Literal["before", "after"] = "before",
    ) -> None:
        self._call(lambda: self.proxy.cut_next_request(api_key, count, when))

    def delay(self, ms: int, api_key: int | None = None, count: int | None = None) -> None:
        self._call(lambda: self.proxy.delay(ms, api_key, count))

    def blackhole(self, seconds: float, *, forward_requests: bool = False) -> None:
        self._call(lambda: self.proxy.blackhole(seconds, forward_requests=forward_requests))

    def cut_all(self) -> int:
        return self._call(self.proxy.cut_all)

    def clear(self) -> None:
        self._call(self.proxy.clear)

    def set_schedule(self, schedule: Schedule | None) -> None:
        self._call(lambda: self.proxy.set_schedule(schedule))

    def stats(self) -> FaultStats:
        return self._call(self.proxy.stats)

    def fault_log(self) -> list[FaultEvent]:
        return self._call(self.proxy.fault_log)

    @property
    def connections(self) -> int:
        return self._call(lambda: self.proxy.connections)


# Called with each proxied broker's own address once it runs: `samsa demo ... --console` points
# its console there (past the proxy, whose faults are for the demo's clients).
BROKER_STARTED: list[Callable[[str], None]] = []


@contextmanager
def proxied_broker(
    data_dir: str | None = None,
    settings: Mapping[str, str] | None = None,
    schedule: Schedule | None = None,
) -> Iterator[tuple[EmbeddedBroker, EmbeddedChaosProxy]]:
    """An embedded broker behind a chaos proxy. Clients bootstrap from `proxy.bootstrap`; the
    broker advertises the proxy's address, so all their traffic goes through it."""
    with EmbeddedChaosProxy(schedule=schedule) as proxy:
        advertised = {"advertised.listeners": f"PLAINTEXT://{proxy.bootstrap}"}
        with EmbeddedBroker(data_dir, {**(settings or {}), **advertised}) as broker:
            proxy.upstream = (broker.host, broker.port)
            for listener in BROKER_STARTED:
                listener(broker.bootstrap)
            yield broker, proxy
