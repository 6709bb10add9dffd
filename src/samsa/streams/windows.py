"""Windowed aggregations over record timestamps, as Kafka Streams' `windowedBy(...).aggregate`.

Theory of operation. Time is *stream time*: per input partition, the largest record timestamp
seen so far. A window holds the records whose timestamps fall in it:

- tumbling (`advance_ms` = `size_ms`) and hopping (`advance_ms` < `size_ms`): [start, start +
  size_ms) for each start that is a multiple of `advance_ms` (Kafka's TimeWindows);
- sliding: one window [t - size_ms, t] (both ends included) for each distinct record timestamp
  t of a key, as the windows Kafka's SlidingWindows creates at each record (its "left"
  windows; the empty-ended "right" windows are not made).

A window closes when stream time reaches its end plus `grace_ms`; a record whose every window
is closed is late: dropped and counted (`late_records_dropped`, Kafka's dropped-records).
`emit="update"` passes on every change of a window's result; `emit="final"` only the last one,
once, when the window closes (Kafka's EmitStrategy.onWindowClose). Either way a closed window's
state is deleted then. Results are (key, {"start": ms, "end": ms, "value": result}).

State lives in one key-value store per aggregation (keys and values JSON, so record keys must
be JSON values: str, int, ...), changelogged like any store: window results, and a meta entry
holding stream time and the earliest close still due, so a restarted instance drops, updates
and closes exactly what the failed one would have. Closing scans the partition's windows only
when stream time has reached that earliest close.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from samsa.streams.serde import JSON
from samsa.streams.store import KeyValueStore, StoreSpec
from samsa.streams.topology import Context, Node

EMITS = ("update", "final")
_META = "~"  # the store key of {"time": stream time, "close": earliest close due or None}
_NONE: Any = object()


@dataclass(frozen=True, slots=True)
class Windows:
    size_ms: int
    advance_ms: int
    grace_ms: int
    sliding: bool
    emit: str

    def __post_init__(self) -> None:
        if self.size_ms <= 0 or self.grace_ms < 0:
            raise ValueError("windows need size_ms > 0 and grace_ms >= 0")
        if not 0 < self.advance_ms <= self.size_ms:
            raise ValueError("advance_ms must be in (0, size_ms]")
        if self.emit not in EMITS:
            raise ValueError(f"emit must be one of {EMITS}, got {self.emit!r}")

    def starts(self, timestamp_ms: int) -> list[int]:
        """The starts of the tumbling or hopping windows holding `timestamp_ms`."""
        last = timestamp_ms - timestamp_ms % self.advance_ms
        first = max(0, last - self.size_ms + self.advance_ms)
        return list(range(first, last + 1, self.advance_ms))


@dataclass(frozen=True, slots=True)
class Aggregation:
    """`add(result, value)` folds a value into a window's result; the first value of a window
    starts from `initial()`, or (a reduce, `initial` None) is the result itself."""

    add: Callable[[Any, Any], Any]
    initial: Callable[[], Any] | None

    def fold(self, result: Any, value: Any) -> Any:
        if result is _NONE:
            return value if self.initial is None else self.add(self.initial(), value)
        return self.add(result, value)


class WindowAggregate(Node):
    def __init__(self, name: str, windows: Windows, aggregation: Aggregation) -> None:
        super().__init__()
        self.spec = StoreSpec(name, JSON, JSON)
        self.windows = windows
        self.aggregation = aggregation

    def stores(self) -> Iterator[StoreSpec]:
        yield self.spec
        yield from super().stores()

    def push(self, ctx: Context, key: Any, value: Any) -> None:
        store = ctx.store(self.spec)
        meta = store.get(_META) or {"time": -1, "close": None}
        timestamp_ms = ctx.timestamp_ms
        meta["time"] = max(meta["time"], timestamp_ms)
        if self.windows.sliding:
            ends = self._slide(ctx, store, key, value, timestamp_ms, meta["time"])
        else:
            ends = self._hop(ctx, store, key, value, timestamp_ms, meta["time"])
        if ends is None:
            ctx.count("late_records_dropped")
        for end in ends or ():
            due = end + self.windows.grace_ms
            meta["close"] = due if meta["close"] is None else min(meta["close"], due)
        if meta["close"] is not None and meta["close"] <= meta["time"]:
            meta["close"] = self._close(ctx, store, meta["time"])
        store.put(_META, meta)

    def _open(self, end_ms: int, stream_time_ms: int) -> bool:
        return end_ms + self.windows.grace_ms > stream_time_ms

    def _emit(self, ctx: Context, key: Any, start: int, end: int, result: Any) -> None:
        super().push(ctx, key, {"start": start, "end": end, "value": result})

    def _hop(
        self, ctx: Context, store: KeyValueStore, key: Any, value: Any, ts: int, now: int
    ) -> list[int] | None:
        """Fold the record into each open window holding it; their ends (None: late)."""
        size = self.windows.size_ms
        starts = [s for s in self.windows.starts(ts) if self._open(s + size, now)]
        for start in starts:
            result = self.aggregation.fold(store.get([key, start], _NONE), value)
            store.put([key, start], result)
            if self.windows.emit == "update":
                self._emit(ctx, key, start, start + size, result)
        return [s + size for s in starts] or None

    def _slide(
        self, ctx: Context, store: KeyValueStore, key: Any, value: Any, ts: int, now: int
    ) -> list[int] | None:
        """Add the record to the key's records and recompute the open windows it is in: its
        own, and those of the later records within size_ms; their new ends (None: late)."""
        size = self.windows.size_ms
        if not self._open(ts + size, now):
            return None
        entry = store.get([key]) or {"records": [], "closed": -1}
        records: list[list[Any]] = entry["records"]
        known = {t for t, _ in records}
        records.append([ts, value])
        records.sort(key=lambda r: r[0])
        ends = sorted(
            t
            for t in known | {ts}
            if ts <= t <= ts + size and t > entry["closed"] and self._open(t, now)
        )
        store.put([key], entry)
        if self.windows.emit == "update":
            for end in ends:
                self._emit(ctx, key, end - size, end, self._fold(records, end))
        return [end for end in ends if end not in known]

    def _fold(self, records: list[list[Any]], end: int) -> Any:
        result = _NONE
        for t, value in records:
            if end - self.windows.size_ms <= t <= end:
                result = self.aggregation.fold(result, value)
        return result

    def _close(self, ctx: Context, store: KeyValueStore, now: int) -> int | None:
        """Close every window whose end + grace has passed (emitting it if final); the
        earliest close still due afterwards."""
        size, grace = self.windows.size_ms, self.windows.grace_ms
        final = self.windows.emit == "final"
        due: list[int] = []
        closing: list[tuple[int, Any, int, Any]] = []  # (end, key, start, result)
        for store_key, state in list(store.items()):
            if not isinstance(store_key, list):
                continue
            if not self.windows.sliding:
                key, start = store_key
                if self._open(start + size, now):
                    due.append(start + size + grace)
                else:
                    closing.append((start + size, key, start, state))
                    store.delete(store_key)
                continue
            (key,) = store_key
            records = state["records"]
            ends = sorted({t for t, _ in records if t > state["closed"]})
            for end in ends:
                if self._open(end, now):
                    due.append(end + grace)
                else:
                    closing.append((end, key, end - size, self._fold(records, end)))
                    state["closed"] = end
            state["records"] = [r for r in records if self._open(r[0] + size, now)]
            if state["records"]:
                store.put(store_key, state)
            else:
                store.delete(store_key)
        if final:
            for end, key, start, result in sorted(closing, key=lambda c: (c[0], repr(c[1]))):
                self._emit(ctx, key, start, end, result)
        return min(due, default=None)
