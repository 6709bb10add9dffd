"""A seeded schedule of faults, decided per request.

Deterministic: the same seed and the same sequence of targeted requests give the same decisions.
Every targeted request draws the same amount of randomness whatever is decided, so one decision
never shifts the next; requests the schedule does not target draw nothing, so the decisions for
(say) Produce do not depend on how many Metadata requests a client happened to send.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class Fault(Enum):
    PASS = "pass"
    DROP_RESPONSE = "drop_response"
    CUT_BEFORE = "cut_before"  # cut both sides instead of forwarding the request
    CUT_AFTER = "cut_after"  # forward the request, then cut both sides
    DELAY = "delay"  # hold the response back


@dataclass(frozen=True, slots=True)
class Decision:
    fault: Fault
    delay_ms: int = 0


PASS = Decision(Fault.PASS)


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], got {value!r}")


class Schedule:
    """Per targeted request: drop its response with `drop_response_probability`, else cut its
    connection with `cut_probability` (before or after forwarding it, evenly), else delay its
    response by a uniform draw from `delay_ms_range` with `delay_probability`.

    Raises ValueError for a probability outside [0, 1] or an empty or negative delay range.
    """

    def __init__(
        self,
        seed: int,
        *,
        drop_response_probability: float = 0.0,
        cut_probability: float = 0.0,
        delay_ms_range: tuple[int, int] | None = None,
        delay_probability: float = 1.0,
        api_keys: Iterable[int] | None = None,
    ) -> None:
        _check_probability("drop_response_probability", drop_response_probability)
        _check_probability("cut_probability", cut_probability)
        _check_probability("delay_probability", delay_probability)
        if delay_ms_range is not None:
            low, high = delay_ms_range
            if low < 0 or high < low:
                raise ValueError(f"delay_ms_range must be 0 <= low <= high, got {delay_ms_range}")
        self.seed = seed
        self.drop_response_probability = drop_response_probability
        self.cut_probability = cut_probability
        self.delay_ms_range = delay_ms_range
        self.delay_probability = delay_probability
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self._random = random.Random(seed)

    def targets(self, api_key: int) -> bool:
        return self.api_keys is None or api_key in self.api_keys

    def decide(self, api_key: int) -> Decision:
        if not self.targets(api_key):
            return PASS
        draw = self._random.random
        drop, cut, side, delay, amount = draw(), draw(), draw(), draw(), draw()
        if drop < self.drop_response_probability:
            return Decision(Fault.DROP_RESPONSE)
        if cut < self.cut_probability:
            return Decision(Fault.CUT_BEFORE if side < 0.5 else Fault.CUT_AFTER)
        if self.delay_ms_range is not None and delay < self.delay_probability:
            low, high = self.delay_ms_range
            return Decision(Fault.DELAY, low + min(int(amount * (high - low + 1)), high - low))
        return PASS

    def describe(self) -> str:
        apis = "all apis" if self.api_keys is None else f"api keys {sorted(self.api_keys)}"
        return (
            f"seed {self.seed}, {apis}: drop response p={self.drop_response_probability}, "
            f"cut p={self.cut_probability}, delay {self.delay_ms_range} ms "
            f"p={self.delay_probability}"
        )
