"""The gateway's HTTP server: waitress, with a limit on everything a client can make it hold.

Whoever reaches the gateway's port is untrusted. The standard library's `http.server`, which
served the gateway before, documents itself as not for production, and was not: one thread per
connection without bound or timeout (400 half-sent requests held 400 threads for good), and a
Content-Length taken on trust (a negative one read the body until EOF, 31 -> 232 MB of RSS).

waitress (the Pylons project's production WSGI server, pure Python) reads and parses HTTP in one
event-loop thread and hands a request to a fixed pool of worker threads only once all of it has
arrived. So:

- a request's line and headers are at most `HEADER_BYTES_MAX`, its body (declared or chunked)
  at most `BODY_BYTES_MAX`; a Content-Length that is not digits is refused (400), one over the
  limit is refused before its body is read (413);
- a slow or half-sent request costs a buffer, never a thread; a connection with no bytes in or
  out for `idle_timeout_s` is closed, a half-sent request included;
- threads are `threads` workers plus the event loop; connections at most `connections_max`
  (past it, new ones wait in the listen backlog).

Every refusal is a JSON error in the gateway's shape, `{"error": {"type", "code", "message"}}`,
waitress's own included: its answers to malformed HTTP go through `_JsonErrorTask`.
"""

from __future__ import annotations

import json
import resource
import threading
from http import HTTPStatus
from typing import Any, cast
from wsgiref.types import WSGIApplication

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

BODY_BYTES_MAX = 64 * 1024
HEADER_BYTES_MAX = 16 * 1024  # the request line and all headers
THREADS_DEFAULT = 8
CONNECTIONS_MAX_DEFAULT = 1000
IDLE_TIMEOUT_S_DEFAULT = 60
# How often idle connections are looked for; waitress's own default (30 s) would let a
# connection outlive a short idle timeout by up to that much.
CLEANUP_INTERVAL_S = 1
# The most the event loop waits in poll(); `stop` wakes it sooner.
LOOP_WAIT_S = 1.0
# waitress's connection_limit counts every socket of its event loop: the clients' and its own
# two, the listening socket and the pipe that wakes the loop.
_LOOP_OWN_SOCKETS = 2

# waitress's own refusals, by status: the gateway's error type and code, and a message where
# waitress's would name its settings rather than the limit.
_REFUSALS: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_request_error", "bad_request", None),
    413: ("invalid_request_error", "too_large", f"the body is over {BODY_BYTES_MAX} bytes"),
    431: (
        "invalid_request_error",
        "headers_too_large",
        f"the request line and headers are over {HEADER_BYTES_MAX} bytes",
    ),
    500: ("api_error", "internal", "internal error"),
    501: ("invalid_request_error", "not_implemented", None),
}


def error_body(kind: str, code: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "code": code, "message": message}}


def status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


def connections_max_default() -> int:
    """`CONNECTIONS_MAX_DEFAULT`, or half the open-files limit if that is less: waitress logs
    a traceback for every accept() that fails for want of a descriptor, and the rest of the
    process (database, an embedded broker) needs descriptors too."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return CONNECTIONS_MAX_DEFAULT
    return max(1, min(CONNECTIONS_MAX_DEFAULT, soft // 2))


class Unanswered(ClientDisconnected):
    """Raised by the application to close the connection without answering (the gateway's
    injected timeout after charging). waitress closes a connection, sending nothing more, when
    a task raises ClientDisconnected, its own signal that the client has gone."""


class _JsonErrorTask(ErrorTask):
    """waitress's answer to a request it refuses before the application sees it (malformed
    HTTP, an invalid or too large Content-Length, headers or body over the limits, an unknown
    Transfer-Encoding) or to an exception the application let through: waitress writes these as
    plain text; the gateway's clients expect its JSON error."""

    def execute(self) -> None:
        # The stubs call it an Error; waitress passes the request's parser, which holds it.
        error = cast(HTTPRequestParser, self.request).error
        status = error.code if error is not None else 500
        kind, code, message = _REFUSALS.get(status, ("invalid_request_error", "bad_request", None))
        detail = message or (error.body if error is not None else "bad request")
        data = json.dumps(error_body(kind, code, detail), sort_keys=True).encode()
        self.status = status_line(status)
        self.response_headers = [("Content-Type", "application/json")]
        self.set_close_on_finish()  # the rest of the stream cannot be trusted to be framed
        self.content_length = len(data)
        self.write(data)


class _Parser(HTTPRequestParser):
    def parse_header(self, header_plus: bytes) -> None:
        try:
            super().parse_header(header_plus)
        except ValueError as exc:
            # waitress checks a Content-Length is digits, then int() refuses one of more than
            # 4,300 digits (Python's int_max_str_digits); uncaught, waitress closed the
            # connection without an answer and logged a traceback.
            raise ParsingError("Content-Length is invalid") from exc


class _Channel(HTTPChannel):
    error_task_class = _JsonErrorTask
    parser_class = _Parser


class _WsgiServer(TcpWSGIServer):
    channel_class = _Channel


class HttpServer:
    """`app` served on `host:port` until `stop`; bound and listening from construction."""

    def __init__(
        self,
        app: WSGIApplication,
        *,
        host: str,
        port: int,
        threads: int = THREADS_DEFAULT,
        connections_max: int | None = None,
        idle_timeout_s: int = IDLE_TIMEOUT_S_DEFAULT,
    ) -> None:
        if threads < 1 or idle_timeout_s < 1:
            raise ValueError(
                f"threads and idle_timeout_s must be at least 1, got {threads}, {idle_timeout_s}"
            )
        self.threads = threads
        self.connections_max = (
            connections_max if connections_max is not None else connections_max_default()
        )
        adjustments = Adjustments(
            host=host,
            port=port,
            threads=threads,
            connection_limit=self.connections_max + _LOOP_OWN_SOCKETS,
            channel_timeout=idle_timeout_s,
            cleanup_interval=CLEANUP_INTERVAL_S,
            max_request_header_size=HEADER_BYTES_MAX,
            # waitress refuses a body of max_request_body_size bytes or more; the gateway
            # takes one of BODY_BYTES_MAX.
            max_request_body_size=BODY_BYTES_MAX + 1,
            # select() fails outright on descriptors above 1023: poll() has no such limit.
            asyncore_use_poll=True,
        )
        self._map: dict[int, Any] = {}
        self._dispatcher = ThreadedTaskDispatcher()
        self._server = _WsgiServer(app, map=self._map, dispatcher=self._dispatcher, adj=adjustments)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.getsockname()
        return host, int(port)

    def start(self) -> None:
        self._dispatcher.set_thread_count(self.threads)
        self._thread = threading.Thread(target=self._loop, name="samsa-gateway", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._server.pull_trigger()  # wakes the loop; its sockets stay open until below
            self._thread.join()
            self._thread = None
        self._dispatcher.shutdown()  # lets requests under way finish (5 s at most)
        # Only now, with the loop gone: closing a socket the loop is polling, or the pipe that
        # `pull_trigger` writes to, races with it.
        wasyncore.close_all(self._map)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            wasyncore.loop(LOOP_WAIT_S, use_poll=True, map=self._map, count=1)
