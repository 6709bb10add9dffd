"""Write, wait until durable, then continue: what coordinators and handlers return
(`continuations`), below both `samsa.broker` and `samsa.coordinator`."""

from samsa.durability.continuations import Durable, Failed, Later, Slot, Waits

__all__ = ["Durable", "Failed", "Later", "Slot", "Waits"]
