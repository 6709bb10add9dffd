"""Which fault each request gets: commands first, then the seeded schedule. No I/O, no clock.

Commands ("drop the response to the next 2 Produce requests", "delay every response by 50 ms")
are rules consumed in the order they were given; a request takes the first rule that matches its
api key. The schedule is consulted for every request it targets, even one a rule overrides, so
issuing a command never shifts the schedule's later decisions.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from samsa.chaos.schedule import PASS, Decision, Fault, Schedule
from samsa.chaos.wire import RequestInfo

RULES_MAX = 1000
_RESPONSE_FAULTS = (Fault.DROP_RESPONSE, Fault.DELAY)
FAULT_LOG_ENTRIES_MAX = 10_000


class TooManyRules(Exception):
    """Raised by `Injector.add_rule` past RULES_MAX pending rules: call `clear()` first."""


@dataclass(slots=True)
class Rule:
    decision: Decision
    api_key: int | None  # None: any api
    remaining: int | None  # None: until cleared

    def matches(self, request: RequestInfo) -> bool:
        if self.api_key is not None and self.api_key != request.api_key:
            return False
        # A rule about the response is kept for a request that gets one (not a Produce with
        # acks=0), or it would be spent doing nothing.
        return request.expects_response or self.decision.fault not in _RESPONSE_FAULTS


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One non-pass decision. `sequence` numbers every request the proxy has seen, from 0."""

    sequence: int
    api_key: int
    correlation_id: int
    fault: Fault
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class Blackhole:
    start_ms: int
    end_ms: int  # exclusive
    requests: bool  # False: requests still reach the broker, only the responses vanish


class Injector:
    def __init__(
        self,
        schedule: Schedule | None = None,
        fault_log_entries_max: int = FAULT_LOG_ENTRIES_MAX,
    ) -> None:
        self.schedule = schedule
        self._rules: list[Rule] = []
        self._blackhole: Blackhole | None = None
        self._sequence = 0
        self.fault_log: deque[FaultEvent] = deque(maxlen=fault_log_entries_max)

    def add_rule(self, decision: Decision, api_key: int | None, count: int | None) -> None:
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1 (or None for until cleared), got {count}")
        if len(self._rules) >= RULES_MAX:
            raise TooManyRules(f"{RULES_MAX} rules are pending")
        self._rules.append(Rule(decision, api_key, count))

    @property
    def pending_rules(self) -> int:
        return len(self._rules)

    def clear(self) -> None:
        """Forget every rule and end any black-hole; the schedule stays."""
        self._rules.clear()
        self._blackhole = None

    def start_blackhole(self, now_ms: int, duration_ms: int, *, requests: bool = True) -> None:
        if duration_ms < 0:
            raise ValueError(f"a black-hole cannot last {duration_ms} ms")
        self._blackhole = Blackhole(now_ms, now_ms + duration_ms, requests)

    def blackholed(self, now_ms: int, *, request: bool = False) -> bool:
        """Whether a frame (a response, or a request if `request`) vanishes at `now_ms`."""
        hole = self._blackhole
        if hole is None or (request and not hole.requests):
            return False
        return hole.start_ms <= now_ms < hole.end_ms

    def decide(self, request: RequestInfo) -> Decision:
        sequence = self._sequence
        self._sequence += 1
        decision = PASS if self.schedule is None else self.schedule.decide(request.api_key)
        for index, rule in enumerate(self._rules):
            if rule.matches(request):
                decision = rule.decision
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        del self._rules[index]
                break
        if not request.expects_response and decision.fault in _RESPONSE_FAULTS:
            decision = PASS  # the schedule's draw stands, but there is no response to act on
        if decision.fault is not Fault.PASS:
            self.fault_log.append(
                FaultEvent(
                    sequence,
                    request.api_key,
                    request.correlation_id,
                    decision.fault,
                    decision.delay_ms,
                )
            )
        return decision
