"""The reset plan on its own (`samsa.ops.reset`): the cases a small test cluster rarely shows."""

from __future__ import annotations

import pytest

from samsa.ops.reset import Move, Offsets, Target, parse_topic, plan
from samsa.usage import UsageError

TP = ("t", 0)
# A log whose first 10 records were deleted by retention: offsets 10 to 19 remain.
TRIMMED = {TP: Offsets(log_start=10, log_end=20, at_time=-1)}


@pytest.mark.parametrize(
    ("target", "new"),
    [
        (Target("earliest"), 10),
        (Target("latest"), 20),
        (Target("datetime", 5_000), 20),  # no record that late: the log end, as Kafka
        (Target("shift", -8), 10),  # held at the log start, not before it
        (Target("shift", 3), 18),
        (Target("offset", 2), 10),
        (Target("offset", 25), 20),
    ],
)
def test_each_target_on_a_trimmed_log(target: Target, new: int) -> None:
    assert plan(target, [TP], {TP: 15}, TRIMMED) == [Move("t", 0, 15, new)]


def test_datetime_with_a_record_that_late() -> None:
    found = {TP: Offsets(0, 20, at_time=7)}
    assert plan(Target("datetime", 1), [TP], {}, found) == [Move("t", 0, None, 7)]


def test_shift_needs_a_committed_offset() -> None:
    with pytest.raises(UsageError, match="no committed offset"):
        plan(Target("shift", 1), [TP], {}, TRIMMED)


def test_topic_arguments() -> None:
    assert parse_topic("orders") == ("orders", None)
    assert parse_topic("orders:2,0,2") == ("orders", [0, 2])
    for bad in (":1", "orders:", "orders:a", "orders:-1"):
        with pytest.raises(UsageError):
            parse_topic(bad)
