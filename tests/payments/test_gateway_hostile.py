"""The payment gateway against hostile and broken clients, over real sockets: every bad request
gets a 4xx (501 for an unknown Transfer-Encoding, as RFC 9112 says) with a JSON error, nothing
is charged by it, and no client can make the gateway hold threads, memory or connections
without bound. The resource tests run the gateway as its own process
(`python -m samsa.payments.gateway`) to read its threads and memory from /proc."""

from __future__ import annotations

import http.client
import json
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from samsa.effects.db import SQLiteDatabase
from samsa.payments.gateway import Gateway, GatewayClient, GatewayUnreachable
from samsa.payments.gateway.serving import BODY_BYTES_MAX, HEADER_BYTES_MAX, THREADS_DEFAULT
from samsa.testing.memory import proc_status, reset_peak

PARAMS = {"amount": 5000, "currency": "usd", "card": "4242424242424242", "order_id": "ord_1"}
CHARGE = json.dumps(PARAMS).encode()
KIB = 1024
MIB = 1024 * KIB


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    with Gateway(SQLiteDatabase(str(tmp_path / "gw.db"))) as gateway:
        yield gateway


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def post(headers: str, body: bytes = b"") -> bytes:
    """A raw POST /v1/charges with `headers` (CRLF-separated lines) and `body` as given."""
    return f"POST /v1/charges HTTP/1.1\r\nHost: gw\r\n{headers}\r\n\r\n".encode() + body


def exchange(url: str, raw: bytes, *, end_input: bool = False) -> tuple[int, str, Any]:
    """Send `raw` on a new connection (then half-close it if `end_input`) and read one
    response: its status, Content-Type and JSON body."""
    with socket.create_connection(address(url), timeout=5.0) as sock:
        sock.sendall(raw)
        if end_input:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        return response.status, response.getheader("Content-Type", ""), json.loads(body)


def assert_error(answer: tuple[int, str, Any], status: int, code: str) -> None:
    got_status, content_type, body = answer
    assert (got_status, content_type) == (status, "application/json"), answer
    assert body["error"]["code"] == code, answer
    assert set(body["error"]) == {"type", "code", "message"}


# ----------------------------------------------------------------- Content-Length


def test_a_negative_content_length_is_400_and_charges_nothing(gateway: Gateway) -> None:
    # Before: read as "read until EOF", so this charged (and a large body grew RSS unbounded).
    answer = exchange(gateway.url, post("Content-Length: -1", CHARGE), end_input=True)
    assert_error(answer, 400, "bad_request")
    assert "Content-Length" in answer[2]["error"]["message"]
    assert GatewayClient(gateway.url).charges() == []


@pytest.mark.parametrize(
    "value",
    ["abc", "1e3", "+45", "0x2d", "45 45", "4" * 5000],
    ids=["letters", "exponent", "plus", "hex", "two-numbers", "5000-digits"],
)
def test_a_content_length_that_is_not_digits_is_400(gateway: Gateway, value: str) -> None:
    # Before: no answer at all (the handler died on int()). 5,000 digits pass waitress's
    # digits check and then fail Python's int() limit of 4,300: no answer either, unpatched.
    answer = exchange(gateway.url, post(f"Content-Length: {value}", CHARGE))
    assert_error(answer, 400, "bad_request")


def test_two_content_lengths_are_400(gateway: Gateway) -> None:
    # Request smuggling's classic: two framings of one body.
    answer = exchange(gateway.url, post("Content-Length: 45\r\nContent-Length: 4", CHARGE))
    assert_error(answer, 400, "bad_request")


# ----------------------------------------------------------------- body size


@pytest.mark.parametrize("declared", [BODY_BYTES_MAX + 1, 10**30])
def test_a_declared_body_over_the_limit_is_413_before_it_is_read(
    gateway: Gateway, declared: int
) -> None:
    answer = exchange(gateway.url, post(f"Content-Length: {declared}"))
    assert_error(answer, 413, "too_large")


def test_a_body_of_exactly_the_limit_is_taken(gateway: Gateway) -> None:
    body = CHARGE + b" " * (BODY_BYTES_MAX - len(CHARGE))
    status, _, charge = exchange(gateway.url, post(f"Content-Length: {len(body)}", body))
    assert (status, charge["amount"]) == (200, PARAMS["amount"])


def chunked(*chunks: bytes, last: bool = True) -> bytes:
    framed = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return framed + (b"0\r\n\r\n" if last else b"")


def test_a_chunked_body_is_taken(gateway: Gateway) -> None:
    # Before: the chunks were not read as the body (400), then parsed as a next request.
    body = chunked(CHARGE[:10], CHARGE[10:])
    status, _, charge = exchange(gateway.url, post("Transfer-Encoding: chunked", body))
    assert (status, charge["amount"]) == (200, PARAMS["amount"])


