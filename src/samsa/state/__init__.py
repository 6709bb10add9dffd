"""Per-partition producer state: the idempotence window, epochs, snapshots."""

from samsa.state.producers import (
    Append,
    BatchMetadata,
    Duplicate,
    ProducerEntry,
    ProducerStateError,
    ProducerStateManager,
)

__all__ = [
    "Append",
    "BatchMetadata",
    "Duplicate",
    "ProducerEntry",
    "ProducerStateError",
    "ProducerStateManager",
]
