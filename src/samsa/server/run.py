"""Starting and stopping a broker: bind, load the data dir, serve until told to stop."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

from samsa.broker.core import Broker, Endpoint
from samsa.config import BrokerConfig, advertised_address
from samsa.log.storage import OsStorage
from samsa.server.server import BrokerServer

LISTEN_BACKLOG = 1024


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


async def serve(
    data_dir: str,
    host: str,
    port: int,
    config: BrokerConfig,
    stop: asyncio.Event,
    ready: Callable[[BrokerServer], None] | None = None,
) -> None:
    """Run a broker until `stop` is set; `ready` is called once it accepts connections."""
    sock = bind(host, port)
    try:
        advertised_host, advertised_port = advertised_address(config, host, sock.getsockname()[1])
        broker = Broker(
            config, OsStorage(), data_dir, wall_clock_ms, Endpoint(advertised_host, advertised_port)
        )
        broker.open()
    except BaseException:
        sock.close()
        raise
    server = BrokerServer(broker, sock)
    await server.start()
    try:
        if ready is not None:
            ready(server)
        await stop.wait()
    finally:
        await server.stop()
