"""The broker's Prometheus endpoint (`prometheus.listener`): what it counts as it works, and what
it reads from its state when scraped. docs/metrics.md lists every metric.

Theory of operation. The hot path pays for little: each request costs one clock read when its
frame is taken and one histogram observation (`prometheus_client`, thread-safe) when its
response is built, labelled by API and by the response's first error code; bytes and
connections are plain integer additions. Everything else (offsets per partition, transactions,
producers, groups, consumer lag) is read at scrape time by `StateCollector`. The HTTP server
(prometheus_client's, on its own thread) must not read the broker's state while the event loop
changes it, so the collector hands the reading to the loop (`call_soon_threadsafe`) and waits
for the snapshot: a scrape sees one consistent moment, and costs the loop the time to walk the
partitions and groups, not more.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from samsa.broker.core import Broker
from samsa.config import ConfigError
from samsa.coordinator.txn.states import TxnState
from samsa.protocol.apis import ApiKey

log = logging.getLogger("samsa.server")

# Request latencies span sub-millisecond replies to long-polling fetches (fetch.max.wait.ms).
LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
FSYNC_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
)  # fmt: skip
# How long a scrape waits for the event loop to take its snapshot.
SNAPSHOT_TIMEOUT_S = 5.0
OPEN_TXN_STATES = frozenset({TxnState.ONGOING, TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT})


KNOWN_API_KEYS = frozenset(int(key) for key in ApiKey)


def api_name(key: int) -> str:
    """Kafka's name of an API (`Produce`, `InitProducerId`), as its request metrics label it;
    `Unknown` for a key samsa does not know."""
    try:
        return ApiKey(key).name.title().replace("_", "")
    except ValueError:
        return "Unknown"


def error_name(code: int) -> str:
    """Kafka's name of an error code (`NONE`, `NOT_LEADER_OR_FOLLOWER`)."""
    try:
        return ErrorCode(code).name.upper()
    except ValueError:
        return str(code)


def first_error(payload: Any) -> int:
    """The first non-zero `error_code` of a response, its own or its entries' (a produce
    response's partitions); 0 if none. Kafka's request metrics count each error code."""
    code = getattr(payload, "error_code", 0)
    if code:
        return int(code)
    if not dataclasses.is_dataclass(payload):
        return 0
    for name in _entries(type(payload)):
        for item in getattr(payload, name) or ():
            code = first_error(item)
            if code:
                return code
    return 0


_ENTRIES: dict[type, tuple[str, ...]] = {}


def _entries(kind: type) -> tuple[str, ...]:
    """The fields of a kio response class that hold entries with error codes in them (arrays,
    nullable or not, of classes that have an `error_code` field, or entries that do)."""
    known = _ENTRIES.get(kind)
    if known is not None:
        return known
    names = []
    for item in dataclasses.fields(kind):
        options = typing.get_args(item.type) if isinstance(item.type, types.UnionType) else ()
        for option in options or (item.type,):
            element = typing.get_args(option)[0] if typing.get_origin(option) is tuple else None
            if isinstance(element, type) and dataclasses.is_dataclass(element):
                fields = {f.name for f in dataclasses.fields(element)}
                if "error_code" in fields or _entries(element):
                    names.append(item.name)
                    break
    _ENTRIES[kind] = tuple(names)
    return _ENTRIES[kind]


@dataclass(slots=True)
class RequestTiming:
    """One request from its frame being taken until its response is built."""

    api_key: int
    started_s: float


@dataclass(slots=True)
class Traffic:
    """Counted on the hot path as plain integers; read at scrape time."""

    bytes_received: int = 0
    bytes_sent: int = 0
    connections_accepted: int = 0
    connections_closed: int = 0


class ServerView(Protocol):
    """What the collector reads from the server."""

    broker: Broker
    connections: set[Any]
    listeners: list[Any]  # each with `refused`: connections closed at once over a limit


