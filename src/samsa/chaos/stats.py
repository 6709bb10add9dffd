"""Counters for everything the proxy does to traffic, and for its own faults.

`dropped_responses`, `cuts`, `delays` and `blackholes` count injected faults, each when it takes
effect (a response swallowed, a connection cut, a response held back, a black-hole window
opened), not when it is scheduled. The cut that follows a dropped response is part of that
fault and counted only under `dropped_responses`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from samsa.protocol.apis import ApiKey


def api_name(api_key: int) -> str:
    try:
        return ApiKey(api_key).name.lower()
    except ValueError:
        return f"api_{api_key}"


@dataclass(slots=True)
class FaultStats:
    # Injected faults.
    dropped_responses: int = 0
    cuts: int = 0
    delays: int = 0
    delay_ms_total: int = 0
    blackholes: int = 0
    blackholed_requests: int = 0
    blackholed_responses: int = 0
    # Traffic.
    connections_accepted: int = 0
    requests_forwarded: dict[int, int] = field(default_factory=dict)
    responses_forwarded: dict[int, int] = field(default_factory=dict)
    # The proxy's own faults: each closes the connection it happened on.
    upstream_connect_failures: int = 0
    frame_errors: int = 0
    unmatched_responses: int = 0
    in_flight_overflows: int = 0

    @property
    def faults_injected(self) -> int:
        return self.dropped_responses + self.cuts + self.delays + self.blackholes

    def copy(self) -> FaultStats:
        return dataclasses.replace(
            self,
            requests_forwarded=dict(self.requests_forwarded),
            responses_forwarded=dict(self.responses_forwarded),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: api keys become names (`produce`, `fetch`, ...)."""
        result: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, dict):
                value = {api_name(key): count for key, count in sorted(value.items())}
            result[item.name] = value
        result["faults_injected"] = self.faults_injected
        return result

    def report(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"faults injected: {self.faults_injected} "
            f"(dropped responses {self.dropped_responses}, cuts {self.cuts}, "
            f"delays {self.delays} totalling {self.delay_ms_total} ms, "
            f"black-holes {self.blackholes} swallowing {self.blackholed_requests} requests "
            f"and {self.blackholed_responses} responses)",
            f"connections accepted: {self.connections_accepted}",
            "requests forwarded: " + _by_api(self.requests_forwarded),
            "responses forwarded: " + _by_api(self.responses_forwarded),
            f"proxy faults: upstream connect failures {self.upstream_connect_failures}, "
            f"frame errors {self.frame_errors}, unmatched responses "
            f"{self.unmatched_responses}, in-flight overflows {self.in_flight_overflows}",
        ]
        return "\n".join(lines)


def _by_api(counts: dict[int, int]) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{api_name(key)} {count}" for key, count in sorted(counts.items()))
