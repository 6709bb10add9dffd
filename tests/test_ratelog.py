"""samsa.ratelog: identical warnings at most once per interval, with a count of the rest."""

from __future__ import annotations

import logging

import pytest

from samsa.ratelog import RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    out = [record.getMessage() for record in caplog.records]
    caplog.clear()
    return out


def test_a_burst_costs_one_line_then_one_summary(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("test.ratelog"), 10.0, clock)
    with caplog.at_level(logging.WARNING, "test.ratelog"):
        assert limited.warning("accept failed: %s", "EMFILE")
        for _ in range(9_999):
            assert not limited.warning("accept failed: %s", "EMFILE")
            clock.now += 0.0005
        assert lines(caplog) == ["accept failed: EMFILE"]
        limited.flush()  # the interval is not over
        assert lines(caplog) == []
        clock.now += 6
        limited.flush()
        assert lines(caplog) == ["accept failed: EMFILE (9999 like this in the last 10 s)"]
        clock.now += 10
        limited.flush()  # nothing more happened: nothing to say, and the kind is forgotten
        assert lines(caplog) == []
        assert limited.warning("accept failed: %s", "EMFILE")
        assert lines(caplog) == ["accept failed: EMFILE"]


def test_the_first_after_the_interval_carries_the_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("test.ratelog"), 10.0, clock)
    with caplog.at_level(logging.WARNING, "test.ratelog"):
        limited.warning("closing %s", "a")
        limited.warning("closing %s", "b")
        limited.warning("closing %s", "c")
        clock.now += 10
        assert limited.warning("closing %s", "d")
        assert lines(caplog) == ["closing a", "closing d (2 more like this in the last 10 s)"]


def test_kinds_are_limited_apart(caplog: pytest.LogCaptureFixture) -> None:
    limited = RateLimitedLog(logging.getLogger("test.ratelog"), 10.0, Clock())
    with caplog.at_level(logging.WARNING, "test.ratelog"):
        assert limited.warning("one %d", 1)
        assert limited.warning("two %d", 2)
        assert limited.error("one %d", 1)  # another level, another kind
        assert not limited.warning("one %d", 3)
        assert [r.levelno for r in caplog.records] == [logging.WARNING] * 2 + [logging.ERROR]


def test_a_traceback_goes_with_the_line_logged_only(caplog: pytest.LogCaptureFixture) -> None:
    limited = RateLimitedLog(logging.getLogger("test.ratelog"), 10.0, Clock())
    with caplog.at_level(logging.WARNING, "test.ratelog"):
        for _ in range(100):
            try:
                raise ValueError("bug")
            except ValueError:
                limited.error("request failed", exc_info=True)
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is not None