class BrokerMetrics:
    """The hot path's instruments, and the scrape-time collector, in one registry."""

    def __init__(self, registry: CollectorRegistry, server: ServerView) -> None:
        self.traffic = Traffic()
        self._latency = Histogram(
            "samsa_request_duration_seconds",
            "Requests from the frame taken until the response built, by API and the "
            "response's first error code",
            ["api", "error"],
            registry=registry,
            buckets=LATENCY_BUCKETS_S,
        )
        self.fsync = Histogram(
            "samsa_fsync_duration_seconds",
            "fsync of one partition's new writes in a group-commit round",
            registry=registry,
            buckets=FSYNC_BUCKETS_S,
        )
        self._children: dict[tuple[int, int], Any] = {}
        registry.register(StateCollector(server, self.traffic))

    def start(self, frame: memoryview) -> RequestTiming:
        api_key = int.from_bytes(frame[:2], "big", signed=True) if len(frame) >= 2 else -1
        # A client picks the key: every one samsa does not know shares one label value, so
        # no client can make the label set (and the registry's memory) grow without bound.
        return RequestTiming(api_key if api_key in KNOWN_API_KEYS else -1, time.perf_counter())

    def finished(self, timing: RequestTiming, payload: Any) -> None:
        """The response to `timing`'s request is built (`payload` None: it has none)."""
        code = 0 if payload is None else first_error(payload)
        key = (timing.api_key, code)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._latency.labels(
                api_name(timing.api_key), error_name(code)
            )
        child.observe(time.perf_counter() - timing.started_s)

    def fsync_timer(self, run: Callable[[], None]) -> Callable[[], None]:
        """`run` (a partition's fsync, on a worker thread), timed."""

        def timed() -> None:
            started = time.perf_counter()
            try:
                run()
            finally:
                self.fsync.observe(time.perf_counter() - started)

        return timed


# ----------------------------------------------------------------- scrape time
@dataclass(frozen=True, slots=True)
class PartitionRow:
    topic: str
    partition: int
    log_start_offset: int
    log_end_offset: int
    high_watermark: int
    last_stable_offset: int
    producer_ids: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    partitions: list[PartitionRow]
    txn_states: dict[str, int]
    oldest_open_txn_age_s: float
    groups: dict[tuple[str, str], int]  # (type, state) -> groups
    lag: list[tuple[str, str, int, int, int]]  # group, topic, partition, committed, lag
    connections_open: int
    connections_refused: int
    traffic: Traffic = field(default_factory=Traffic)


def snapshot(server: ServerView, traffic: Traffic) -> Snapshot:
    """The broker's state as metrics show it; runs on the event loop."""
    broker = server.broker
    now_ms = broker.clock_ms()
    partitions: list[PartitionRow] = []
    high_watermarks: dict[tuple[str, int], int] = {}
    for log_ in broker.topics.logs():
        if log_.offline is not None:
            continue
        high_watermarks[(log_.topic, log_.partition)] = log_.high_watermark
        partitions.append(
            PartitionRow(
                log_.topic,
                log_.partition,
                log_.log_start_offset,
                log_.log_end_offset,
                log_.high_watermark,
                log_.last_stable_offset,
                len(log_.producers),
            )
        )
    txn_states: dict[str, int] = {state.value: 0 for state in TxnState}
    oldest_start_ms: int | None = None
    for meta in broker.txn.txns.values():
        txn_states[meta.state.value] += 1
        if meta.state in OPEN_TXN_STATES and meta.start_ms >= 0:
            oldest_start_ms = min(meta.start_ms, oldest_start_ms or meta.start_ms)
    groups: dict[tuple[str, str], int] = {}
    for group in broker.groups.all_groups():
        key = (group.type.value, group.state.value)
        groups[key] = groups.get(key, 0) + 1
    lag = []
    for (group_id, topic, partition), committed in broker.groups.offsets.committed.items():
        high_watermark = high_watermarks.get((topic, partition))
        if high_watermark is not None:
            behind = max(high_watermark - committed.offset, 0)
            lag.append((group_id, topic, partition, committed.offset, behind))
    return Snapshot(
        partitions,
        txn_states,
        0.0 if oldest_start_ms is None else max(now_ms - oldest_start_ms, 0) / 1000,
        groups,
        lag,
        len(server.connections),
        sum(listener.refused for listener in server.listeners),
        dataclasses.replace(traffic),
    )


class StateCollector:
    """A prometheus_client collector whose values are read, at each scrape, on the loop."""

    def __init__(self, server: ServerView, traffic: Traffic) -> None:
        self._server = server
        self._traffic = traffic
        self.loop = asyncio.get_running_loop()

    def describe(self) -> Iterable[Metric]:
        return []  # registered without a describe-time collect: the loop may not be running

    def collect(self) -> Iterator[Metric]:
        taken: concurrent.futures.Future[Snapshot] = concurrent.futures.Future()

        def take() -> None:
            try:
                taken.set_result(snapshot(self._server, self._traffic))
            except BaseException as exc:  # reported to the scrape, not the loop
                taken.set_exception(exc)

        try:
            self.loop.call_soon_threadsafe(take)
            state = taken.result(SNAPSHOT_TIMEOUT_S)
        except (RuntimeError, concurrent.futures.TimeoutError) as exc:  # the loop is closed
            log.warning("metrics: no snapshot of the broker's state: %r", exc)
            return
        yield from families(state)


