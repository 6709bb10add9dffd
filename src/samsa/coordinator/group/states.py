"""Consumer group states and their transitions, as data (Kafka's classic GroupState), and
group types."""

from __future__ import annotations

from enum import Enum


class GroupState(Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


class GroupType(Enum):
    """Which protocol a group speaks (Kafka's Group.GroupType, KIP-848): ListGroups v5 lists
    and filters groups by it."""

    CONSUMER = "consumer"
    CLASSIC = "classic"
    SHARE = "share"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, name: str) -> GroupType:
        """Case-insensitive; a name Kafka does not know is UNKNOWN, which no group has."""
        try:
            return cls(name.lower())
        except ValueError:
            return cls.UNKNOWN


G = GroupState

VALID_PREVIOUS: dict[GroupState, frozenset[GroupState]] = {
    G.PREPARING_REBALANCE: frozenset({G.STABLE, G.COMPLETING_REBALANCE, G.EMPTY}),
    G.COMPLETING_REBALANCE: frozenset({G.PREPARING_REBALANCE}),
    G.STABLE: frozenset({G.COMPLETING_REBALANCE}),
    G.EMPTY: frozenset({G.PREPARING_REBALANCE}),
    G.DEAD: frozenset({G.STABLE, G.PREPARING_REBALANCE, G.COMPLETING_REBALANCE, G.EMPTY, G.DEAD}),
}


class IllegalGroupTransition(Exception):
    """An internal error: the coordinator tried a transition the table forbids."""


def check_transition(current: GroupState, target: GroupState) -> None:
    if current not in VALID_PREVIOUS[target]:
        raise IllegalGroupTransition(f"{current.value} -> {target.value}")
