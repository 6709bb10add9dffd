"""The payment gateway: a real HTTP service, served by waitress (see `serving`).

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

Card 4000000000000002 is declined, as in Stripe's test cards. An amount is at most
`AMOUNT_MAX` cents, Stripe's limit for a USD charge ($999,999.99).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

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
from samsa.payments.gateway.serving import (
    IDLE_TIMEOUT_S_DEFAULT,
    THREADS_DEFAULT,
    HttpServer,
    Unanswered,
    error_body,
    status_line,
)

log = logging.getLogger("samsa.gateway")

KEY_CHARS_MAX = 255
AMOUNT_MAX = 99_999_999  # cents
DECLINED_CARD = "4000000000000002"
_ROUTES = {"/health": ("GET",), "/v1/charges": ("GET", "POST"), "/v1/faults": ("GET",)}


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def validate(params: Any) -> str | None:
    """The reason the charge parameters are invalid, or None."""
    if not isinstance(params, dict):
        return "the body must be a JSON object"
    amount = params.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= AMOUNT_MAX:
        return f"amount must be a positive integer (cents) of at most {AMOUNT_MAX}"
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


def parse_json(body: bytes) -> Any:
    """The JSON value of a request body, or None if it is not JSON (an empty body is None)."""
    try:
        return json.loads(body or b"null")
    except (ValueError, RecursionError):  # RecursionError: a body of 60,000 `[`
        return None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


def _invalid(status: int, code: str, message: str) -> Answer:
    return Answer(status, error_body("invalid_request_error", code, message))


class Gateway:
    """The charge endpoint's logic, and the HTTP server around it (`start`/`stop`).

    `threads`, `connections_max` and `idle_timeout_s` bound what clients can make the server
    hold; see `samsa.payments.gateway.serving` and docs/security.md."""

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
        threads: int = THREADS_DEFAULT,
        connections_max: int | None = None,
        idle_timeout_s: int = IDLE_TIMEOUT_S_DEFAULT,
    ) -> None:
        self.state = GatewayState(database, clock_ms, ttl_ms, lock_timeout_ms)
        self.faults = faults if faults is not None else GatewayFaults()
        self.clock_ms = clock_ms
        self._server = HttpServer(
            self._wsgi,
            host=host,
            port=port,
            threads=threads,
            connections_max=connections_max,
            idle_timeout_s=idle_timeout_s,
        )

    @property
    def url(self) -> str:
        host, port = self._server.address
        return f"http://{host}:{port}"

    def start(self) -> Gateway:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP: waitress has read the whole request, within the limits, before this runs

    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        answer = self._route(environ)
        if answer is None:
            raise Unanswered
        data = json.dumps(answer.body, sort_keys=True).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        start_response(status_line(answer.status), [*headers, *answer.headers])
        return [data]

    def _route(self, environ: WSGIEnvironment) -> Answer | None:
        path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
        allowed = _ROUTES.get(path)
        if allowed is None:
            return _invalid(404, "not_found", path)
        if method not in allowed:
            refusal = error_body("invalid_request_error", "method_not_allowed", f"{method} {path}")
            return Answer(405, refusal, (("Allow", ", ".join(allowed)),))
        if method == "POST":
            params = parse_json(environ["wsgi.input"].read())
            return self.charge(environ.get("HTTP_IDEMPOTENCY_KEY"), params)
        if path == "/health":
            return Answer(200, {"ok": True})
        if path == "/v1/faults":
            return Answer(200, dict(self.faults.counts()))
        charges = [
            {
                "id": c.charge_id,
                "idempotency_key": c.idempotency_key,
                "order_id": c.order_id,
                "amount": c.amount,
                "currency": c.currency,
                "created_ms": c.created_ms,
            }
            for c in self.state.charges()
        ]
        return Answer(200, {"data": charges})

    # -- the endpoint

    def charge(self, key: str | None, params: Any) -> Answer | None:
        """The answer to a charge request, or None for none at all (the injected timeout)."""
        problem = validate(params)
        if problem is not None:
            return _invalid(400, "parameter_invalid", problem)
        if key is not None and not 1 <= len(key) <= KEY_CHARS_MAX:
            return _invalid(400, "key_invalid", "bad key length")
        decision = self.faults.decide()
        if decision.fault is GatewayFault.FAIL_BEFORE_CHARGE:
            self.faults.applied(decision.fault)
            return Answer(
                503, error_body("api_error", "unavailable", "injected: failed before charging")
            )
        if key is not None:
            begun = self.state.begin(key, params)
            if isinstance(begun, Mismatch):
                return Answer(
                    422,
                    error_body(
                        "idempotency_error",
                        "idempotency_key_mismatch",
                        "Idempotency-Key is re-used on a request that does not match the first"
                        " request's parameters",
                    ),
                )
            if isinstance(begun, InProgress):
                return Answer(
                    409,
                    error_body(
                        "idempotency_error",
                        "idempotency_key_in_use",
                        "the first request with this Idempotency-Key is still running",
                    ),
                )
            if isinstance(begun, Replay):
                return Answer(begun.status, begun.body, (("Idempotent-Replayed", "true"),))
        try:
            status, body, charge = self._execute(key, params, decision.delay_ms, decision.fault)
            self.state.complete(key, status, body, charge)
        except Exception:
            log.exception("charge failed")
            if key is not None:
                self.state.release(key)
            return Answer(500, error_body("api_error", "internal", "internal error (not stored)"))
        if decision.fault is GatewayFault.TIMEOUT_AFTER_CHARGE and charge is not None:
            self.faults.applied(decision.fault)
            time.sleep(self.faults.hang_s)
            return None  # no response at all: the client times out
        return Answer(status, body)

    def _execute(
        self, key: str | None, params: dict[str, Any], delay_ms: int, fault: GatewayFault
    ) -> tuple[int, dict[str, Any], Charge | None]:
        if fault is GatewayFault.SLOW:
            self.faults.applied(fault)
            time.sleep(delay_ms / 1000)
        if params["card"] == DECLINED_CARD:
            return 402, error_body("card_error", "card_declined", "Your card was declined."), None
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
