"""The console's view of a Kafka cluster: requests routed to the broker that must answer them.

Theory of operation: Metadata gives the brokers and each partition's leader; a partition's
Fetch, ListOffsets, DescribeProducers and WriteTxnMarkers go to its leader; a group's or a
transactional id's requests go to its coordinator (FindCoordinator); ListGroups and
ListTransactions go to every broker, as Kafka's admin client does. One `AdminClient` connection
per broker, opened on first use and dropped on any error (the next request reconnects).

Every request passes one lock and one `RequestBudget` (a token bucket): however many browsers
are open, the console sends at most `requests_per_s` requests to the cluster. Before the first
request of an API to a broker, ApiVersions says whether the broker has it: librdkafka's mock
cluster, for one, lacks the admin APIs, and the views say so (`Unsupported`) instead of failing.

A one-broker cluster is reached at the bootstrap address whatever it advertises (samsa's demos
advertise a fault-injecting proxy that the console should not go through).
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from kio.schema.api_versions.v2.request import ApiVersionsRequest
from kio.schema.api_versions.v2.response import ApiVersionsResponse
from kio.schema.describe_groups.v5.request import DescribeGroupsRequest
from kio.schema.describe_groups.v5.response import DescribedGroup, DescribeGroupsResponse
from kio.schema.describe_producers.v0.response import DescribeProducersResponse, ProducerState
from kio.schema.describe_transactions.v0.request import DescribeTransactionsRequest
from kio.schema.describe_transactions.v0.response import (
    DescribeTransactionsResponse,
)
from kio.schema.describe_transactions.v0.response import (
    TransactionState as DescribedTransaction,
)
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.fetch.v12.response import FetchResponse
from kio.schema.find_coordinator.v3.request import FindCoordinatorRequest
from kio.schema.find_coordinator.v3.response import FindCoordinatorResponse
from kio.schema.list_groups.v4.request import ListGroupsRequest
from kio.schema.list_groups.v4.response import ListedGroup, ListGroupsResponse
from kio.schema.list_transactions.v0.request import ListTransactionsRequest
from kio.schema.list_transactions.v0.response import ListTransactionsResponse
from kio.schema.list_transactions.v0.response import TransactionState as ListedTransaction
from kio.schema.metadata.v12.request import MetadataRequest
from kio.schema.offset_commit.v8.request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kio.schema.offset_commit.v8.response import OffsetCommitResponse
from kio.schema.offset_fetch.v6.request import OffsetFetchRequest, OffsetFetchRequestTopic
from kio.schema.offset_fetch.v6.response import OffsetFetchResponse
from kio.schema.types import GroupId, TopicName, TransactionalId
from kio.static.primitive import i8, i32, i32Timedelta, i64

from samsa.admin.client import (
    EARLIEST_TIMESTAMP as EARLIEST_TIMESTAMP,
)
from samsa.admin.client import (
    LATEST_TIMESTAMP as LATEST_TIMESTAMP,
)
from samsa.admin.client import (
    READ_UNCOMMITTED,
    AdminClient,
    AdminError,
)
from samsa.admin.security import ClientSecurity
from samsa.protocol.apis import ApiKey

BOOTSTRAP_NODE = -1
METADATA_MAX_AGE_S = 10.0
FETCH_BYTES_MAX = 1 << 20
GROUP_KEY, TRANSACTION_KEY = 0, 1  # FindCoordinator key types

TopicPartition = tuple[str, int]
T = TypeVar("T")


class Unsupported(Exception):
    """Raised by `Cluster` when a broker lacks an API a view needs (its ApiVersions does not
    list it); the view shows which API is missing instead of the data."""

    def __init__(self, api: ApiKey, node: int) -> None:
        super().__init__(f"the cluster does not support {api.name} (api key {int(api)})")
        self.api = api
        self.node = node


class RequestBudget:
    """A token bucket: `take()` waits until one request may go. `rate_per_s` tokens a second,
    at most `burst` saved up; the clock and sleep are parameters so a test can drive them."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int = 5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._at = clock()
        self.taken = 0

    def take(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now
        if self._tokens < 1:
            self._sleep((1 - self._tokens) / self.rate_per_s)
            self._tokens = 1.0
            self._at = self._clock()
        self._tokens -= 1
        self.taken += 1


@dataclass(frozen=True, slots=True)
class PartitionMeta:
    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    internal: bool


@dataclass(frozen=True, slots=True)
class Metadata:
    cluster_id: str | None
    controller: int
    brokers: dict[int, tuple[str, int]]
    partitions: dict[TopicPartition, PartitionMeta]

    def topics(self) -> dict[str, list[PartitionMeta]]:
        found: dict[str, list[PartitionMeta]] = {}
        for meta in sorted(self.partitions.values(), key=lambda m: (m.topic, m.partition)):
            found.setdefault(meta.topic, []).append(meta)
        return found


@dataclass(frozen=True, slots=True)
class FetchedPartition:
    error: ErrorCode
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    aborted: tuple[tuple[int, int], ...]  # (producer id, first offset), as Fetch reports them
    records: bytes


class Cluster:
    def __init__(
        self,
        bootstrap: str,
        security: ClientSecurity | None = None,
        budget: RequestBudget | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security or ClientSecurity()
        self.budget = budget or RequestBudget(5.0)
        self.timeout_s = timeout_s
        self._lock = threading.RLock()
        self._conns: dict[int, AdminClient] = {}
        self._versions: dict[int, dict[int, tuple[int, int]]] = {}
        self._metadata: Metadata | None = None
        self._metadata_at = 0.0
        self._coordinators: dict[tuple[int, str], int] = {}

    def retarget(self, bootstrap: str) -> None:
        """Forget everything about the cluster and bootstrap from `bootstrap` next time."""
        with self._lock:
            self.close()
            self.bootstrap = bootstrap
            self._versions.clear()
            self._metadata = None
            self._coordinators.clear()

    def close(self) -> None:
        with self._lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()

    # ------------------------------------------------------------------ connections
    def _address(self, node: int) -> str:
        if not self.bootstrap:
            raise AdminError("no cluster yet (a demo's console waits for its broker)")
        if node == BOOTSTRAP_NODE or (
            self._metadata is not None and len(self._metadata.brokers) == 1
        ):
            return self.bootstrap
        if self._metadata is None or node not in self._metadata.brokers:
            raise AdminError(f"broker {node} is not in the cluster's metadata")
        host, port = self._metadata.brokers[node]
        return f"{host}:{port}"

    def _exchange(self, node: int, call: Callable[[AdminClient], T]) -> T:
        """Run one request on broker `node`'s connection (opened if need be), within budget."""
        with self._lock:
            conn = self._conns.get(node)
            if conn is None:
                self.budget.take()  # a connection costs the broker a TLS/SASL exchange at most
                address = self._address(node)
                conn = AdminClient(address, self.timeout_s, "samsa-console", self.security)
                self._conns[node] = conn
            self.budget.take()
            try:
                return call(conn)
            except AdminError:
                conn.close()
                del self._conns[node]
                raise

    def _require(self, node: int, api: ApiKey, version: int) -> None:
        with self._lock:
            versions = self._versions.get(node)
            if versions is None:
                response: ApiVersionsResponse = self._exchange(
                    node, lambda conn: conn.send(ApiVersionsRequest())
                )
                versions = {
                    int(k.api_key): (int(k.min_version), int(k.max_version))
                    for k in response.api_keys
                }
                self._versions[node] = versions
            low, high = versions.get(int(api), (1, 0))
            if not low <= version <= high:
                raise Unsupported(api, node)

    def call(self, node: int, api: ApiKey, version: int, call: Callable[[AdminClient], T]) -> T:
        """`call` on broker `node`'s connection once the broker says it speaks `api` at
        `version`."""
        with self._lock:
            self._require(node, api, version)
            return self._exchange(node, call)

    def request(self, node: int, api: ApiKey, request: Any) -> Any:
        """Send a kio request to broker `node` (if it speaks that API version)."""
        version = int(type(request).__version__)
        return self.call(node, api, version, lambda conn: conn.send(request))

    # ------------------------------------------------------------------ metadata
    def metadata(self, max_age_s: float = METADATA_MAX_AGE_S) -> Metadata:
        with self._lock:
            now = time.monotonic()
            if self._metadata is not None and now - self._metadata_at < max_age_s:
                return self._metadata
            node = next(iter(self._conns), BOOTSTRAP_NODE)
            response = self.request(
                node,
                ApiKey.METADATA,
                MetadataRequest(
                    topics=None,
                    allow_auto_topic_creation=False,
                    include_topic_authorized_operations=False,
                ),
            )
            self._metadata = Metadata(
                cluster_id=response.cluster_id,
                controller=int(response.controller_id),
                brokers={int(b.node_id): (b.host, int(b.port)) for b in response.brokers},
                partitions={
                    (str(t.name), int(p.partition_index)): PartitionMeta(
                        str(t.name),
                        int(p.partition_index),
                        int(p.leader_id),
                        tuple(int(r) for r in p.replica_nodes),
                        tuple(int(r) for r in p.isr_nodes),
                        bool(t.is_internal),
                    )
                    for t in response.topics
                    if t.name is not None and t.error_code == ErrorCode.none
                    for p in t.partitions
                },
            )
            self._metadata_at = now
            return self._metadata

    def forget_metadata(self) -> None:
        """After a NOT_LEADER or NOT_COORDINATOR answer: ask again next time."""
        with self._lock:
            self._metadata_at = 0.0
            self._coordinators.clear()

    def leaders(self, partitions: Iterable[TopicPartition]) -> dict[int, list[TopicPartition]]:
        metadata = self.metadata()
        by_leader: dict[int, list[TopicPartition]] = {}
        for where in partitions:
            meta = metadata.partitions.get(where)
            if meta is not None and meta.leader >= 0:
                by_leader.setdefault(meta.leader, []).append(where)
        return by_leader

    def coordinator(self, key_type: int, key: str) -> int:
        with self._lock:
            found = self._coordinators.get((key_type, key))
            if found is not None:
                return found
            metadata = self.metadata()
            node = next(iter(metadata.brokers), BOOTSTRAP_NODE)
            response: FindCoordinatorResponse = self.request(
                node,
                ApiKey.FIND_COORDINATOR,
                FindCoordinatorRequest(key=key, key_type=i8(key_type)),
            )
            if response.error_code != ErrorCode.none:
                raise AdminError(f"FindCoordinator {key!r}: {response.error_code.name}")
            self._coordinators[(key_type, key)] = int(response.node_id)
            return int(response.node_id)

    # ------------------------------------------------------------------ partitions
    def fetch(
        self, topic: str, partition: int, offset: int, isolation_level: int = READ_UNCOMMITTED
    ) -> FetchedPartition:
        """Raw Fetch: every batch, control batches too, up to the high watermark at
        read_uncommitted; at read_committed up to the LSO, with the aborted-transactions list a
        read_committed reader filters by (brokers send that list only at read_committed)."""
        node = next(iter(self.leaders([(topic, partition)])), None)
        if node is None:
            raise AdminError(f"{topic}-{partition} has no leader")
        response: FetchResponse = self.request(
            node,
            ApiKey.FETCH,
            FetchRequest(
                max_wait=i32Timedelta.parse(datetime.timedelta(0)),
                min_bytes=i32(0),
                max_bytes=i32(FETCH_BYTES_MAX),
                isolation_level=i8(isolation_level),
                topics=(
                    FetchTopic(
                        topic=TopicName(topic),
                        partitions=(
                            FetchPartition(
                                partition=i32(partition),
                                fetch_offset=i64(offset),
                                partition_max_bytes=i32(FETCH_BYTES_MAX),
                            ),
                        ),
                    ),
                ),
                forgotten_topics_data=(),
            ),
        )
        data = response.responses[0].partitions[0]
        if data.error_code in (
            ErrorCode.not_leader_or_follower,
            ErrorCode.unknown_topic_or_partition,
        ):
            self.forget_metadata()
        return FetchedPartition(
            error=data.error_code,
            high_watermark=int(data.high_watermark),
            last_stable_offset=int(data.last_stable_offset),
            log_start_offset=int(data.log_start_offset),
            aborted=tuple(
                (int(a.producer_id), int(a.first_offset)) for a in data.aborted_transactions or ()
            ),
            records=bytes(data.records or b""),
        )

    def list_offsets(
        self, partitions: Iterable[TopicPartition], isolation_level: int, timestamp: int
    ) -> dict[TopicPartition, int]:
        """(topic, partition) -> offset, one ListOffsets per leader. `LATEST_TIMESTAMP` gives
        the high watermark (read_uncommitted) or the last stable offset (read_committed);
        `EARLIEST_TIMESTAMP` the log start offset."""
        found: dict[TopicPartition, int] = {}
        for node, wanted in self.leaders(partitions).items():
            found.update(
                self.call(
                    node,
                    ApiKey.LIST_OFFSETS,
                    7,
                    _list_offsets(_by_topic(wanted), isolation_level, timestamp),
                )
            )
        return found

    def describe_producers(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, tuple[ProducerState, ...]]:
        found: dict[TopicPartition, tuple[ProducerState, ...]] = {}
        for node, wanted in self.leaders(partitions).items():
            by_topic = _by_topic(wanted)
            response = self.call(node, ApiKey.DESCRIBE_PRODUCERS, 0, _describe_producers(by_topic))
            for answer in response.topics:
                for p in answer.partitions:
                    if p.error_code == ErrorCode.none:
                        found[(str(answer.name), int(p.partition_index))] = p.active_producers
        return found

    # ------------------------------------------------------------------ transactions
    def list_transactions(self) -> list[ListedTransaction]:
        found: list[ListedTransaction] = []
        for node in self.metadata().brokers:
            response: ListTransactionsResponse = self.request(
                node,
                ApiKey.LIST_TRANSACTIONS,
                ListTransactionsRequest(state_filters=(), producer_id_filters=()),
            )
            found.extend(response.transaction_states)
        return found

    def describe_transactions(self, transactional_ids: Iterable[str]) -> list[DescribedTransaction]:
        by_node: dict[int, list[str]] = {}
        for transactional_id in transactional_ids:
            node = self.coordinator(TRANSACTION_KEY, transactional_id)
            by_node.setdefault(node, []).append(transactional_id)
        found: list[DescribedTransaction] = []
        for node, ids in by_node.items():
            response: DescribeTransactionsResponse = self.request(
                node,
                ApiKey.DESCRIBE_TRANSACTIONS,
                DescribeTransactionsRequest(
                    transactional_ids=tuple(TransactionalId(t) for t in ids)
                ),
            )
            found.extend(response.transaction_states)
        return found

    def abort_transaction(
        self,
        topic: str,
        partition: int,
        producer_id: int,
        producer_epoch: int,
        coordinator_epoch: int,
    ) -> ErrorCode:
        """Write an ABORT marker (KIP-664's abortTransaction), to the partition's leader."""
        node = next(iter(self.leaders([(topic, partition)])), None)
        if node is None:
            raise AdminError(f"{topic}-{partition} has no leader")
        written = self.call(
            node,
            ApiKey.WRITE_TXN_MARKERS,
            1,
            lambda conn: conn.write_txn_markers(
                topic, partition, producer_id, producer_epoch, coordinator_epoch, commit=False
            ),
        )
        for marker in written.markers:
            for t in marker.topics:
                for p in t.partitions:
                    if p.error_code != ErrorCode.none:
                        return p.error_code
        return ErrorCode.none

    # ------------------------------------------------------------------ groups
    def list_groups(self) -> list[ListedGroup]:
        found: dict[str, ListedGroup] = {}
        for node in self.metadata().brokers:
            response: ListGroupsResponse = self.request(
                node, ApiKey.LIST_GROUPS, ListGroupsRequest(states_filter=())
            )
            found.update((str(g.group_id), g) for g in response.groups)
        return [found[g] for g in sorted(found)]

    def describe_group(self, group: str) -> DescribedGroup:
        node = self.coordinator(GROUP_KEY, group)
        response: DescribeGroupsResponse = self.request(
            node,
            ApiKey.DESCRIBE_GROUPS,
            DescribeGroupsRequest(groups=(GroupId(group),), include_authorized_operations=False),
        )
        return response.groups[0]

    def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        node = self.coordinator(GROUP_KEY, group)
        # Every topic by name, rather than null for "all": librdkafka's mock answers null with
        # nothing.
        topics = tuple(
            OffsetFetchRequestTopic(
                name=TopicName(topic), partition_indexes=tuple(i32(m.partition) for m in partitions)
            )
            for topic, partitions in self.metadata().topics().items()
            if not partitions[0].internal
        )
        response: OffsetFetchResponse = self.request(
            node, ApiKey.OFFSET_FETCH, OffsetFetchRequest(group_id=GroupId(group), topics=topics)
        )
        if response.error_code != ErrorCode.none:
            raise AdminError(f"OffsetFetch {group!r}: {response.error_code.name}")
        return {
            (str(t.name), int(p.partition_index)): int(p.committed_offset)
            for t in response.topics or ()
            for p in t.partitions
            if p.error_code == ErrorCode.none and int(p.committed_offset) >= 0
        }

    def reset_offsets(self, group: str, offsets: dict[TopicPartition, int]) -> ErrorCode:
        """Commit `offsets` for an empty group, as kafka-consumer-groups --reset-offsets does
        (generation -1, no member: the coordinator refuses it while the group has members)."""
        node = self.coordinator(GROUP_KEY, group)
        by_topic: dict[str, list[tuple[int, int]]] = {}
        for (topic, index), offset in offsets.items():
            by_topic.setdefault(topic, []).append((index, offset))
        response: OffsetCommitResponse = self.request(
            node,
            ApiKey.OFFSET_COMMIT,
            OffsetCommitRequest(
                group_id=GroupId(group),
                generation_id_or_member_epoch=i32(-1),
                member_id="",
                group_instance_id=None,
                topics=tuple(
                    OffsetCommitRequestTopic(
                        name=TopicName(topic),
                        partitions=tuple(
                            OffsetCommitRequestPartition(
                                partition_index=i32(index),
                                committed_offset=i64(offset),
                                committed_leader_epoch=i32(-1),
                                committed_metadata="",
                            )
                            for index, offset in pairs
                        ),
                    )
                    for topic, pairs in by_topic.items()
                ),
            ),
        )
        for t in response.topics:
            for p in t.partitions:
                if p.error_code != ErrorCode.none:
                    return p.error_code
        return ErrorCode.none


def _describe_producers(
    by_topic: dict[str, list[int]],
) -> Callable[[AdminClient], DescribeProducersResponse]:
    return lambda conn: conn.describe_producers(by_topic)


def _by_topic(partitions: Iterable[TopicPartition]) -> dict[str, list[int]]:
    by_topic: dict[str, list[int]] = {}
    for topic, index in partitions:
        by_topic.setdefault(topic, []).append(index)
    return by_topic


def _list_offsets(
    by_topic: dict[str, list[int]], isolation_level: int, timestamp: int
) -> Callable[[AdminClient], dict[TopicPartition, int]]:
    return lambda conn: conn.list_offsets(by_topic, isolation_level, timestamp)
