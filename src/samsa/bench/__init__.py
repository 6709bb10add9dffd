"""Benchmarks: scripts that measure samsa, run by hand (`python -m samsa.bench.<name>`).

They are not timed tests: the figures they print are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def in_turn(items: Sequence[T], round_: int) -> list[T]:
    """`items` in order on even rounds, reversed on odd ones: compared runs take turns going
    first (on a shared VM the first run of a round is often the slower; docs/benchmarks.md,
    "The order effect")."""
    return list(items) if round_ % 2 == 0 else list(reversed(items))
