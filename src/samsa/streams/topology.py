"""How records from input topics become records in output topics: a tree of nodes under each
input topic. A record is pushed into the source node; each node transforms it and pushes the
results to its children; sink nodes hand them to the runtime. A stream that is used twice
(fan-out) runs its upstream steps once, so a stateful step never applies a record twice.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from samsa.streams.serde import Serde
from samsa.streams.store import KeyValueStore, StoreSpec

KeyValue = tuple[Any, Any]


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic and how its keys and values are (de)serialised. `partitions` and `config` are
    used when the runtime creates a missing output topic."""

    name: str
    key_serde: Serde
    value_serde: Serde
    partitions: int | None = None
    config: dict[str, str] = field(default_factory=dict)


class Context(Protocol):
    """What a node sees while one input record is processed (the runtime implements it)."""

    def store(self, spec: StoreSpec) -> KeyValueStore: ...

    def emit(self, topic: Topic, key: Any, value: Any) -> None: ...

    @property
    def timestamp_ms(self) -> int:
        """The timestamp of the input record being processed."""
        ...

    def count(self, name: str) -> None:
        """Add one to the worker's counter `name`."""
        ...


class Node:
    def __init__(self) -> None:
        self.children: list[Node] = []

    def push(self, ctx: Context, key: Any, value: Any) -> None:
        for child in self.children:
            child.push(ctx, key, value)

    def stores(self) -> Iterable[StoreSpec]:
        for child in self.children:
            yield from child.stores()

    def sinks(self) -> Iterable[Topic]:
        for child in self.children:
            yield from child.sinks()

    def joins(self) -> Iterable[Table]:
        for child in self.children:
            yield from child.joins()


class _FlatMap(Node):
    def __init__(self, fn: Callable[[Any, Any], Iterable[KeyValue]]) -> None:
        super().__init__()
        self.fn = fn

    def push(self, ctx: Context, key: Any, value: Any) -> None:
        for out_key, out_value in self.fn(key, value):
            super().push(ctx, out_key, out_value)


class _Process(Node):
    def __init__(
        self, fn: Callable[[Any, Any, KeyValueStore], Iterable[KeyValue] | None], spec: StoreSpec
    ) -> None:
        super().__init__()
        self.fn = fn
        self.spec = spec

    def push(self, ctx: Context, key: Any, value: Any) -> None:
        results = self.fn(key, value, ctx.store(self.spec))
        for out_key, out_value in results or ():
            super().push(ctx, out_key, out_value)

    def stores(self) -> Iterable[StoreSpec]:
        yield self.spec
        yield from super().stores()


class _Sink(Node):
    def __init__(self, route: Callable[[Any, Any], Topic | None], topics: Sequence[Topic]) -> None:
        super().__init__()
        self.route = route
        self.topics = tuple(topics)

    def push(self, ctx: Context, key: Any, value: Any) -> None:
        topic = self.route(key, value)
        if topic is not None:
            ctx.emit(topic, key, value)

    def sinks(self) -> Iterable[Topic]:
        return self.topics


class Materialize(Node):
    """A table's source: key -> latest value in its store (None deletes)."""

    def __init__(self, spec: StoreSpec) -> None:
        super().__init__()
        self.spec = spec

    def push(self, ctx: Context, key: Any, value: Any) -> None:
        ctx.store(self.spec).put(key, value)

    def stores(self) -> Iterable[StoreSpec]:
        yield self.spec


@dataclass(frozen=True, slots=True)
class Table:
    """A topic read as a table: each key's latest value, in a store (`app.table`)."""

    topic: Topic
    spec: StoreSpec


class _Join(Node):
    def __init__(self, table: Table, fn: Callable[[Any, Any], Any], left: bool) -> None:
        super().__init__()
        self.table = table
        self.fn = fn
        self.left = left

    def push(self, ctx: Context, key: Any, value: Any) -> None:
        found = ctx.store(self.table.spec).get(key)
        if found is not None or self.left:
            super().push(ctx, key, self.fn(value, found))

    def joins(self) -> Iterable[Table]:
        yield self.table
        yield from super().joins()


class Sources(Protocol):
    """Where a stream can start from (the App)."""

    def repartition_topic(self, name: str, key: Serde | str, value: Serde | str) -> Topic: ...

    def stream(self, topic: Topic | str) -> Stream: ...


