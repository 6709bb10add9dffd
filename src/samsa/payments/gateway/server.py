"""The payment gateway: a real HTTP service (stdlib `http.server`, one thread per connection).

    POST /v1/charges   JSON {"amount": cents, "currency": "usd", "card": "4242...", "order_id": ...}
                       header Idempotency-Key (optional, 1-255 chars)
        200 the charge; 402 card declined (stored and replayed like a success);
        400 invalid parameters (decided before the idempotency layer: not stored);
        409 the key's first request is still running; 422 the key was used with other
        parameters; 503 injected failure before charging (not stored).
        A replayed response carries `Idempotent-Replayed: true`.
    GET /v1/charges    every charge made, for the audit
    GET /v1/faults     injected faults by kind
    GET /health

Card 4000000000000002 is declined, as in Stripe's test cards.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from samsa.effects.db import Database
from samsa.payments.gateway.faults import GatewayFault, GatewayFaults
from samsa.payments.gateway.keys import (
    LOCK_TIMEOUT_MS_DEFAULT,
    TTL_MS_DEFAULT,
    Charge,
    GatewayState,
    InProgress,
    Mismatch,
    Replay,
    new_charge_id,
)

log = logging.getLogger("samsa.gateway")

BODY_BYTES_MAX = 64 * 1024
KEY_CHARS_MAX = 255
DECLINED_CARD = "4000000000000002"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def validate(params: Any) -> str | None:
    """The reason the charge parameters are invalid, or None."""
    if not isinstance(params, dict):
        return "the body must be a JSON object"
    amount = params.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        return "amount must be a positive integer (cents)"
    currency = params.get("currency")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        return "currency must be a three-letter code"
    card = params.get("card")
    if not isinstance(card, str) or not card.isdigit() or not 12 <= len(card) <= 19:
        return "card must be 12 to 19 digits"
    order_id = params.get("order_id")
    if not isinstance(order_id, str) or not order_id:
        return "order_id must be a non-empty string"
    return None


def _error(kind: str, code: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "code": code, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, the body waits for the
    # client's delayed ACK (40 ms on Linux) on every keep-alive response.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        gateway = self.server.gateway
        if self.path == "/health":
            self._send(200, {"ok": True})
        elif self.path == "/v1/charges":
            charges = [
                {
                    "id": c.charge_id,
                    "idempotency_key": c.idempotency_key,
                    "order_id": c.order_id,
                    "amount": c.amount,
                    "currency": c.currency,
                    "created_ms": c.created_ms,
                }
                for c in gateway.state.charges()
            ]
            self._send(200, {"data": charges})
        elif self.path == "/v1/faults":
            self._send(200, gateway.faults.counts())
        else:
            self._send(404, _error("invalid_request_error", "not_found", self.path))

    def do_POST(self) -> None:
        if self.path != "/v1/charges":
            self._send(404, _error("invalid_request_error", "not_found", self.path))
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > BODY_BYTES_MAX:
            self.close_connection = True
            self._send(413, _error("invalid_request_error", "too_large", "body too large"))
            return
        try:
            params = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            params = None
        key = self.headers.get("Idempotency-Key")
        self.server.gateway.charge(self, key, params)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    gateway: Gateway


class Gateway:
    """The charge endpoint's logic, and the HTTP server around it (`start`/`stop`)."""

    def __init__(
        self,
        database: Database,
        *,
        faults: GatewayFaults | None = None,
        ttl_ms: int = TTL_MS_DEFAULT,
        lock_timeout_ms: int = LOCK_TIMEOUT_MS_DEFAULT,
        clock_ms: Any = wall_clock_ms,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.state = GatewayState(database, clock_ms, ttl_ms, lock_timeout_ms)
        self.faults = faults if faults is not None else GatewayFaults()
        self.clock_ms = clock_ms
        self._server = _Server((host, port), _Handler)
        self._server.gateway = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Gateway:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="samsa-gateway", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the endpoint

    def charge(self, request: _Handler, key: str | None, params: Any) -> None:
        problem = validate(params)
        if problem is not None:
            request._send(400, _error("invalid_request_error", "parameter_invalid", problem))
            return
        if key is not None and not 1 <= len(key) <= KEY_CHARS_MAX:
            request._send(400, _error("invalid_request_error", "key_invalid", "bad key length"))
            return
        decision = self.faults.decide()
        if decision.fault is GatewayFault.FAIL_BEFORE_CHARGE:
            self.faults.applied(decision.fault)
            request._send(
                503, _error("api_error", "unavailable", "injected: failed before charging")
            )
            return
        if key is not None:
            begun = self.state.begin(key, params)
            if isinstance(begun, Mismatch):
                request._send(
                    422,
                    _error(
                        "idempotency_error",
                        "idempotency_key_mismatch",
                        "Idempotency-Key is re-used on a request that does not match the first"
                        " request's parameters",
                    ),
                )
                return
            if isinstance(begun, InProgress):
                request._send(
                    409,
                    _error(
                        "idempotency_error",
                        "idempotency_key_in_use",
                        "the first request with this Idempotency-Key is still running",
                    ),
                )
                return
            if isinstance(begun, Replay):
                request._send(begun.status, begun.body, {"Idempotent-Replayed": "true"})
                return
        try:
            status, body, charge = self._execute(key, params, decision.delay_ms, decision.fault)
            self.state.complete(key, status, body, charge)
        except Exception:
            log.exception("charge failed")
            if key is not None:
                self.state.release(key)
            request._send(500, _error("api_error", "internal", "internal error (not stored)"))
            return
        if decision.fault is GatewayFault.TIMEOUT_AFTER_CHARGE and charge is not None:
            self.faults.applied(decision.fault)
            time.sleep(self.faults.hang_s)
            request.close_connection = True  # no response at all: the client times out
            return
        request._send(status, body)

    def _execute(
        self, key: str | None, params: dict[str, Any], delay_ms: int, fault: GatewayFault
    ) -> tuple[int, dict[str, Any], Charge | None]:
        if fault is GatewayFault.SLOW:
            self.faults.applied(fault)
            time.sleep(delay_ms / 1000)
        if params["card"] == DECLINED_CARD:
            return 402, _error("card_error", "card_declined", "Your card was declined."), None
        charge = Charge(
            new_charge_id(),
            key,
            params["order_id"],
            params["amount"],
            params["currency"].lower(),
            self.clock_ms(),
        )
        body = {
            "id": charge.charge_id,
            "object": "charge",
            "amount": charge.amount,
            "currency": charge.currency,
            "order_id": charge.order_id,
            "status": "succeeded",
        }
        return 200, body, charge