def test_a_chunked_body_over_the_limit_is_413(gateway: Gateway) -> None:
    # An undeclared size: the limit is found while reading. waitress counts the chunk framing,
    # so this stops exactly at the limit and leaves nothing unread (which would reset the
    # connection and lose the answer).
    framing = len(b"%x\r\n" % BODY_BYTES_MAX)
    data = b"x" * (BODY_BYTES_MAX + 1 - framing)
    raw = post("Transfer-Encoding: chunked", b"%x\r\n" % BODY_BYTES_MAX + data)
    assert_error(exchange(gateway.url, raw), 413, "too_large")


# ----------------------------------------------------------------- the body's content


@pytest.mark.parametrize("amount", [2**63, 2**64 + 1, 100_000_000, 10**4000])
def test_an_amount_over_the_maximum_is_400(gateway: Gateway, amount: int) -> None:
    # Before: 2**63 and above overflowed the database's BIGINT: 500.
    answer = GatewayClient(gateway.url).charge({**PARAMS, "amount": amount}, "pay_big")
    assert answer.status == 400
    assert answer.body["error"]["code"] == "parameter_invalid"
    assert "99999999" in answer.body["error"]["message"]
    assert GatewayClient(gateway.url).charges() == []


def test_the_maximum_amount_is_charged(gateway: Gateway) -> None:
    answer = GatewayClient(gateway.url).charge({**PARAMS, "amount": 99_999_999})
    assert (answer.status, answer.body["amount"]) == (200, 99_999_999)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"\xff\xfe\xfd", b"[" * 60_000, b'"a string"', b"[]", b"null", b""],
    ids=["text", "not-utf8", "nested-60000", "string", "array", "null", "empty"],
)
def test_a_body_that_is_not_a_json_object_is_400(gateway: Gateway, body: bytes) -> None:
    # Before: 60,000 nested arrays raised RecursionError in the handler: no answer.
    answer = exchange(gateway.url, post(f"Content-Length: {len(body)}", body))
    assert_error(answer, 400, "parameter_invalid")


# ----------------------------------------------------------------- malformed HTTP


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (b"\x00\x01\x02 / HTTP/1.1\r\n\r\n", 400, "bad_request"),
        (b"POST /v1/charges HTTP/1.1\r\nHost: gw\r\nBad Header\r\n\r\n", 400, "bad_request"),
        (b"POST /v1/charges HTTP/1.1\r\nHost: gw\nX: y\r\n\r\n", 400, "bad_request"),
        (post("X-Padding: " + "p" * HEADER_BYTES_MAX), 431, "headers_too_large"),
        (post("Transfer-Encoding: gzip"), 501, "not_implemented"),
    ],
    ids=["start-line", "binary", "header-without-colon", "bare-lf", "huge-header", "gzip-te"],
)
def test_malformed_http_gets_a_json_error(
    gateway: Gateway, raw: bytes, status: int, code: str
) -> None:
    # Before: http.server's own HTML error pages.
    assert_error(exchange(gateway.url, raw), status, code)


def test_unknown_paths_and_methods_get_json_errors(gateway: Gateway) -> None:
    assert_error(exchange(gateway.url, b"GET /nope HTTP/1.1\r\n\r\n"), 404, "not_found")
    raw = b"PUT /v1/charges HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    with socket.create_connection(address(gateway.url), timeout=5.0) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert (response.status, response.getheader("Allow")) == (405, "GET, POST")
        assert json.loads(response.read())["error"]["code"] == "method_not_allowed"


def test_a_bad_request_does_not_disturb_a_keep_alive_client(gateway: Gateway) -> None:
    client = GatewayClient(gateway.url)
    assert client.charge(PARAMS, "pay_1").status == 200
    assert_error(exchange(gateway.url, post("Content-Length: -1")), 400, "bad_request")
    assert client.charge(PARAMS, "pay_1").replayed
    assert len(client.charges()) == 1


# ----------------------------------------------------------------- timeouts and resources


def test_a_client_reconnects_after_the_gateway_closes_its_idle_connection(
    tmp_path: Path,
) -> None:
    with Gateway(SQLiteDatabase(str(tmp_path / "gw.db")), idle_timeout_s=1) as gateway:
        client = GatewayClient(gateway.url)
        assert client.charge(PARAMS, "pay_1").status == 200
        time.sleep(3.0)  # idle past the timeout and the next look for idle connections
        assert client.charge(PARAMS, "pay_1").replayed


