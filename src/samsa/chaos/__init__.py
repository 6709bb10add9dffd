"""samsa.chaos: a Kafka-aware, fault-injecting TCP proxy for tests and the command line.

It sits between clients and a broker and can drop a response after the broker processed the
request (the lost acknowledgment), delay responses, cut connections, and black-hole traffic, on
command or by a seeded `Schedule`. Every injected fault is counted in `FaultStats`.
"""

from samsa.chaos.embedded import EmbeddedChaosProxy, proxied_broker
from samsa.chaos.faults import FaultEvent
from samsa.chaos.proxy import ChaosProxy
from samsa.chaos.schedule import Decision, Fault, Schedule
from samsa.chaos.stats import FaultStats

__all__ = [
    "ChaosProxy",
    "Decision",
    "EmbeddedChaosProxy",
    "Fault",
    "FaultEvent",
    "FaultStats",
    "Schedule",
    "proxied_broker",
]
