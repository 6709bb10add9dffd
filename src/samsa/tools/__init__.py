"""Offline tools over a broker's data dir: `samsa log verify` checks every batch, index and
segment of every partition (it only reads, so a broker may be running); `samsa log repair`
gives a damaged partition of a stopped broker back, keeping every intact batch."""

from samsa.tools.logdir import Finding, PartitionRef, Report, verify
from samsa.tools.repair import Lost, Outcome, RepairFailed, repair
from samsa.usage import UsageError

__all__ = [
    "Finding",
    "Lost",
    "Outcome",
    "PartitionRef",
    "RepairFailed",
    "Report",
    "UsageError",
    "repair",
    "verify",
]
