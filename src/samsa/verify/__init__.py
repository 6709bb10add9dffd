"""samsa.verify: a Jepsen-style workload (real confluent-kafka clients), a nemesis, a history and
a checker for Kafka's queue and transaction anomalies. `samsa verify` on the command line."""

from samsa.verify.checker import CLASSES, Anomaly, Result, check
from samsa.verify.history import History, Op, load
from samsa.verify.runner import Options, report, run, table

__all__ = [
    "CLASSES",
    "Anomaly",
    "History",
    "Op",
    "Options",
    "Result",
    "check",
    "load",
    "report",
    "run",
    "table",
]
