"""One poller for every browser: the console's cost to the cluster does not grow with viewers.

Theory of operation: a single thread asks every partition leader for its high watermark
(one ListOffsets per broker) each `interval_s`. Any append moves some high watermark: records,
transaction markers, and the coordinators' own writes to `__transaction_state` and
`__consumer_offsets`; so when the watermarks change, the `version` goes up. Pages are computed
through `Pages.get`, which keeps each page's data until the version changes (or `max_age_s`
passes, so ages and timeouts stay current): a hundred browsers watching the same partition
cost one Fetch per change. Browsers learn of a new version by server-sent events
(`/events`, served from memory) and then ask for the page again.

All requests, the poller's and the pages', share the `Cluster`'s `RequestBudget`, which
bounds the total rate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from samsa.admin.client import LATEST_TIMESTAMP, READ_UNCOMMITTED, AdminError
from samsa.console.cluster import Cluster

T = TypeVar("T")
INTERVAL_S_MIN = 0.2
PAGES_MAX = 256  # cached page data entries; the oldest go first

log = logging.getLogger(__name__)


class Poller:
    def __init__(self, cluster: Cluster, interval_s: float) -> None:
        if interval_s < INTERVAL_S_MIN:
            raise ValueError(f"the poll interval must be at least {INTERVAL_S_MIN} s")
        self.cluster = cluster
        self.interval_s = interval_s
        self.version = 0
        self.polls = 0
        self.error: str | None = None
        self._fingerprint: dict[tuple[str, int], int] | None = None
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="samsa-console-poller", daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def poll_once(self) -> bool:
        """Ask for the high watermarks once; True if they moved."""
        self.polls += 1
        try:
            metadata = self.cluster.metadata()
            marks = self.cluster.list_offsets(
                metadata.partitions, READ_UNCOMMITTED, LATEST_TIMESTAMP
            )
            self.error = None
        except (AdminError, OSError) as exc:
            self.error = str(exc)
            self.cluster.forget_metadata()
            return False
        if marks == self._fingerprint:
            return False
        self._fingerprint = marks
        with self._changed:
            self.version += 1
            self._changed.notify_all()
        return True

    def wait_for_version(self, above: int, timeout_s: float) -> int:
        """Block until the version exceeds `above` (or the timeout); the version then."""
        with self._changed:
            self._changed.wait_for(lambda: self.version > above, timeout_s)
            return self.version

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self.poll_once()
            self._stop.wait(max(self.interval_s - (time.monotonic() - began), 0.0))


class Pages:
    """Page data kept until the poller's version moves, or `max_age_s` passes."""

    def __init__(self, poller: Poller, max_age_s: float = 5.0) -> None:
        self.poller = poller
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[int, float, Any]] = {}
        self.computed = 0

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        # One lock: two browsers asking for the same page wait for one computation.
        with self._lock:
            now = time.monotonic()
            entry = self._entries.get(key)
            if (
                entry is not None
                and entry[0] == self.poller.version
                and now - entry[1] < self.max_age_s
            ):
                value: T = entry[2]
                return value
            value = compute()
            self.computed += 1
            self._entries[key] = (self.poller.version, now, value)
            if len(self._entries) > PAGES_MAX:
                del self._entries[next(iter(self._entries))]
            return value

    def forget(self) -> None:
        """After a change the console made itself (an abort, a reset)."""
        with self._lock:
            self._entries.clear()
