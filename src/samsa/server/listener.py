"""Accepting connections within limits: `max.connections`, `max.connections.per.ip`, and the
process's file descriptors.

samsa runs its own accept loop (asyncio's logs a traceback for every accept() that fails with
EMFILE and retries up to 100 times per wake-up: thousands of tracebacks when fds run out).

- Over `max.connections` or `max.connections.per.ip` (with its overrides), a new connection is
  closed at once, counted, and logged at most once per interval. (Kafka closes one over its
  per-IP limit at once too, but makes one over `max.connections` wait in the listen backlog; a
  client closed at once retries after its reconnect backoff instead of hanging in connect.)
- File descriptors: connections may use their share of the open-files limit
  (`samsa.server.descriptors`: what log files and the broker's other files leave). A new
  connection over that closes the connection that has been idle longest (nothing in
  flight, quiet for `EVICTABLE_IDLE_S`) to make room, as nginx reuses idle keep-alive
  connections; with none idle, the new one is closed at once.
- accept() failing for want of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM: the broker's own
  files used more than the reserve, or the limit was lowered) pauses accepting briefly, frees a
  descriptor the same way, and is logged at most once per interval; established connections
  keep being served meanwhile.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from samsa.config import BrokerConfig, connection_overrides, normalised_ip
from samsa.ratelog import RateLimitedLog
from samsa.security.listeners import ListenerSpec, SecurityProtocol
from samsa.server.connection import Connection
from samsa.server.descriptors import connection_fds_max, log_files_max

log = logging.getLogger("samsa.server")

RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPTS_PER_WAKEUP = 128
ACCEPT_PAUSE_S = 0.1  # after accept() ran out of resources with nothing to free
EVICT_PAUSE_S = 0.005  # after closing an idle connection: its descriptor is free next turn
EVICTABLE_IDLE_S = 1.0


class ConnectionQuotas:
    """Open connections, in all and per client IP address, against their limits."""

    def __init__(self, config: BrokerConfig) -> None:
        self.connections_max = config.max_connections
        self.per_ip_max = config.max_connections_per_ip
        self.overrides = connection_overrides(config)
        self.total = 0
        self.by_ip: dict[str, int] = {}

    def admit(self, ip: str) -> str | None:
        """Count a new connection from `ip`, or say why it is refused."""
        if self.total >= self.connections_max:
            return f"max.connections={self.connections_max} reached"
        limit = self.overrides.get(ip, self.per_ip_max)
        if self.by_ip.get(ip, 0) >= limit:
            return f"max.connections.per.ip={limit} reached for this address"
        self.total += 1
        self.by_ip[ip] = self.by_ip.get(ip, 0) + 1
        return None

    def release(self, ip: str) -> None:
        count = self.by_ip.get(ip, 0) - 1
        if count > 0:
            self.by_ip[ip] = count
        else:
            self.by_ip.pop(ip, None)
        self.total -= 1


@dataclass(frozen=True, slots=True)
class Bound:
    """A listener's socket, bound and listening, with what its connections need."""

    sock: socket.socket
    spec: ListenerSpec
    ssl_context: ssl.SSLContext | None = None


def plaintext(sock: socket.socket) -> Bound:
    host, port = sock.getsockname()[:2]
    return Bound(sock, ListenerSpec("PLAINTEXT", SecurityProtocol.PLAINTEXT, host, port))


