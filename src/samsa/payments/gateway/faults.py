"""Seeded faults for the gateway, decided per charge request.

- `fail_before_charge`: 503 before the idempotency layer, so nothing is stored and a retry with
  the same key is a fresh attempt (like a load balancer or rate limiter in front of Stripe).
- `timeout_after_charge`: the charge is made and its response stored, then the server holds the
  connection for `hang_s` and closes it without answering: the client sees a timeout and does
  not know whether it was charged (the article's costly case).
- `slow`: the response is delayed by a uniform draw from `slow_ms_range`, still answered.

`first_at` forces each kind once, from a given request number (1-based) until it takes effect,
so even a short run sees every kind; after that the probabilities apply.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum


class GatewayFault(Enum):
    NONE = "none"
    FAIL_BEFORE_CHARGE = "fail_before_charge"
    TIMEOUT_AFTER_CHARGE = "timeout_after_charge"
    SLOW = "slow"


@dataclass(frozen=True, slots=True)
class FaultDecision:
    fault: GatewayFault
    delay_ms: int = 0


NO_FAULT = FaultDecision(GatewayFault.NONE)


@dataclass(slots=True)
class GatewayFaults:
    seed: int = 0
    fail_before_charge_probability: float = 0.0
    timeout_after_charge_probability: float = 0.0
    slow_probability: float = 0.0
    slow_ms_range: tuple[int, int] = (50, 200)
    hang_s: float = 1.0
    first_at: dict[GatewayFault, int] = field(default_factory=dict)
    injected: Counter[str] = field(default_factory=Counter)
    _requests: int = 0
    _random: random.Random = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for name in ("fail_before_charge", "timeout_after_charge", "slow"):
            value = getattr(self, f"{name}_probability")
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}_probability must be within [0, 1], got {value!r}")
        self._random = random.Random(self.seed)

    def decide(self) -> FaultDecision:
        with self._lock:
            self._requests += 1
            # Always the same number of draws, so one decision never shifts the next.
            fail, hang, slow, amount = (self._random.random() for _ in range(4))
            low, high = self.slow_ms_range
            delay_ms = low + int(amount * (high - low))
            # A forced kind stays owed from its request on until it takes effect (a timeout
            # after charging does not, on a request that is a replay or a decline).
            forced = [
                kind
                for kind, at in self.first_at.items()
                if at <= self._requests and not self.injected[kind.value]
            ]
            if forced:
                decision = FaultDecision(forced[0], delay_ms)
            elif fail < self.fail_before_charge_probability:
                decision = FaultDecision(GatewayFault.FAIL_BEFORE_CHARGE)
            elif hang < self.timeout_after_charge_probability:
                decision = FaultDecision(GatewayFault.TIMEOUT_AFTER_CHARGE)
            elif slow < self.slow_probability:
                decision = FaultDecision(GatewayFault.SLOW, delay_ms)
            else:
                return NO_FAULT
            return decision

    def applied(self, fault: GatewayFault) -> None:
        """Count a fault when it takes effect (a timeout after charging is only injected when
        the request made a charge; a replay is answered normally)."""
        with self._lock:
            self.injected[fault.value] += 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                k.value: self.injected[k.value] for k in GatewayFault if k is not NO_FAULT.fault
            }
