"""A small HTTP client for the gateway (stdlib `http.client`), one keep-alive connection.

The gateway closes a connection idle for its `idle_timeout_s`; the client checks before each
request whether its connection was closed so, and opens a new one, as urllib3 does for its pool,
rather than report the gateway unreachable. Not thread-safe: one client per thread.
"""

from __future__ import annotations

import http.client
import json
import select
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

TIMEOUT_S_DEFAULT = 5.0


class GatewayUnreachable(Exception):
    """No answer: a timeout, a refused or dropped connection. The charge may or may not have
    happened; retry with the same Idempotency-Key to find out without charging twice."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: Any
    replayed: bool


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """Whether the server closed this idle connection: between requests, a readable socket
    can only mean EOF (or stray bytes, which make the connection as unusable)."""
    if connection.sock is None:
        return False
    poller = select.poll()  # not select(): it fails on descriptors above 1023
    poller.register(connection.sock, select.POLLIN)
    return bool(poller.poll(0))


class GatewayClient:
    def __init__(self, url: str, timeout_s: float = TIMEOUT_S_DEFAULT) -> None:
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"expected http://HOST:PORT, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port
        self.timeout_s = timeout_s
        self._connection: http.client.HTTPConnection | None = None

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Response:
        if self._connection is not None and _closed_by_peer(self._connection):
            self.close()
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self.host, self.port, self.timeout_s)
        try:
            self._connection.request(method, path, body, headers)
            response = self._connection.getresponse()
            data = response.read()
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            self.close()
            raise GatewayUnreachable(f"{method} {path}: {exc!r}") from exc
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return Response(
            response.status,
            json.loads(data) if data else None,
            response.getheader("Idempotent-Replayed") == "true",
        )

    def charge(self, params: dict[str, Any], idempotency_key: str | None = None) -> Response:
        headers = {"Content-Type": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return self._request("POST", "/v1/charges", json.dumps(params).encode(), headers)

    def charges(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._request("GET", "/v1/charges", None, {}).body["data"]
        return data

    def faults(self) -> dict[str, int]:
        counts: dict[str, int] = self._request("GET", "/v1/faults", None, {}).body
        return counts

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
