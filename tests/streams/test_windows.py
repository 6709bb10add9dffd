"""Windowed aggregations, driven record by record through the topology with a fake context
(no broker): which windows each record lands in, grace and late records, update vs final
emission, and a brute-force model of hopping windows checked by Hypothesis."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samsa.streams import App
from samsa.streams.windows import Windows

from .test_units import FakeContext


def run(build: Any, records: list[tuple[int, str, Any]]) -> tuple[list[Any], FakeContext]:
    """Push (timestamp, key, value) records through `build(stream)`; the outputs."""
    app = App("t")
    out = app.topic("out", key="str", value="json")
    build(app.stream(app.topic("in", key="str", value="json"))).to(out)
    ctx = FakeContext()
    for timestamp, key, value in records:
        ctx.timestamp_ms = timestamp
        app._sources["in"][1].push(ctx, key, value)
    return [(k, v["start"], v["end"], v["value"]) for _t, k, v in ctx.emitted], ctx


def test_tumbling_count_updates_and_drops_late_records() -> None:
    outputs, ctx = run(
        lambda s: s.window("w", 1000).count(),
        [(0, "a", 1), (999, "a", 1), (1000, "a", 1), (10, "b", 1), (2000, "b", 1), (999, "a", 1)],
    )
    assert outputs == [
        ("a", 0, 1000, 1),
        ("a", 0, 1000, 2),
        ("a", 1000, 2000, 1),
        # (10, "b") is late: stream time is 1000 and [0, 1000) closed with grace 0
        ("b", 2000, 3000, 1),
    ]
    assert ctx.counters == {"late_records_dropped": 2}
    # Closed windows are gone from the store; what is left is [2000, 3000) and the meta.
    assert [k for k, _ in ctx.stores["w"].items()] == ["~", ["b", 2000]]


def test_hopping_sum_with_grace_emits_each_window_once_when_it_closes() -> None:
    outputs, ctx = run(
        lambda s: s.window("w", 1000, advance_ms=500, grace_ms=200, emit="final").sum(),
        [(100, "a", 1), (600, "a", 2), (1150, "a", 4), (900, "a", 8), (1699, "a", 16)],
    )
    # (900, 8) came 250 ms behind stream time: inside the grace of [0, 1000) and [500, 1500).
    # At 1699 [0, 1000) has closed (1000 + 200 <= 1699); [500, 1500) has not (1700).
    assert outputs == [("a", 0, 1000, 11)]
    assert ctx.counters == {}
    outputs, _ = run(
        lambda s: s.window("w", 1000, advance_ms=500, grace_ms=200, emit="final").sum(),
        [(100, "a", 1), (600, "a", 2), (1150, "a", 4), (900, "a", 8), (5000, "a", 0)],
    )
    assert outputs == [("a", 0, 1000, 11), ("a", 500, 1500, 14), ("a", 1000, 2000, 4)]


def test_sliding_windows_end_at_each_record() -> None:
    outputs, ctx = run(
        lambda s: s.window("w", 100, sliding=True, grace_ms=50).reduce(max),
        [(1000, "a", 3), (1050, "a", 5), (1200, "a", 1), (1020, "a", 9), (1100, "a", 4)],
    )
    assert outputs == [
        ("a", 900, 1000, 3),
        ("a", 950, 1050, 5),
        ("a", 1100, 1200, 1),
        # 1020 is 180 ms behind: every window it could be in ends by 1120, past its grace
        # (1120 + 50 <= 1200): dropped as late. 1100 is 100 ms behind: its own window [1000,
        # 1100] is past its grace, but it is in [1100, 1200], which is updated.
        ("a", 1100, 1200, 4),
    ]
    assert ctx.counters == {"late_records_dropped": 1}


def test_aggregate_starts_each_window_from_a_fresh_initial_value() -> None:
    outputs, _ = run(
        lambda s: s.window("w", 10).aggregate([], lambda seen, v: [*seen, v]),
        [(1, "a", "x"), (2, "a", "y"), (11, "a", "z")],
    )
    assert outputs == [("a", 0, 10, ["x"]), ("a", 0, 10, ["x", "y"]), ("a", 10, 20, ["z"])]


def test_window_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="advance_ms"):
        Windows(100, 200, 0, False, "update")
    with pytest.raises(ValueError, match="emit"):
        Windows(100, 100, 0, False, "sometimes")


def brute_force(
    records: list[tuple[int, int]], size: int, advance: int, grace: int
) -> list[tuple[str, int, int, int]]:
    """Final sums per hopping window, by definition: a record counts in a window if, when it
    arrives, stream time (itself included) is before the window's end + grace; a window is
    emitted once stream time reaches end + grace."""
    now = -1
    sums: dict[int, int] = {}
    emitted: list[tuple[str, int, int, int]] = []
    for timestamp, value in records:
        now = max(now, timestamp)
        for start in range(0, timestamp + 1, advance):
            if start <= timestamp < start + size and start + size + grace > now:
                sums[start] = sums.get(start, 0) + value
        for start in sorted(sums):
            if start + size + grace <= now:
                emitted.append(("k", start, start + size, sums.pop(start)))
    return emitted


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 9)), max_size=30),
    st.sampled_from([(1000, 1000), (1000, 250), (600, 200)]),
    st.sampled_from([0, 300]),
)
def test_hopping_final_sums_match_the_definition(
    records: list[tuple[int, int]], window: tuple[int, int], grace: int
) -> None:
    size, advance = window
    outputs, _ = run(
        lambda s: s.window("w", size, advance_ms=advance, grace_ms=grace, emit="final").sum(),
        [(t, "k", v) for t, v in records],
    )
    assert outputs == brute_force(records, size, advance, grace)
