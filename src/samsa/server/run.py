"""Starting and stopping a broker: bind, load the data dir, serve until told to stop."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import time
from collections.abc import Callable

from samsa.broker.core import Broker, Endpoint
from samsa.config import DEFAULTS, SENSITIVE, BrokerConfig, broker_settings
from samsa.log.storage import OsStorage
from samsa.security import listeners, tls
from samsa.server.descriptors import log_files_max
from samsa.server.listener import Bound
from samsa.server.metrics import Exporter
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


class StartError(Exception):
    """The broker cannot start: an address it cannot listen on (in use, not this machine's,
    not resolvable) or a data dir it cannot use (a file, read-only). The message names it."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def log_settings(config: BrokerConfig) -> None:
    """One line: the settings that differ from the defaults (passwords hidden)."""
    defaults = broker_settings(DEFAULTS)
    changed = [
        f"{name}={'[hidden]' if name in SENSITIVE else value}"
        for name, value in broker_settings(config).items()
        if value != defaults.get(name)
    ]
    log.info("settings differing from the defaults: %s", ", ".join(changed) or "none")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
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
    """Run a broker until `stop` is set; `ready` is called once it accepts connections.
    `host` and `port` are where it listens without `listeners` in `config`."""
    specs = listeners.listener_specs(config, host, port)
    context = tls.server_context(config) if any(s.protocol.tls for s in specs) else None
    bound: list[Bound] = []
    exporter: Exporter | None = None
    try:
        if config.prometheus_listener:
            exporter = Exporter(config.prometheus_listener)
        for spec in specs:
            tls_context = context if spec.protocol.tls else None
            host_to_bind = spec.host or "0.0.0.0"
            try:
                sock = bind(host_to_bind, spec.port)
            except OSError as exc:
                raise StartError(
                    f"cannot listen on {host_to_bind}:{spec.port} ({spec.name}): {_reason(exc)}"
                ) from exc
            bound.append(Bound(sock, spec, tls_context))
        endpoints = {
            one.spec.name: Endpoint(
                *listeners.advertised(config, one.spec, one.sock.getsockname()[1])
            )
            for one in bound
        }
        try:
            broker = Broker(
                config,
                OsStorage(log_files_max(config.log_open_files_max)),
                data_dir,
                wall_clock_ms,
                endpoints[specs[0].name],
            )
            broker.endpoints = endpoints
            broker.open()
            # Once it can start: a broker refused (port in use, data dir unusable) says one line.
            log_settings(config)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise StartError(f"cannot use data dir {data_dir}: {_reason(exc)}{where}") from exc
    except BaseException:
        for one in bound:
            one.sock.close()
        if exporter is not None:
            exporter.close()
        raise
    server = BrokerServer(broker, bound, exporter)
    await server.start()
    try:
        if ready is not None:
            ready(server)
        await stop.wait()
    finally:
        await server.stop()
