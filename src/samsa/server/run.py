"""Starting and stopping a broker: bind, load the data dir, serve until told to stop."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import time
from collections.abc import Callable

from samsa.broker.core import Broker, Endpoint
from samsa.config import BrokerConfig, advertised_address
from samsa.log.storage import OsStorage
from samsa.server.descriptors import log_files_max
from samsa.server.server import BrokerServer

LISTEN_BACKLOG = 1024
# Where the hard open-files limit is "unlimited": Linux's default ceiling (fs.nr_open).
OPEN_FILES_CEILING = 1 << 20

log = logging.getLogger("samsa.server")


def raise_open_files_limit() -> None:
    """Raise this process's soft open-files limit to its hard limit, as the JVM does for Kafka
    (-XX:+MaxFDLimit, on by default): a login shell's soft 1,024 would otherwise cap
    connections and segment files long before the system's. `samsa serve` calls it; an
    embedded broker leaves its host process's limits alone."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = OPEN_FILES_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("open-files limit stays %d: raising it to %d failed: %s", soft, target, exc)
        return
    log.info("open-files limit raised from %d to %d (the hard limit)", soft, target)


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
            config,
            OsStorage(log_files_max(config.log_open_files_max)),
            data_dir,
            wall_clock_ms,
            Endpoint(advertised_host, advertised_port),
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