class Listener:
    def __init__(
        self,
        bound: Bound,
        config: BrokerConfig,
        connections: set[Connection],
        new_connection: Callable[[str], Connection],
        limited: RateLimitedLog,
        quotas: ConnectionQuotas | None = None,
    ) -> None:
        self.bound = bound
        self._sock = bound.sock
        self.quotas = quotas or ConnectionQuotas(config)
        self._connections = connections
        self._new_connection = new_connection
        self._limited = limited
        self._log_files = log_files_max(config.log_open_files_max)
        self.fds_max = connection_fds_max(self._log_files)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resume: asyncio.TimerHandle | None = None
        self._starting: set[asyncio.Task[object]] = set()
        self._evicting: set[Connection] = set()  # aborted to free a descriptor, not closed yet
        # What tests and operators look at.
        self.refused = 0  # closed at once: over a limit
        self.accept_failures = 0  # accept() out of resources
        self.evicted = 0  # idle connections closed to free a descriptor

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock.setblocking(False)
        self._loop.add_reader(self._sock.fileno(), self._accept)

    def stop(self) -> None:
        """Stop accepting and close the listening socket."""
        if self._loop is not None and self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
        if self._resume is not None:
            self._resume.cancel()
        for task in self._starting:
            task.cancel()
        self._sock.close()

    def closed(self, connection: Connection) -> None:
        self.quotas.release(connection.ip)
        self._evicting.discard(connection)

    # ----------------------------------------------------------------- accepting
    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, address = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in RESOURCE_ERRNOS:
                    self._out_of_resources(exc)
                else:
                    self._limited.error("accept() failed: %s", exc)
                return
            self._admit(sock, normalised_ip(str(address[0])))

    def _admit(self, sock: socket.socket, ip: str) -> None:
        reason = self.quotas.admit(ip)
        if reason is None:
            over = self.quotas.total - len(self._evicting) - self.fds_max
            # One idle connection makes room for this one; a second while still over, so a
            # limit that dropped (or a reserve eaten into) is met again.
            evicted = sum(self._evict_idle() for _ in range(min(over, 2)))
            if over > 0 and not evicted:
                self.quotas.release(ip)
                reason = f"no file descriptor to spare ({self.fds_max} for connections, none idle)"
        if reason is not None:
            self.refused += 1
            self._limited.warning("refused a connection from %s: %s", ip, reason)
            sock.close()
            return
        loop = self._loop
        if loop is None:  # not started: cannot happen once `start` ran
            self.quotas.release(ip)
            sock.close()
            return
        sock.setblocking(False)
        connection = self._new_connection(ip)
        task: asyncio.Task[object] = loop.create_task(
            loop.connect_accepted_socket(lambda: connection, sock, ssl=self.bound.ssl_context)
        )
        self._starting.add(task)
        task.add_done_callback(lambda done: self._started(done, connection, sock))

    def _started(
        self, task: asyncio.Task[object], connection: Connection, sock: socket.socket
    ) -> None:
        self._starting.discard(task)
        if task.cancelled() or task.exception() is not None:
            # connection_made never ran: nothing else will give the slot back.
            if not connection.opened:
                self.quotas.release(connection.ip)
                sock.close()
            if not task.cancelled():
                self._limited.warning("setting up a connection failed: %s", task.exception())

    def _out_of_resources(self, exc: OSError) -> None:
        """accept() failed for want of descriptors or memory: pause, free a descriptor."""
        self.accept_failures += 1
        self.fds_max = connection_fds_max(self._log_files)  # the limit may have changed (prlimit)
        evicted = self._evict_idle()
        pause_s = EVICT_PAUSE_S if evicted else ACCEPT_PAUSE_S
        self._limited.warning(
            "accept() failed: %s; %s; accepting again in %g ms",
            exc.strerror or exc,
            "closed the longest-idle connection" if evicted else "no idle connection to close",
            pause_s * 1000,
        )
        loop = self._loop
        if loop is None:
            return
        loop.remove_reader(self._sock.fileno())
        self._resume = loop.call_later(pause_s, self._accept_again)

    def _accept_again(self) -> None:
        self._resume = None
        if self._loop is not None and self._sock.fileno() >= 0:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def _evict_idle(self) -> bool:
        """Close the connection idle longest, if one is idle enough; True if one was."""
        if self._loop is None:
            return False
        quiet_since = self._loop.time() - EVICTABLE_IDLE_S
        victim: Connection | None = None
        for connection in self._connections:
            if connection.closing or connection.busy or connection.last_active > quiet_since:
                continue
            if victim is None or connection.last_active < victim.last_active:
                victim = connection
        if victim is None:
            return False
        self.evicted += 1
        self._evicting.add(victim)
        self._limited.warning(
            "closed the connection from %s (idle %.0f s) to free a file descriptor",
            victim.ip,
            self._loop.time() - victim.last_active,
        )
        victim.abort()
        return True
