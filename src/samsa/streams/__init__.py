"""samsa.streams: exactly-once stream processing on confluent-kafka (issue 6).

An application declares how records of input topics become records of output topics; the
runtime runs the consumer, the (transactional) producer, offsets, rebalances, per-partition
key-value state backed by changelog topics, and recovery. It uses only Kafka APIs, so the same
application runs against samsa or any Kafka cluster. See docs/streams.md.

The names below are loaded on first use, so `samsa serve` (whose CLI registers the `streams`
subcommand) does not need confluent-kafka installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from samsa.streams.app import App
    from samsa.streams.errors import InstanceFenced, ProcessingError, StreamsError
    from samsa.streams.guarantee import Guarantee
    from samsa.streams.runtime import Worker
    from samsa.streams.serde import BYTES, JSON, STR, Serde
    from samsa.streams.store import KeyValueStore, StoreSpec
    from samsa.streams.topology import Stream, Topic

_WHERE = {
    "App": "app",
    "InstanceFenced": "errors",
    "ProcessingError": "errors",
    "StreamsError": "errors",
    "Guarantee": "guarantee",
    "Worker": "runtime",
    "BYTES": "serde",
    "JSON": "serde",
    "STR": "serde",
    "Serde": "serde",
    "KeyValueStore": "store",
    "StoreSpec": "store",
    "Stream": "topology",
    "Topic": "topology",
}

__all__ = [
    "BYTES",
    "JSON",
    "STR",
    "App",
    "Guarantee",
    "InstanceFenced",
    "KeyValueStore",
    "ProcessingError",
    "Serde",
    "StoreSpec",
    "Stream",
    "StreamsError",
    "Topic",
    "Worker",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'samsa.streams' has no attribute {name!r}")
    return getattr(importlib.import_module(f"samsa.streams.{module}"), name)
