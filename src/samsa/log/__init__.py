"""Partition logs: segments of v2 record batches with offset and time indexes, recovery, retention.

All file I/O goes through `samsa.log.storage.Storage`, so a simulation can stand in for the disk.
"""

from samsa.log.partition import PartitionLog, SyncPoint
from samsa.log.storage import OsStorage, Storage

__all__ = ["OsStorage", "PartitionLog", "Storage", "SyncPoint"]