class Stream:
    """A stream of (key, value) records. Each method adds a step and returns the new stream;
    `to` and `branch` end it in output topics."""

    def __init__(self, node: Node, sources: Sources | None = None) -> None:
        self._node = node
        self._sources = sources

    def _then(self, node: Node) -> Stream:
        self._node.children.append(node)
        return Stream(node, self._sources)

    def group_by(
        self,
        fn: Callable[[Any, Any], Any],
        name: str,
        *,
        key: Serde | str = "json",
        value: Serde | str = "json",
    ) -> Stream:
        """Re-key the stream by fn(key, value) through the internal repartition topic
        `<application id>-<name>-repartition` (serdes `key`, `value`), so that what follows
        (a window, a store) sees every record of a new key in one partition. Under
        exactly_once the write to it commits with the input offsets, and it is read at
        read_committed, as Kafka Streams does."""
        if self._sources is None:
            raise ValueError("group_by needs a stream made by app.stream()")
        topic = self._sources.repartition_topic(name, key, value)
        self.map(lambda k, v: (fn(k, v), v)).to(topic)
        return self._sources.stream(topic)

    def join(self, table: Table, fn: Callable[[Any, Any], Any], *, left: bool = False) -> Stream:
        """Enrich each record with its key's current value in `table`: the value becomes
        fn(value, table value). Records whose key the table lacks are dropped, or with
        `left=True` passed on as fn(value, None). The stream's topic and the table's topic
        must have as many partitions (checked at start-up)."""
        return self._then(_Join(table, fn, left))

    def map(self, fn: Callable[[Any, Any], KeyValue]) -> Stream:
        """fn(key, value) -> (new key, new value)."""
        return self._then(_FlatMap(lambda k, v: (fn(k, v),)))

    def map_values(self, fn: Callable[[Any], Any]) -> Stream:
        """fn(value) -> new value; the key is kept."""
        return self._then(_FlatMap(lambda k, v: ((k, fn(v)),)))

    def filter(self, fn: Callable[[Any, Any], bool]) -> Stream:
        """Keep the records for which fn(key, value) is true."""
        return self._then(_FlatMap(lambda k, v: ((k, v),) if fn(k, v) else ()))

    def flat_map(self, fn: Callable[[Any, Any], Iterable[KeyValue]]) -> Stream:
        """fn(key, value) -> any number of (key, value)."""
        return self._then(_FlatMap(fn))

    def process(
        self,
        fn: Callable[[Any, Any, KeyValueStore], Iterable[KeyValue] | None],
        store: StoreSpec,
    ) -> Stream:
        """Stateful step: fn(key, value, store) reads and writes the store of the record's
        input partition and returns the records to pass on (or None for none)."""
        return self._then(_Process(fn, store))

    def to(self, topic: Topic) -> None:
        """Write every record to `topic` (partitioned by key)."""
        self._then(_Sink(lambda k, v: topic, (topic,)))

    def window(
        self,
        name: str,
        size_ms: int,
        *,
        advance_ms: int | None = None,
        sliding: bool = False,
        grace_ms: int = 0,
        emit: str = "update",
    ) -> Windowed:
        """Time windows over record timestamps (samsa/streams/windows.py), keyed by the
        record key; `name` names their store. Tumbling by default, hopping with `advance_ms`,
        sliding with `sliding=True`; records later than `grace_ms` are dropped; `emit`
        "update" (every change) or "final" (once, when the window closes). End it with an
        aggregation: the results are (key, {"start", "end", "value"})."""
        from samsa.streams.windows import Windows

        windows = Windows(size_ms, advance_ms or size_ms, grace_ms, sliding, emit)
        return Windowed(self, name, windows)

    def branch(
        self, *branches: tuple[Callable[[Any, Any], bool], Topic], default: Topic | None = None
    ) -> None:
        """Write each record to the topic of the first predicate(key, value) that holds, else
        to `default` (None: drop it)."""
        routes = tuple(branches)

        def route(key: Any, value: Any) -> Topic | None:
            for predicate, topic in routes:
                if predicate(key, value):
                    return topic
            return default

        topics = [t for _, t in routes] + ([default] if default is not None else [])
        self._then(_Sink(route, topics))


class Windowed:
    """A windowed stream; each aggregation returns the stream of window results."""

    def __init__(self, stream: Stream, name: str, windows: Any) -> None:
        self._stream = stream
        self._name = name
        self._windows = windows

    def aggregate(self, initial: Any, fn: Callable[[Any, Any], Any]) -> Stream:
        """fn(result, value) -> new result, starting from `initial` (a JSON value)."""
        return self._then(fn, lambda: copy.deepcopy(initial))

    def reduce(self, fn: Callable[[Any, Any], Any]) -> Stream:
        """fn(result, value) -> new result; a window's first value is its first result."""
        return self._then(fn, None)

    def count(self) -> Stream:
        return self.aggregate(0, lambda n, _value: n + 1)

    def sum(self, fn: Callable[[Any], Any] | None = None) -> Stream:
        """The sum of the values (or of fn(value))."""
        pick = fn or (lambda value: value)
        return self.aggregate(0, lambda total, value: total + pick(value))

    def _then(self, add: Callable[[Any, Any], Any], initial: Callable[[], Any] | None) -> Stream:
        from samsa.streams.windows import Aggregation, WindowAggregate

        node = WindowAggregate(self._name, self._windows, Aggregation(add, initial))
        return self._stream._then(node)
