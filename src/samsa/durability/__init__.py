"""Write, wait until durable, then continue.

`continuations` holds what coordinators and handlers return (`Durable`, `Later`, `Slot`);
`driver` is the one interpreter of them, sans-IO, used by the server, the simulation and the
tests; `inline` runs fsyncs on the caller's thread for the simulation and the tests.
"""

from samsa.durability.continuations import Durable, Failed, Later, Slot, Waits, gather
from samsa.durability.driver import ContinuationFailed, Driver

__all__ = ["ContinuationFailed", "Driver", "Durable", "Failed", "Later", "Slot", "Waits", "gather"]
