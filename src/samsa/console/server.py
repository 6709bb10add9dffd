"""The console as a running HTTP server: uvicorn serving the app, the poller, the cluster.

    with ConsoleServer(ConsoleSettings(bootstrap="127.0.0.1:9092", port=0)) as console:
        print(console.url)

`ConsoleServer.start` runs uvicorn on a thread (tests, the demos); `serve_forever` runs it on
the calling thread until Ctrl-C (`samsa console`).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType

import uvicorn

from samsa.admin.security import ClientSecurity
from samsa.chaos.embedded import BROKER_STARTED
from samsa.console.app import Console, create_app
from samsa.console.cluster import Cluster, RequestBudget
from samsa.console.live import Pages, Poller

START_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    bootstrap: str
    host: str = "127.0.0.1"
    port: int = 8080
    poll_interval_s: float = 1.0
    requests_per_s: float = 5.0
    allow_writes: bool = False
    security: ClientSecurity = field(default_factory=ClientSecurity)


class ConsoleServer:
    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.cluster = Cluster(
            settings.bootstrap, settings.security, RequestBudget(settings.requests_per_s)
        )
        self.poller = Poller(self.cluster, settings.poll_interval_s)
        self.pages = Pages(self.poller)
        app = create_app(Console(self.cluster, self.poller, self.pages, settings.allow_writes))
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                # open event streams would hold a graceful shutdown forever
                timeout_graceful_shutdown=1,
                lifespan="off",
            )
        )
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((settings.host, settings.port))
        # Listening from here on: a browser that comes before uvicorn runs waits in the backlog.
        self._sock.listen(128)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}/"

    def retarget(self, bootstrap: str) -> None:
        """Watch another cluster from now on (the demos start a new broker per scenario)."""
        self.cluster.retarget(bootstrap)
        self.pages.forget()

    def start(self) -> ConsoleServer:
        self.poller.start()
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name="samsa-console-http",
            daemon=True,
        )
        self._thread.start()
        started = threading.Event()
        while not started.wait(0.02):
            if self._server.started:
                break
            if not self._thread.is_alive():
                raise RuntimeError("the console's HTTP server did not start")
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until Ctrl-C (uvicorn's signal handling), then stop."""
        self.poller.start()
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self.poller.stop()
            self.cluster.close()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_S)
        self.poller.stop()
        self.cluster.close()
        self._sock.close()

    def __enter__(self) -> ConsoleServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def following_demos(port: int, host: str = "127.0.0.1") -> Iterator[ConsoleServer]:
    """A console that watches each broker a demo starts (`samsa demo ... --console`)."""
    server = ConsoleServer(ConsoleSettings(bootstrap="", host=host, port=port)).start()
    BROKER_STARTED.append(server.retarget)
    try:
        yield server
    finally:
        BROKER_STARTED.remove(server.retarget)
        server.stop()