@contextmanager
def gateway_process(tmp_path: Path, *flags: str) -> Iterator[tuple[str, int]]:
    """`python -m samsa.payments.gateway` on a free port: its URL and pid."""
    process = subprocess.Popen(
        [sys.executable, "-m", "samsa.payments.gateway", "--port", "0", "--db", "gw.db", *flags],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("gateway listening on "), line
        yield line.split()[-1], process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


HALF_SENT = 400


def half_sent_requests(url: str) -> list[socket.socket]:
    """HALF_SENT connections, each with half a request sent: half of them stop inside the
    headers, half inside the body."""
    halves = [b"POST /v1/charges HTTP/1.1\r\nHost: gw\r\nContent-Le", post("Content-Length: 45")]
    sockets = []
    for i in range(HALF_SENT):
        sock = socket.create_connection(address(url), timeout=5.0)
        sock.sendall(halves[i % 2] + (CHARGE[:20] if i % 2 else b""))
        sockets.append(sock)
    return sockets


def wait_until_closed(sockets: list[socket.socket], deadline_s: float) -> int:
    """Wait until the server has closed every socket (EOF or reset), or the deadline: how
    many it has not closed."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    open_count = len(sockets)
    end = time.monotonic() + deadline_s
    while open_count and time.monotonic() < end:
        for key, _ in selector.select(timeout=0.5):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            try:
                data = ready.recv(4096)
            except ConnectionResetError:
                data = b""
            assert data == b"", data  # nothing is answered to half a request
            selector.unregister(ready)
            open_count -= 1
    selector.close()
    return open_count


def test_half_sent_requests_hold_no_threads_and_are_dropped_after_the_timeout(
    tmp_path: Path,
) -> None:
    # Before: a thread per connection, held for good (400 threads, never closed).
    with gateway_process(tmp_path, "--idle-timeout-s", "2") as (url, pid):
        threads_before = proc_status(pid)["Threads"]
        sockets = half_sent_requests(url)
        try:
            client = GatewayClient(url)
            assert client.charge(PARAMS, "pay_during").status == 200
            threads = proc_status(pid)["Threads"]
            assert threads <= THREADS_DEFAULT + 4, f"{threads} threads (before: {threads_before})"
            assert wait_until_closed(sockets, deadline_s=15.0) == 0
            # It still serves (a new connection: the idle one above is being closed too).
            assert GatewayClient(url).charge(PARAMS, "pay_during").replayed
        finally:
            for sock in sockets:
                sock.close()


ATTACK_BYTES = 128 * MIB
# What the gateway process may grow by, at its peak, while it is sent 128 MiB bodies: a few
# bodies of BODY_BYTES_MAX and read buffers, with a wide margin. Before: a negative
# Content-Length read all 128 MiB (and joined them: twice that).
PEAK_GROWTH_MAX_KB = 32 * KIB


def flood(url: str, head: bytes, frame: bool = False) -> None:
    """Send `head`, then up to ATTACK_BYTES of body, as fast as the gateway takes it, stopping
    when it closes the connection; then read whatever it answered."""
    piece = b" " * (256 * KIB)
    if frame:
        piece = b"%x\r\n%s\r\n" % (len(piece), piece)
    with socket.create_connection(address(url), timeout=10.0) as sock:
        try:
            sock.sendall(head)
            for _ in range(ATTACK_BYTES // len(piece)):
                sock.sendall(piece)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(64 * KIB):
                pass
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused: the gateway closed the connection


def test_oversized_bodies_do_not_grow_memory(tmp_path: Path) -> None:
    with gateway_process(tmp_path) as (url, pid):
        assert GatewayClient(url).charge(PARAMS).status == 200  # warm
        reset_peak(pid)
        before = proc_status(pid)
        flood(url, post("Content-Length: -1"))
        flood(url, post(f"Content-Length: {ATTACK_BYTES}"))
        flood(url, post("Transfer-Encoding: chunked"), frame=True)
        after = proc_status(pid)
        growth_kb = after["VmHWM"] - before["VmRSS"]
        assert growth_kb < PEAK_GROWTH_MAX_KB, f"RSS {before} -> {after}"
        assert GatewayClient(url).charge(PARAMS).status == 200


def test_connections_over_the_maximum_wait_until_one_closes(tmp_path: Path) -> None:
    with Gateway(SQLiteDatabase(str(tmp_path / "gw.db")), connections_max=3) as gateway:
        held = [socket.create_connection(address(gateway.url)) for _ in range(2)]
        client = GatewayClient(gateway.url, timeout_s=1.0)
        assert client.charge(PARAMS, "pay_1").status == 200  # the third connection
        with pytest.raises(GatewayUnreachable):  # the fourth waits in the listen backlog
            GatewayClient(gateway.url, timeout_s=0.5).charge(PARAMS, "pay_2")
        held.pop().close()
        assert GatewayClient(gateway.url, timeout_s=5.0).charge(PARAMS, "pay_2").status == 200
        for sock in held:
            sock.close()
