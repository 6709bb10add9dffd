"""A real samsa broker inside the calling process: its own thread and event loop, a free port,
and a temporary (or given) data dir.

    with embedded_broker() as broker:
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import TypeVar

from samsa import config as broker_config
from samsa.server.run import serve
from samsa.server.server import BrokerServer
from samsa.testing.loop_thread import LoopThread
from samsa.testing.security import ClientConfigs, Security, prepare
from samsa.testing.security import settings as security_settings

T = TypeVar("T")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


class EmbeddedBroker:
    def __init__(
        self,
        data_dir: str | None = None,
        settings: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        security: Security | None = None,
    ) -> None:
        """`security`: listeners, users and certificates (`samsa.testing.security`); once
        started, `clients` hands out each client's settings."""
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="samsa-")
        self.security = security
        self.certs_dir = ""
        files = None
        if security is not None:
            self.certs_dir = tempfile.mkdtemp(prefix="samsa-certs-")
            files = prepare(security, self.data_dir, self.certs_dir)
            settings = {**security_settings(security, files), **(settings or {})}
        self._files = files
        self.config = broker_config.load(dict(settings or {}))
        self.host = host
        self._port = port
        self.server: BrokerServer | None = None
        self._thread = LoopThread("samsa-broker", START_TIMEOUT_S, STOP_TIMEOUT_S)

    @property
    def port(self) -> int:
        if self.server is None:
            raise RuntimeError("the embedded broker is not running; call start() first")
        return self.server.port

    @property
    def bootstrap(self) -> str:
        """The first listener's address."""
        return f"{self.host}:{self.port}"

    @property
    def clients(self) -> ClientConfigs:
        """Client settings per user and listener (for a broker started with `security`)."""
        if self.server is None or self.security is None:
            raise RuntimeError("clients: start a broker made with security=Security(...)")
        return ClientConfigs(self.security, self.server.ports(), self._files, self.host)

    def start(self) -> EmbeddedBroker:
        async def run(ready: Callable[[], None], stop: asyncio.Event) -> None:
            def on_ready(server: BrokerServer) -> None:
                self.server = server
                self._port = server.port
                ready()

            await serve(self.data_dir, self.host, self._port, self.config, stop, on_ready)

        self._thread.start(run)
        return self

    def call(self, function: Callable[[], T], timeout_s: float = 10.0) -> T:
        """Run `function` on the broker's event loop and return its result: how a test reads
        server state (its connections, its counters) without racing the broker's thread."""
        return self._thread.call(function, timeout_s)

    def stop(self) -> None:
        """Clean shutdown: everything flushed and synced, then the thread ends."""
        self._thread.stop()
        self.server = None

    def restart(self) -> EmbeddedBroker:
        """Stop cleanly and start again on the same port and data dir."""
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.certs_dir:
            shutil.rmtree(self.certs_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextmanager
def embedded_broker(
    data_dir: str | None = None,
    settings: Mapping[str, str] | None = None,
    security: Security | None = None,
) -> Iterator[EmbeddedBroker]:
    """Start a broker in this process; yield it (its `bootstrap` is the address to use; with
    `security`, `clients` gives each client's settings)."""
    broker = EmbeddedBroker(data_dir, settings, security=security)
    with broker:
        yield broker
