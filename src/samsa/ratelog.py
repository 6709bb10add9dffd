"""Identical warnings at most once per interval, so a fault that repeats thousands of times a
second (accept() failing with EMFILE, a client reconnecting in a loop) costs one log line per
interval, not thousands of lines or tracebacks.

A warning's kind is its level and format string. The first of a kind is logged at once. The same
kind again within `interval_s` is only counted; the next one after the interval, or `flush()`
(which a server calls on a timer, so a burst that stops is still reported), logs a single line
for them: the last message, then "(N like this in the last 10 s)". Time comes in as `clock`
(seconds, monotonic), so a simulation can drive it.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

INTERVAL_S = 10.0
# Every instance, so a server's timer can report what each counted (`flush_all`).
_INSTANCES: weakref.WeakSet[RateLimitedLog] = weakref.WeakSet()


@dataclass(slots=True)
class _Kind:
    since: float  # when the current interval began (its first line was logged)
    suppressed: int = 0
    last: str = ""  # the last suppressed message, rendered


class RateLimitedLog:
    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`interval_s`: None, `INTERVAL_S` as it is when the instance is made."""
        self._logger = logger
        self._interval_s = INTERVAL_S if interval_s is None else interval_s
        self._clock = clock
        self._kinds: dict[tuple[int, str], _Kind] = {}
        _INSTANCES.add(self)

    def warning(self, message: str, *args: object, exc_info: bool = False) -> bool:
        return self.log(logging.WARNING, message, *args, exc_info=exc_info)

    def error(self, message: str, *args: object, exc_info: bool = False) -> bool:
        return self.log(logging.ERROR, message, *args, exc_info=exc_info)

    def log(self, level: int, message: str, *args: object, exc_info: bool = False) -> bool:
        """Log `message % args` now, or count it; True if it was logged now. With `exc_info`,
        the exception being handled goes with the line that is logged (one traceback per
        interval, not one per occurrence)."""
        now = self._clock()
        key = (level, message)
        kind = self._kinds.get(key)
        if kind is not None and now - kind.since < self._interval_s:
            kind.suppressed += 1
            kind.last = message % args if args else message
            return False
        suppressed = kind.suppressed if kind is not None else 0
        self._kinds[key] = _Kind(since=now)
        if suppressed:
            self._logger.log(
                level,
                message + " (%d more like this in the last %g s)",
                *args,
                suppressed,
                self._interval_s,
                exc_info=exc_info,
            )
        else:
            self._logger.log(level, message, *args, exc_info=exc_info)
        return True

    def flush(self) -> None:
        """Report what was counted in intervals that have ended; forget quiet kinds."""
        now = self._clock()
        for key, kind in list(self._kinds.items()):
            if now - kind.since < self._interval_s:
                continue
            if kind.suppressed:
                self._logger.log(
                    key[0],
                    "%s (%d like this in the last %g s)",
                    kind.last,
                    kind.suppressed,
                    self._interval_s,
                )
                self._kinds[key] = _Kind(since=now)
            else:
                del self._kinds[key]


def flush_all() -> None:
    """`flush` every instance (a server calls it on a timer)."""
    for instance in list(_INSTANCES):
        instance.flush()
