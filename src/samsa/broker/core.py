"""The broker: state (topics, settings) plus a dispatch of decoded requests to handlers.

Handlers are plain functions `(broker, request) -> Outcome`: they run to completion, change state
without awaiting, and tell the server what to wait for (see `samsa.broker.outcomes`). Each reads
the request and writes the response of one version of its API, typed (`samsa.broker.routing`).
No sockets, no asyncio, no wall clock here: time comes from `clock_ms`, storage from `storage`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from samsa.broker import txn, unsupported
from samsa.broker.dynamic import DynamicBrokerConfigs
from samsa.broker.group_configs import GroupConfigs
from samsa.broker.handlers import HANDLERS
from samsa.broker.outcomes import Close, Outcome
from samsa.broker.topics import INTERNAL_TOPIC_CONFIGS, DataDirError, Topics
from samsa.config import BrokerConfig
from samsa.coordinator.group.consumer_machine import TopicsView
from samsa.coordinator.group.coordinator import GroupCoordinator, GroupSettings
from samsa.coordinator.producer_ids import ProducerIdManager
from samsa.coordinator.txn.coordinator import TransactionCoordinator, TxnSettings
from samsa.durability import Later
from samsa.log.storage import DirLock, Storage
from samsa.protocol import codec
from samsa.protocol.apis import ApiKey, is_served
from samsa.protocol.codec import DecodeError
from samsa.security.acl import Authorizer, parse_super_users
from samsa.security.acl_store import AclStore, AclStoreError
from samsa.security.credentials import CredentialsError, CredentialStore

log = logging.getLogger("samsa.broker")

CLEAN_SHUTDOWN_FILE = ".samsa_cleanshutdown"
TXN_TOPIC = "__transaction_state"
INTERNAL_TOPICS = (TXN_TOPIC, txn.OFFSETS_TOPIC)


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int


class Broker:
    def __init__(
        self,
        config: BrokerConfig,
        storage: Storage,
        data_dir: str,
        clock_ms: Callable[[], int],
        endpoint: Endpoint,
        new_uuid: Callable[[], uuid.UUID] | None = None,
    ) -> None:
        """`new_uuid` is where every random id comes from (cluster, topics, group members):
        the simulation passes a seeded one, so a seed replays them too. By default each id is
        `uuid.uuid4()`, looked up when the id is made."""
        self.config = config  # with the dynamic configs laid over it once open
        self.dynamic = DynamicBrokerConfigs(storage, data_dir, config)
        self.group_configs = GroupConfigs(storage, data_dir)
        self.credentials = CredentialStore(storage, data_dir)
        self.storage = storage
        self.data_dir = data_dir
        self.clock_ms = clock_ms
        self.endpoint = endpoint
        # Every listener's advertised endpoint by listener name (`endpoint` is the first's).
        self.endpoints: dict[str, Endpoint] = {}
        self.new_uuid = new_uuid if new_uuid is not None else _uuid4
        self.topics = Topics(storage, data_dir, config, self.new_uuid)
        self.cluster_id = ""
        self.producer_ids = ProducerIdManager(storage, data_dir)
        self.clean_start = True
        self._lock: DirLock | None = None
        self.txn: TransactionCoordinator  # set by open()
        self.groups: GroupCoordinator  # set by open()
        # Work the server runs in the background once its writes are durable (markers).
        self.background: list[Later] = []
        self.acls = AclStore(storage, data_dir)
        self.authorizer: Authorizer | None = None  # None: authorizer.class.name is empty
        # A test fixture only (`samsa.testing.principals`): client id -> the principal its
        # requests are taken to come from, standing in for an authenticated connection in
        # tests of the authorizer. Empty in production, where the listener sets the principal.
        self.test_principals: dict[str, str] = {}

    def endpoint_for(self, listener: str) -> Endpoint:
        """Where clients of `listener` connect: Kafka answers with the same listener's."""
        return self.endpoints.get(listener, self.endpoint)

    @property
    def node_id(self) -> int:
        return self.config.node_id

    def open(self) -> None:
        """Take the data dir (`DataDirLocked` if another broker has it) and load everything
        from it, recovering the logs if the last shutdown was not clean. `DataDirError` if it
        cannot be served; the lock is released again then."""
        self.storage.makedirs(self.data_dir)
        self._lock = self.storage.lock(self.data_dir)
        try:
            self._open()
        except BaseException:
            self.topics.close_files()
            self._lock.release()
            self._lock = None
            raise

    def _open(self) -> None:
        marker = os.path.join(self.data_dir, CLEAN_SHUTDOWN_FILE)
        self.clean_start = self.storage.exists(marker)
        fresh = not self.storage.exists(os.path.join(self.data_dir, "meta.properties"))
        self.cluster_id = self._load_cluster_id()
        try:
            self.acls.load()
            self.group_configs.load()
        except AclStoreError as exc:
            raise DataDirError(str(exc)) from None
        self.apply_config(self.dynamic.load())
        try:
            self.credentials.load()
        except CredentialsError as exc:
            raise DataDirError(str(exc)) from None
        started = time.monotonic()
        self.topics.load(self.clock_ms(), recover=not self.clean_start)
        self._log_recovery(time.monotonic() - started, fresh)
        self.producer_ids = ProducerIdManager(self.storage, self.data_dir)
        for name in INTERNAL_TOPICS:
            if name not in self.topics:
                self.topics.create(name, 1, INTERNAL_TOPIC_CONFIGS, self.clock_ms())
            internal = self.topics.partition(name, 0)
            if internal is not None and internal.offline is not None:
                # The coordinators are their logs' replay: without the log there is no state
                # to serve, and serving an empty one would forget offsets and transactions.
                raise DataDirError(
                    f"internal topic {name} is damaged ({internal.offline}); run "
                    f"`samsa log repair --data-dir {self.data_dir} --topic {name} --partition 0`"
                )
        txn_log = self.topics.partition(TXN_TOPIC, 0)
        if txn_log is None:
            raise RuntimeError(f"internal topic {TXN_TOPIC} has no partition 0")
        self.txn = TransactionCoordinator(
            txn_log,
            self.topics.partition,
            self.producer_ids.next_id,
            self.clock_ms,
            TxnSettings(
                self.config.transaction_max_timeout_ms, self.config.transactional_id_expiration_ms
            ),
            self.background.append,
        )
        self.txn.load()
        offsets_log = self.topics.partition(txn.OFFSETS_TOPIC, 0)
        if offsets_log is None:
            raise RuntimeError(f"internal topic {txn.OFFSETS_TOPIC} has no partition 0")
        self.groups = GroupCoordinator(
            offsets_log,
            self.clock_ms,
            GroupSettings(
                self.config.group_min_session_timeout_ms,
                self.config.group_max_session_timeout_ms,
                self.config.group_initial_rebalance_delay_ms,
                self.config.offset_metadata_max_bytes,
                self.config.group_consumer_session_timeout_ms,
                self.config.group_consumer_heartbeat_interval_ms,
                tuple(a.strip() for a in self.config.group_consumer_assignors.split(",")),
            ),
            self.background.append,
            self.new_uuid,
            self.topics_view,
        )
        self.groups.load()
        self.groups.consumer.group_configs = self.group_configs.parsed
        # From here on, a crash is an unclean shutdown.
        self.storage.remove(marker)
        self.storage.sync_dir(self.data_dir)

    def apply_config(self, config: BrokerConfig) -> None:
        """The broker's config changed (its dynamic configs): every topic follows at once."""
        self.config = config
        self.topics.reconfigure(config, self.dynamic.merged())
        self.authorizer = (
            Authorizer(
                self.acls,
                parse_super_users(config.super_users),
                config.allow_everyone_if_no_acl_found,
            )
            if config.authorizer_class_name
            else None
        )

    def topics_view(self) -> TopicsView:
        """The topics as consumer groups see them: name -> (topic id, partition count)."""
        topics = list(self.topics)
        return TopicsView(
            {t.name: (str(t.topic_id), len(t.partitions)) for t in topics},
            frozenset(t.name for t in topics if t.is_internal),
        )

    def take_background(self) -> list[Later]:
        work, self.background[:] = list(self.background), []
        return work

    def expire_producers(self) -> int:
        """Forget idle producers (`producer.id.expiration.ms`); returns how many."""
        now_ms = self.clock_ms()
        return sum(log.producers.remove_expired(now_ms) for log in self.topics.logs())

    def close(self) -> None:
        """Make everything durable and mark the shutdown clean, unless something could not be
        synced: then the next start recovers. The data dir is released last."""
        durable = self.topics.close()
        try:
            if durable:
                self.storage.write_atomic(os.path.join(self.data_dir, CLEAN_SHUTDOWN_FILE), b"")
            else:
                log.error("shutdown was not clean: the next start recovers the logs")
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def abandon(self) -> None:
        """What the kernel does when the process dies (for tests that crash a broker in
        process): every file closed, the data dir's lock dropped, nothing synced or written."""
        self.topics.close_files()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _log_recovery(self, seconds: float, fresh: bool) -> None:
        logs = [p for t in self.topics for p in t.partitions]
        reports = [r for p in logs for r in p.recovery]
        for partition_log in logs if not self.clean_start else []:
            rescanned = [r for r in partition_log.recovery if r.batches >= 0]
            if rescanned:
                log.info(
                    "recovered %s: %d segment(s) rescanned (%d batch(es)) and their indexes "
                    "rebuilt, %d byte(s) cut, %d producer batch(es) replayed",
                    partition_log.name,
                    len(rescanned),
                    sum(r.batches for r in rescanned),
                    sum(r.truncated_bytes for r in partition_log.recovery),
                    partition_log.batches_replayed,
                )
        offline = self.topics.offline()
        how = "no earlier" if fresh else "a clean" if self.clean_start else "an unclean"
        log.info(
            "loaded %d partition(s) after %s shutdown in %.3f s: %d segment(s), %d rescanned, "
            "%d byte(s) of torn tails cut, %d partition(s) offline",
            len(logs),
            how,
            seconds,
            len(reports),
            sum(1 for r in reports if r.batches >= 0),
            sum(r.truncated_bytes for r in reports),
            len(offline),
        )

    def _load_cluster_id(self) -> str:
        path = os.path.join(self.data_dir, "meta.properties")
        raw = self.storage.read_all(path)
        if raw:
            for line in raw.decode().splitlines():
                if line.startswith("cluster.id="):
                    return line.partition("=")[2]
        cluster_id = self.new_uuid().hex[:22]
        self.storage.write_atomic(
            path, f"version=1\ncluster.id={cluster_id}\nnode.id={self.node_id}\n".encode()
        )
        return cluster_id

    # ----------------------------------------------------------------- dispatch
    def handle_frame(
        self,
        data: bytes | memoryview,
        client_host: str = "",
        principal: str = "User:ANONYMOUS",
        listener: str = "",
    ) -> Outcome:
        """One request frame (without its size prefix) in, one outcome out. Never raises for
        anything a client sends. `client_host`: where it came from, as Kafka writes it;
        `principal`: who sent it; `listener`: the name of the listener it came in on."""
        try:
            prefix = codec.peek_prefix(data)
        except DecodeError as exc:
            return Close(str(exc))
        if prefix.api_key == ApiKey.API_VERSIONS and not is_served(
            prefix.api_key, prefix.api_version
        ):
            return unsupported.api_versions_fallback(prefix)
        if not is_served(prefix.api_key, prefix.api_version):
            return unsupported.respond(prefix, data)
        try:
            request = codec.decode_request(data, client_host, principal, listener)
        except DecodeError as exc:
            return Close(str(exc))
        if self.test_principals:
            stand_in = self.test_principals.get(request.client_id or "", principal)
            request = dataclasses.replace(request, principal=stand_in)
        handler = HANDLERS[ApiKey(prefix.api_key)]
        return handler(self, request)


def _uuid4() -> uuid.UUID:
    return uuid.uuid4()