def families(state: Snapshot) -> Iterator[Metric]:
    labels = ["topic", "partition"]
    per_partition = {
        "log_start_offset": ("samsa_log_start_offset", "First offset a read may ask for"),
        "log_end_offset": ("samsa_log_end_offset", "Offset of the next record written"),
        "high_watermark": ("samsa_high_watermark", "End of the durable records readers see"),
        "last_stable_offset": (
            "samsa_last_stable_offset",
            "End of what read_committed readers see: below it every transaction is decided",
        ),
        "producer_ids": ("samsa_producer_ids", "Producer ids this partition tracks"),
    }
    for attribute, (name, doc) in per_partition.items():
        gauge = GaugeMetricFamily(name, doc, labels=labels)
        for row in state.partitions:
            gauge.add_metric([row.topic, str(row.partition)], getattr(row, attribute))
        yield gauge
    lso_lag = GaugeMetricFamily(
        "samsa_lso_lag",
        "High watermark minus last stable offset: records open transactions hold back from "
        "read_committed readers",
        labels=labels,
    )
    for row in state.partitions:
        lso_lag.add_metric(
            [row.topic, str(row.partition)], row.high_watermark - row.last_stable_offset
        )
    yield lso_lag
    by_state = GaugeMetricFamily(
        "samsa_transactional_ids", "Transactional ids by transaction state", labels=["state"]
    )
    for txn_state, count in state.txn_states.items():
        by_state.add_metric([txn_state], count)
    yield by_state
    yield GaugeMetricFamily(
        "samsa_transactions_open",
        "Transactions begun and not yet completed (Ongoing, PrepareCommit, PrepareAbort)",
        value=sum(state.txn_states[s.value] for s in OPEN_TXN_STATES),
    )
    yield GaugeMetricFamily(
        "samsa_transaction_oldest_open_age_seconds",
        "Age of the oldest open transaction (0: none open)",
        value=state.oldest_open_txn_age_s,
    )
    groups = GaugeMetricFamily("samsa_groups", "Groups by type and state", labels=["type", "state"])
    for (group_type, group_state), count in sorted(state.groups.items()):
        groups.add_metric([group_type, group_state], count)
    yield groups
    committed = GaugeMetricFamily(
        "samsa_consumer_group_committed_offset",
        "A group's committed offset",
        labels=["group", *labels],
    )
    lag = GaugeMetricFamily(
        "samsa_consumer_group_lag",
        "High watermark minus the group's committed offset",
        labels=["group", *labels],
    )
    for group_id, topic, partition, offset, behind in state.lag:
        committed.add_metric([group_id, topic, str(partition)], offset)
        lag.add_metric([group_id, topic, str(partition)], behind)
    yield committed
    yield lag
    yield GaugeMetricFamily(
        "samsa_connections_open", "Client connections open", value=state.connections_open
    )
    traffic = state.traffic
    for name, doc, value in (
        ("samsa_connections_accepted", "Client connections accepted", traffic.connections_accepted),
        ("samsa_connections_closed", "Client connections closed", traffic.connections_closed),
        (
            "samsa_connections_refused",
            "Connections closed at once: over max.connections, max.connections.per.ip, or the "
            "file descriptors connections may use",
            state.connections_refused,
        ),
        ("samsa_bytes_received", "Bytes read from client connections", traffic.bytes_received),
        ("samsa_bytes_sent", "Bytes written to client connections", traffic.bytes_sent),
    ):
        yield CounterMetricFamily(name, doc, value=value)


class Exporter:
    """The HTTP endpoint: prometheus_client's server on its own thread, serving `registry`."""

    def __init__(self, listener: str) -> None:
        """Bind `prometheus.listener` (`host:port`, checked by `samsa.config`); ConfigError if
        it cannot."""
        host, _, port = listener.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        self.registry = CollectorRegistry(auto_describe=False)
        try:
            self._httpd, self._thread = start_http_server(int(port), host, self.registry)
        except OSError as exc:
            raise ConfigError(f"prometheus.listener={listener}: cannot listen: {exc}") from None
        self.host = host
        self.port: int = self._httpd.server_port
        log.info("metrics at http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
