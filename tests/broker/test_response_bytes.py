"""Every served API and version answers a fixed script of requests with the same bytes as
recorded in `response_bytes.json`.

The broker runs in process, on a fixed clock and seeded ids (cluster,
topic and member ids come from `uuid.uuid4`), so its answers are a function of the script alone.
The recording pins the handlers' wire behaviour: a change to how a handler builds its response
that changes a byte of any version's answer fails here, with the request that shows it.

Each request is written once, at the highest version samsa serves, and sent at every served
version its shape exists in (converted with `samsa.protocol.versions.convert`). Not-served
versions (Produce v0-2, ApiVersions v4, Metadata v13, an unserved API) are in the script too.

`SAMSA_RECORD_RESPONSES=1` rewrites the recording: only for a deliberate change of behaviour.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from kio.schema.add_offsets_to_txn.v3.request import AddOffsetsToTxnRequest
from kio.schema.add_partitions_to_txn.v3.request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
)
from kio.schema.alter_configs.v2.request import (
    AlterableConfig,
    AlterConfigsRequest,
    AlterConfigsResource,
)
from kio.schema.alter_user_scram_credentials.v0.request import (
    AlterUserScramCredentialsRequest,
    ScramCredentialDeletion,
    ScramCredentialUpsertion,
)
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.api_versions.v4.request import ApiVersionsRequest as ApiVersionsRequestV4
from kio.schema.consumer_group_describe.v1.request import ConsumerGroupDescribeRequest
from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest
from kio.schema.create_acls.v3.request import AclCreation, CreateAclsRequest
from kio.schema.create_partitions.v3.request import (
    CreatePartitionsAssignment,
    CreatePartitionsRequest,
    CreatePartitionsTopic,
)
from kio.schema.create_topics.v7.request import (
    CreatableReplicaAssignment,
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
)
from kio.schema.delete_acls.v3.request import DeleteAclsFilter, DeleteAclsRequest
from kio.schema.delete_groups.v2.request import DeleteGroupsRequest
from kio.schema.delete_records.v2.request import (
    DeleteRecordsPartition,
    DeleteRecordsRequest,
    DeleteRecordsTopic,
)
from kio.schema.delete_topics.v5.request import DeleteTopicsRequest as DeleteTopicsRequestV5
from kio.schema.delete_topics.v6.request import DeleteTopicsRequest, DeleteTopicState
from kio.schema.describe_acls.v3.request import DescribeAclsRequest
from kio.schema.describe_cluster.v1.request import DescribeClusterRequest
from kio.schema.describe_configs.v4.request import DescribeConfigsRequest, DescribeConfigsResource
from kio.schema.describe_groups.v5.request import DescribeGroupsRequest
from kio.schema.describe_log_dirs.v5.request import (
    DescribableLogDirTopic,
    DescribeLogDirsRequest,
)
from kio.schema.describe_producers.v0.request import DescribeProducersRequest, TopicRequest
from kio.schema.describe_topic_partitions.v0.request import (
    Cursor,
    DescribeTopicPartitionsRequest,
)
from kio.schema.describe_topic_partitions.v0.request import TopicRequest as DescribedTopic
from kio.schema.describe_transactions.v0.request import DescribeTransactionsRequest
from kio.schema.describe_user_scram_credentials.v0.request import (
    DescribeUserScramCredentialsRequest,
)
from kio.schema.describe_user_scram_credentials.v0.request import UserName as ScramUserName
from kio.schema.end_txn.v4.request import EndTxnRequest
from kio.schema.fetch.v12.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.find_coordinator.v3.request import (
    FindCoordinatorRequest as FindCoordinatorRequestV3,
)
from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest
from kio.schema.heartbeat.v4.request import HeartbeatRequest
from kio.schema.incremental_alter_configs.v1.request import AlterableConfig as IncrementalConfig
from kio.schema.incremental_alter_configs.v1.request import (
    AlterConfigsResource as IncrementalResource,
)
from kio.schema.incremental_alter_configs.v1.request import IncrementalAlterConfigsRequest
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.join_group.v9.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.leave_group.v2.request import LeaveGroupRequest as LeaveGroupRequestV2
from kio.schema.leave_group.v5.request import LeaveGroupRequest, MemberIdentity
from kio.schema.list_groups.v5.request import ListGroupsRequest
from kio.schema.list_offsets.v7.request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kio.schema.list_transactions.v1.request import ListTransactionsRequest
from kio.schema.metadata.v10.request import MetadataRequest as MetadataRequestV10
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.offset_commit.v8.request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kio.schema.offset_commit.v9.request import OffsetCommitRequest as OffsetCommitRequestV9
from kio.schema.offset_commit.v9.request import (
    OffsetCommitRequestPartition as OffsetCommitRequestPartitionV9,
)
from kio.schema.offset_commit.v9.request import (
    OffsetCommitRequestTopic as OffsetCommitRequestTopicV9,
)
from kio.schema.offset_delete.v0.request import (
    OffsetDeleteRequest,
    OffsetDeleteRequestPartition,
    OffsetDeleteRequestTopic,
)
from kio.schema.offset_fetch.v7.request import OffsetFetchRequest, OffsetFetchRequestTopic
from kio.schema.offset_fetch.v9.request import OffsetFetchRequest as OffsetFetchRequestV9
from kio.schema.offset_fetch.v9.request import OffsetFetchRequestGroup, OffsetFetchRequestTopics
from kio.schema.offset_for_leader_epoch.v4.request import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)
from kio.schema.produce.v3.request import ProduceRequest as ProduceRequestV3
from kio.schema.produce.v10.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.schema.sasl_authenticate.v2.request import SaslAuthenticateRequest
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest
from kio.schema.sync_group.v5.request import SyncGroupRequest, SyncGroupRequestAssignment
from kio.schema.txn_offset_commit.v3.request import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestPartition,
    TxnOffsetCommitRequestTopic,
)
from kio.schema.types import BrokerId, GroupId, ProducerId, TopicName, TransactionalId
from kio.schema.write_txn_markers.v1.request import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
)
from kio.static.primitive import Records, i8, i16, i32, i32Timedelta, i64
from kio.static.protocol import RequestPayload, ResponsePayload

from samsa.broker.core import Broker, Endpoint
from samsa.broker.outcomes import (
    AwaitData,
    AwaitDurable,
    AwaitSlot,
    AwaitWork,
    Close,
    NoReply,
    Outcome,
    Payload,
    RawFrame,
    Reply,
)
from samsa.config import AUTHORIZER_CLASS_NAMES, BrokerConfig
from samsa.durability import Driver, Durable
from samsa.durability.inline import settle, sync_logs
from samsa.log.storage import OsStorage
from samsa.protocol import codec, versions
from samsa.protocol.apis import SERVED, ApiKey, is_served
from samsa.protocol.batch_writer import record_batch
from samsa.protocol.frames import frame

RECORDING = Path(__file__).with_name("response_bytes.json")
START_MS = 1_700_000_000_000
TICK_MS = 100
SLOT_TICKS_MAX = 200
TOPIC = "t"
# Every api key and version kio may know: each unserved one is sent too.
API_KEYS_MAX = 100
VERSIONS_MAX = 30


def ms(value: int) -> i32Timedelta:
    return i32Timedelta.parse(datetime.timedelta(milliseconds=value))


def batch(values: list[bytes], producer_id: int = -1, epoch: int = -1, sequence: int = -1) -> bytes:
    return record_batch(
        values,
        timestamp_ms=START_MS,
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=sequence,
        attributes=0x10 if producer_id >= 0 and epoch >= 0 and sequence >= 0 else 0,
    )


# DescribeLogDirs answers with the data dir's path, and a string's length is in the bytes: so
# the broker's data dir is a path of this many characters wherever the test's tmp_path is (a
# pytest-xdist worker's, or pytest-of-root/pytest-10/ after pytest-9/).
DATA_DIR_CHARS = 200


def fixed_length_dir(base: Path) -> Path:
    padding = DATA_DIR_CHARS - len(str(base.absolute())) - 1
    assert padding > 0, f"tmp_path {base} is too long for the recording"
    directory = base / ("d" * padding)
    directory.mkdir()
    return directory


class Session:
    """A broker on a fixed clock; `send` answers one request as the server would,
    with every write made durable."""

    def __init__(self, data_dir: Path) -> None:
        self.now_ms = START_MS
        config = BrokerConfig(transaction_max_timeout_ms=60_000)
        self.broker = Broker(
            config,
            OsStorage(),
            str(fixed_length_dir(data_dir)),
            lambda: self.now_ms,
            Endpoint("h", 9092),
        )
        self.broker.open()
        self.driver: Driver[object] = Driver(self.broker.take_background)
        self.correlation_id = 0
        self.recorded: list[tuple[str, str]] = []

    def send(self, label: str, request: RequestPayload, version: int | None = None) -> Any:
        """Send `request` converted to `version` (default: its own); record the answer's bytes
        under `label`, and return the decoded answer (None if there is none)."""
        if version is not None:
            schema = codec.request_type(type(request).__api_key__, version)
            assert schema is not None
            request = versions.convert(request, schema)
        api_key, version = int(type(request).__api_key__), int(type(request).__version__)
        self.correlation_id += 1
        data = codec.encode_request(self.correlation_id, "golden", request)
        answer = self._answer(self.broker.handle_frame(data[4:]))
        if isinstance(answer, bytes):
            self.recorded.append((f"{label} v{version}", answer.hex()))
            return None
        encoded = codec.encode_response(self.correlation_id, answer)
        self.recorded.append((f"{label} v{version}", encoded.hex()))
        return codec.decode_response(api_key, version, encoded[4:])[1]

    def _answer(self, outcome: Outcome) -> Any:
        payload: Payload | None
        if isinstance(outcome, Reply):
            payload = outcome.payload
        elif isinstance(outcome, AwaitDurable):
            if outcome.finish is None:
                done: Durable[None] = Durable(outcome.waits, lambda failed: None)
                settle(self.driver, done)
                return b"no reply"
            answer: Durable[ResponsePayload] = Durable(outcome.waits, outcome.finish)
            payload = settle(self.driver, answer)
        elif isinstance(outcome, AwaitData):
            payload = outcome.attempt(True)
        elif isinstance(outcome, AwaitWork):
            try:
                result = outcome.work()
            except OSError as exc:
                result = exc
            payload = outcome.finish(result)
        elif isinstance(outcome, AwaitSlot):
            payload = self._slot(outcome)
        elif isinstance(outcome, NoReply):
            return b"no reply"
        elif isinstance(outcome, Close):
            return f"close: {outcome.reason}".encode()
        else:
            raise AssertionError(f"unexpected outcome {outcome!r}")
        if isinstance(payload, RawFrame):
            return frame(payload.data)
        return payload

    def _slot(self, outcome: AwaitSlot) -> Any:
        key = object()
        self.driver.slot(key, outcome.slot)
        for _ in range(SLOT_TICKS_MAX):
            for done_key, payload in self.driver.run():
                if done_key is key:
                    return payload
            sync_logs(self.driver, self.driver.take_dirty())
            self.now_ms += TICK_MS
            self.broker.groups.tick()
        raise AssertionError("slot never resolved")


def served(request: RequestPayload) -> range:
    served_versions = SERVED[int(type(request).__api_key__)]
    return range(served_versions.min, int(type(request).__version__) + 1)


def each(session: Session, label: str, request: RequestPayload, first: int | None = None) -> None:
    """`request` at every served version from `first` up to its own."""
    for version in served(request):
        if first is None or version >= first:
            session.send(label, request, version)


# ----------------------------------------------------------------------------- the script
def script(s: Session) -> None:
    broker = s.broker
    broker.topics.create(TOPIC, 2, {}, s.now_ms)
    broker.topics.create("compact", 1, {"cleanup.policy": "compact"}, s.now_ms)
    versions_and_metadata(s)
    topics_admin(s)
    produce_and_fetch(s)
    transactions(s)
    groups(s)
    records_and_partitions(s)
    scram_credentials(s)
    acls(s)
    not_served(s)


def scram_credentials(s: Session) -> None:
    """SASL requests reaching the broker (a listener without SASL), and the SCRAM admin APIs.
    The salts are fixed so the recording does not change."""
    each(s, "sasl-handshake plaintext", SaslHandshakeRequest(mechanism="PLAIN"))
    each(s, "sasl-authenticate plaintext", SaslAuthenticateRequest(auth_bytes=b"x"))
    upsert = ScramCredentialUpsertion(
        name="alice",
        mechanism=i8(1),
        iterations=i32(4096),
        salt=b"s" * 16,
        salted_password=b"p" * 32,
    )
    s.send(
        "alter-scram",
        AlterUserScramCredentialsRequest(
            deletions=(ScramCredentialDeletion(name="bob", mechanism=i8(2)),),
            upsertions=(
                upsert,
                dataclasses.replace(upsert, name="carol", iterations=i32(100)),
                dataclasses.replace(upsert, name="dave", mechanism=i8(9)),
                dataclasses.replace(upsert, name=""),
            ),
        ),
    )
    s.send("describe-scram all", DescribeUserScramCredentialsRequest(users=None))
    s.send(
        "describe-scram named",
        DescribeUserScramCredentialsRequest(
            users=(ScramUserName(name="alice"), ScramUserName(name="zed")),
        ),
    )


def versions_and_metadata(s: Session) -> None:
    each(
        s, "api-versions", ApiVersionsRequest(client_software_name="g", client_software_version="1")
    )
    every = MetadataRequest(topics=None, include_topic_authorized_operations=False)
    each(s, "metadata all", every, first=1)
    s.send("metadata all", MetadataRequest(topics=(), include_topic_authorized_operations=False), 0)
    named = MetadataRequest(
        topics=tuple(
            MetadataRequestTopic(topic_id=None, name=TopicName(name))
            for name in (TOPIC, "missing", "bad name!", "compact")
        ),
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=True,
    )
    each(s, "metadata named", named)
    for version in served(named):
        s.send(
            "metadata auto-create",
            MetadataRequest(
                topics=(MetadataRequestTopic(topic_id=None, name=TopicName(f"auto{version}")),),
                include_topic_authorized_operations=False,
            ),
            version,
        )
    topic_id = s.broker.topics.get(TOPIC).topic_id  # type: ignore[union-attr]
    by_id = MetadataRequest(
        topics=(
            MetadataRequestTopic(topic_id=topic_id, name=None),
            MetadataRequestTopic(topic_id=uuid.UUID(int=7), name=None),
        ),
        include_topic_authorized_operations=False,
    )
    each(s, "metadata by id", by_id, first=12)
    each(s, "describe-cluster", DescribeClusterRequest(include_cluster_authorized_operations=False))
    s.send(
        "describe-cluster controllers",
        DescribeClusterRequest(include_cluster_authorized_operations=False, endpoint_type=i8(2)),
    )


def creatable(
    name: str,
    partitions: int = 1,
    replication: int = 1,
    configs: dict[str, str] | None = None,
    assigned: bool = False,
) -> CreatableTopic:
    assignments = (
        CreatableReplicaAssignment(partition_index=i32(0), broker_ids=(BrokerId(i32(1)),)),
    )
    return CreatableTopic(
        name=TopicName(name),
        num_partitions=i32(partitions),
        replication_factor=i16(replication),
        assignments=assignments if assigned else (),
        configs=tuple(
            CreatableTopicConfig(name=key, value=value) for key, value in (configs or {}).items()
        ),
    )


def topics_admin(s: Session) -> None:
    for version in served(CreateTopicsRequest(topics=())):
        topics = (
            creatable(f"made{version}", 2, configs={"retention.ms": "1000"}),
            creatable(f"default{version}", -1, -1),
            creatable(f"assigned{version}", -1, -1, assigned=True),
            creatable("twice"),
            creatable("twice"),
            creatable(f"replicated{version}", replication=3),
            creatable(f"badconfig{version}", configs={"no.such.setting": "1"}),
            creatable(TOPIC),
        )
        s.send("create-topics", CreateTopicsRequest(topics=topics), version)
        checked = CreateTopicsRequest(topics=(creatable(f"checked{version}"),), validate_only=True)
        s.send("create-topics validate-only", checked, version)
    for version in served(CreatePartitionsRequest(topics=(), timeout=ms(1), validate_only=False)):
        s.send(
            "create-partitions",
            CreatePartitionsRequest(
                topics=(
                    CreatePartitionsTopic(
                        name=TopicName(f"made{version + 2}"), count=i32(4), assignments=()
                    ),
                    CreatePartitionsTopic(name=TopicName("missing"), count=i32(4), assignments=()),
                    CreatePartitionsTopic(name=TopicName(TOPIC), count=i32(1), assignments=()),
                    CreatePartitionsTopic(
                        name=TopicName(f"default{version + 2}"),
                        count=i32(2),
                        assignments=(CreatePartitionsAssignment(broker_ids=(BrokerId(i32(2)),)),),
                    ),
                ),
                timeout=ms(1000),
                validate_only=version == 1,
            ),
            version,
        )
    wanted = (
        (2, TOPIC, None),
        (2, "compact", ("cleanup.policy",)),
        (2, "missing", None),
        (4, "1", ("log.retention.ms",)),
        (4, "9", None),
        (3, "x", None),
    )
    describe = DescribeConfigsRequest(
        resources=tuple(
            DescribeConfigsResource(
                resource_type=i8(kind), resource_name=name, configuration_keys=keys
            )
            for kind, name, keys in wanted
        )
    )
    each(s, "describe-configs", describe)
    alter = AlterConfigsRequest(
        resources=(
            AlterConfigsResource(
                resource_type=i8(2),
                resource_name=TOPIC,
                configs=(AlterableConfig(name="retention.ms", value="100000"),),
            ),
            AlterConfigsResource(
                resource_type=i8(4),
                resource_name="1",
                configs=(AlterableConfig(name="num.partitions", value="2"),),
            ),
        ),
        validate_only=False,
    )
    each(s, "alter-configs", alter)
    changes = (
        (2, TOPIC, (("cleanup.policy", 2, "compact"), ("retention.ms", 1, None))),
        (2, "compact", (("x", 0, "1"),)),
        (2, "missing", (("retention.ms", 3, "1"),)),
        (4, "1", (("log.retention.ms", 0, "1000"),)),
    )
    incremental = IncrementalAlterConfigsRequest(
        resources=tuple(
            IncrementalResource(
                resource_type=i8(kind),
                resource_name=name,
                configs=tuple(
                    IncrementalConfig(name=config, config_operation=i8(op), value=value)
                    for config, op, value in ops
                ),
            )
            for kind, name, ops in changes
        ),
        validate_only=True,
    )
    each(s, "incremental-alter-configs", incremental)
    # v0 last, so the earlier versions' answers stay as first recorded (issue 15 added v0).
    for version in (*range(1, 6), 0):
        s.send(
            "delete-topics by name",
            DeleteTopicsRequestV5(
                topic_names=(TopicName(f"made{version + 1}"), TopicName("missing")),
                timeout=ms(1),
            ),
            version,
        )
    topic_id = s.broker.topics.get("made7").topic_id  # type: ignore[union-attr]
    s.send(
        "delete-topics",
        DeleteTopicsRequest(
            topics=(
                DeleteTopicState(name=None, topic_id=topic_id),
                DeleteTopicState(name=TopicName("default7"), topic_id=None),
                DeleteTopicState(name=None, topic_id=uuid.UUID(int=9)),
                DeleteTopicState(name=TopicName("missing"), topic_id=None),
            ),
            timeout=ms(1),
        ),
    )


def produce(
    topic: str,
    partition: int,
    records: bytes | None,
    acks: int = -1,
    transactional_id: str | None = None,
) -> ProduceRequest:
    return ProduceRequest(
        transactional_id=None if transactional_id is None else TransactionalId(transactional_id),
        acks=i16(acks),
        timeout=ms(5000),
        topic_data=(
            TopicProduceData(
                name=TopicName(topic),
                partition_data=(
                    PartitionProduceData(
                        index=i32(partition), records=None if records is None else Records(records)
                    ),
                ),
            ),
        ),
    )


def produce_and_fetch(s: Session) -> None:
    for version in served(produce(TOPIC, 0, b"")):
        values = [f"v{version}-{i}".encode() for i in range(3)]
        s.send("produce", produce(TOPIC, 0, batch(values)), version)
        s.send("produce unknown", produce("missing", 0, batch(values)), version)
        s.send("produce bad name", produce("bad name!", 0, batch(values)), version)
        s.send("produce internal", produce("__consumer_offsets", 0, batch(values)), version)
        s.send("produce acks", produce(TOPIC, 1, batch(values), acks=2), version)
        corrupt = bytearray(batch(values))
        corrupt[-1] ^= 0xFF
        s.send("produce corrupt", produce(TOPIC, 1, bytes(corrupt)), version)
        s.send("produce null", produce(TOPIC, 1, None), version)
        s.send("produce compact", produce("compact", 0, batch(values)), version)
    s.send("produce acks=0", produce(TOPIC, 1, batch([b"quiet"]), acks=0))

    def fetching(topic: str, *partitions: tuple[int, int]) -> FetchTopic:
        return FetchTopic(
            topic=TopicName(topic),
            partitions=tuple(
                FetchPartition(
                    partition=i32(index), fetch_offset=i64(offset), partition_max_bytes=i32(1000)
                )
                for index, offset in partitions
            ),
        )

    fetch = FetchRequest(
        max_wait=ms(0),
        min_bytes=i32(0),
        topics=(fetching(TOPIC, (0, 3), (1, 99), (7, 0)), fetching("missing", (0, 0))),
        forgotten_topics_data=(),
    )
    each(s, "fetch", fetch)
    each(s, "fetch small", dataclasses.replace(fetch, max_bytes=i32(10)))
    each(s, "fetch committed", dataclasses.replace(fetch, isolation_level=i8(1)))
    session = dataclasses.replace(fetch, session_id=i32(5), session_epoch=i32(3))
    each(s, "fetch session", session, first=7)
    partitions = tuple(
        ListOffsetsPartition(partition_index=i32(0), timestamp=i64(timestamp))
        for timestamp in (-1, -2, -3, START_MS, START_MS + 1, -7)
    )
    list_offsets = ListOffsetsRequest(
        replica_id=BrokerId(-1),
        isolation_level=i8(0),
        topics=(
            ListOffsetsTopic(name=TopicName(TOPIC), partitions=partitions),
            ListOffsetsTopic(
                name=TopicName("missing"),
                partitions=(ListOffsetsPartition(partition_index=i32(0), timestamp=i64(-1)),),
            ),
        ),
    )
    each(s, "list-offsets", list_offsets)
    committed = dataclasses.replace(list_offsets, isolation_level=i8(1))
    each(s, "list-offsets committed", committed, first=2)
    epochs = OffsetForLeaderEpochRequest(
        topics=(
            OffsetForLeaderTopic(
                topic=TopicName(TOPIC),
                partitions=tuple(
                    OffsetForLeaderPartition(
                        partition=i32(0),
                        current_leader_epoch=i32(current),
                        leader_epoch=i32(epoch),
                    )
                    for current, epoch in ((-1, 0), (0, 0), (5, 0), (-1, 3))
                ),
            ),
            OffsetForLeaderTopic(
                topic=TopicName("missing"),
                partitions=(OffsetForLeaderPartition(partition=i32(0), leader_epoch=i32(0)),),
            ),
        )
    )
    each(s, "offset-for-leader-epoch", epochs)


def transactions(s: Session) -> None:
    for version in served(FindCoordinatorRequestV3(key="x")):
        for key_type in (0, 1, 5) if version >= 1 else (0,):
            s.send(
                f"find-coordinator {key_type}",
                FindCoordinatorRequestV3(key="g", key_type=i8(key_type)),
                version,
            )
    for key_type in (0, 1, 5):
        s.send(
            f"find-coordinator {key_type}",
            FindCoordinatorRequest(key_type=i8(key_type), coordinator_keys=("g", "h")),
        )
    idempotent = InitProducerIdRequest(transactional_id=None, transaction_timeout=ms(60_000))
    each(s, "init-producer-id idempotent", idempotent)
    for version in served(idempotent):
        txn_id = f"tx{version}"
        init = InitProducerIdRequest(
            transactional_id=TransactionalId(txn_id),
            transaction_timeout=ms(60_000),
        )
        answer = s.send("init-producer-id", init, version)
        s.send(
            "init-producer-id too long",
            InitProducerIdRequest(
                transactional_id=TransactionalId("long"),
                transaction_timeout=ms(10**8),
            ),
            version,
        )
        _one_transaction(s, txn_id, int(answer.producer_id), int(answer.producer_epoch), version)
    s.send(
        "init-producer-id bump",
        InitProducerIdRequest(
            transactional_id=TransactionalId("tx4"),
            transaction_timeout=ms(60_000),
            producer_id=ProducerId(999),
            producer_epoch=i16(0),
        ),
    )
    each(
        s,
        "describe-producers",
        DescribeProducersRequest(
            topics=(
                TopicRequest(name=TopicName(TOPIC), partition_indexes=(i32(0), i32(1), i32(9))),
                TopicRequest(name=TopicName("missing"), partition_indexes=(i32(0),)),
            )
        ),
    )
    each(
        s,
        "describe-transactions",
        DescribeTransactionsRequest(
            transactional_ids=(
                TransactionalId("tx0"),
                TransactionalId("tx3"),
                TransactionalId("open"),
                TransactionalId("unknown"),
            )
        ),
    )
    each(s, "list-transactions", ListTransactionsRequest())
    each(
        s,
        "list-transactions filtered",
        ListTransactionsRequest(
            state_filters=("Ongoing", "Bogus"),
            producer_id_filters=(ProducerId(i64(1)), ProducerId(i64(2)), ProducerId(i64(3))),
        ),
    )
    s.now_ms += 5000
    each(s, "list-transactions duration", ListTransactionsRequest(duration_filter=i64(1000)), 1)


def _one_transaction(s: Session, txn_id: str, producer_id: int, epoch: int, version: int) -> None:
    """A transaction at `version` of each transaction API that has it: add partitions (one
    unknown first), produce, add offsets, commit offsets, end."""
    add = AddPartitionsToTxnRequest(
        v3_and_below_transactional_id=TransactionalId(txn_id),
        v3_and_below_producer_id=ProducerId(producer_id),
        v3_and_below_producer_epoch=i16(epoch),
        v3_and_below_topics=(
            AddPartitionsToTxnTopic(name=TopicName(TOPIC), partitions=(i32(0), i32(1))),
        ),
    )
    add_version = min(version, 3)
    unknown = (AddPartitionsToTxnTopic(name=TopicName(TOPIC), partitions=(i32(0), i32(5))),)
    s.send(
        "add-partitions unknown",
        dataclasses.replace(add, v3_and_below_topics=unknown),
        add_version,
    )
    s.send("add-partitions", add, add_version)
    fenced = dataclasses.replace(add, v3_and_below_producer_epoch=i16(epoch - 1))
    s.send("add-partitions fenced", fenced, add_version)
    s.send("produce txn", produce(TOPIC, 0, batch([b"t"], producer_id, epoch, 0), -1, txn_id))
    s.send(
        "add-offsets",
        AddOffsetsToTxnRequest(
            transactional_id=TransactionalId(txn_id),
            producer_id=ProducerId(producer_id),
            producer_epoch=i16(epoch),
            group_id=GroupId("txg"),
        ),
        add_version,
    )
    s.send(
        "txn-offset-commit",
        TxnOffsetCommitRequest(
            transactional_id=TransactionalId(txn_id),
            group_id=GroupId("txg"),
            producer_id=ProducerId(producer_id),
            producer_epoch=i16(epoch),
            topics=(
                TxnOffsetCommitRequestTopic(
                    name=TopicName(TOPIC),
                    partitions=(
                        TxnOffsetCommitRequestPartition(
                            partition_index=i32(0),
                            committed_offset=i64(1),
                            committed_metadata="m",
                        ),
                        TxnOffsetCommitRequestPartition(
                            partition_index=i32(9),
                            committed_offset=i64(1),
                            committed_metadata=None,
                        ),
                    ),
                ),
            ),
        ),
        add_version,
    )
    end = EndTxnRequest(
        transactional_id=TransactionalId(txn_id),
        producer_id=ProducerId(producer_id),
        producer_epoch=i16(epoch),
        committed=version % 2 == 0,
    )
    s.send("end-txn fenced", dataclasses.replace(end, producer_epoch=i16(epoch + 1)), version)
    s.send("end-txn", end, version)
    if version == 4:
        _markers(s, producer_id, epoch)


def _markers(s: Session, producer_id: int, epoch: int) -> None:
    init = s.send(
        "init-producer-id open",
        InitProducerIdRequest(
            transactional_id=TransactionalId("open"),
            transaction_timeout=ms(60_000),
        ),
    )
    open_pid, open_epoch = int(init.producer_id), int(init.producer_epoch)
    s.send(
        "add-partitions open",
        AddPartitionsToTxnRequest(
            v3_and_below_transactional_id=TransactionalId("open"),
            v3_and_below_producer_id=ProducerId(open_pid),
            v3_and_below_producer_epoch=i16(open_epoch),
            v3_and_below_topics=(
                AddPartitionsToTxnTopic(name=TopicName(TOPIC), partitions=(i32(1),)),
            ),
        ),
    )
    s.send("produce open", produce(TOPIC, 1, batch([b"o"], open_pid, open_epoch, 0), -1, "open"))
    topics = (
        WritableTxnMarkerTopic(name=TopicName(TOPIC), partition_indexes=(i32(0), i32(1), i32(8))),
    )
    markers = (
        (producer_id, epoch, True, 0),
        (open_pid, open_epoch, False, 0),
        (open_pid, open_epoch, False, -5),
    )
    request = WriteTxnMarkersRequest(
        markers=tuple(
            WritableTxnMarker(
                producer_id=ProducerId(pid),
                producer_epoch=i16(marker_epoch),
                transaction_result=commit,
                topics=topics,
                coordinator_epoch=i32(coordinator_epoch),
            )
            for pid, marker_epoch, commit, coordinator_epoch in markers
        )
    )
    s.send("write-txn-markers", request)
    s.send("write-txn-markers", request, 0)  # again, as v0: the markers are written by now


def groups(s: Session) -> None:
    protocols = (JoinGroupRequestProtocol(name="range", metadata=b"\x00\x01meta"),)
    joined: dict[int, tuple[str, str, int]] = {}  # version: group, member, generation
    for version in served(
        JoinGroupRequest(
            group_id=GroupId("x"),
            session_timeout=ms(1),
            member_id="",
            protocol_type="",
            protocols=(),
        )
    ):
        group = f"g{version}"
        join = JoinGroupRequest(
            group_id=GroupId(group),
            session_timeout=ms(30_000),
            rebalance_timeout=ms(10_000),
            member_id="",
            group_instance_id=f"static{version}" if version >= 5 and version % 2 else None,
            protocol_type="consumer",
            protocols=protocols,
        )
        answer = s.send("join-group", join, version)
        if answer.error_code != 0:  # MEMBER_ID_REQUIRED: join again with the id
            join = dataclasses.replace(join, member_id=answer.member_id)
            answer = s.send("join-group again", join, version)
        joined[version] = (group, answer.member_id, int(answer.generation_id))
        bad_session = dataclasses.replace(join, session_timeout=ms(1), member_id="")
        s.send("join-group bad session", bad_session, version)
    for version in served(
        SyncGroupRequest(group_id=GroupId("x"), generation_id=i32(0), member_id="", assignments=())
    ):
        group, member, generation = joined[version + 4]
        s.send(
            "sync-group",
            SyncGroupRequest(
                group_id=GroupId(group),
                generation_id=i32(generation),
                member_id=member,
                protocol_type="consumer",
                protocol_name="range",
                assignments=(SyncGroupRequestAssignment(member_id=member, assignment=b"assigned"),),
            ),
            version,
        )
        s.send(
            "sync-group unknown",
            SyncGroupRequest(
                group_id=GroupId(group),
                generation_id=i32(generation),
                member_id="who",
                assignments=(),
            ),
            version,
        )
    group, member, generation = joined[9]
    for version in served(
        HeartbeatRequest(group_id=GroupId("x"), generation_id=i32(0), member_id="")
    ):
        s.send(
            "heartbeat",
            HeartbeatRequest(
                group_id=GroupId(group), generation_id=i32(generation), member_id=member
            ),
            version,
        )
        s.send(
            "heartbeat stale",
            HeartbeatRequest(
                group_id=GroupId(group), generation_id=i32(generation + 5), member_id=member
            ),
            version,
        )
    commit_topics = (
        OffsetCommitRequestTopic(
            name=TopicName(TOPIC),
            partitions=(
                OffsetCommitRequestPartition(
                    partition_index=i32(0),
                    committed_offset=i64(2),
                    committed_leader_epoch=i32(0),
                    committed_metadata="meta",
                ),
                OffsetCommitRequestPartition(
                    partition_index=i32(4), committed_offset=i64(2), committed_metadata=None
                ),
            ),
        ),
    )
    each(
        s,
        "offset-commit",
        OffsetCommitRequest(
            group_id=GroupId(group),
            generation_id_or_member_epoch=i32(generation),
            member_id=member,
            topics=commit_topics,
        ),
    )
    each(
        s,
        "offset-commit simple",
        OffsetCommitRequest(group_id=GroupId("simple"), member_id="", topics=commit_topics),
    )
    each(
        s,
        "offset-commit stale",
        OffsetCommitRequest(
            group_id=GroupId(group),
            generation_id_or_member_epoch=i32(generation + 1),
            member_id=member,
            topics=commit_topics,
        ),
    )
    fetch_topics = (
        OffsetFetchRequestTopic(name=TopicName(TOPIC), partition_indexes=(i32(0), i32(1))),
    )
    each(s, "offset-fetch", OffsetFetchRequest(group_id=GroupId(group), topics=fetch_topics))
    each(s, "offset-fetch all", OffsetFetchRequest(group_id=GroupId(group), topics=None), first=2)
    each(
        s,
        "offset-fetch txg",
        OffsetFetchRequest(group_id=GroupId("txg"), topics=fetch_topics, require_stable=True),
    )
    each(
        s,
        "describe-groups",
        DescribeGroupsRequest(
            groups=(GroupId(group), GroupId("g0"), GroupId("simple"), GroupId("missing")),
            include_authorized_operations=True,
        ),
    )
    each(s, "list-groups", ListGroupsRequest())
    each(s, "list-groups filtered", ListGroupsRequest(states_filter=("Stable",)), first=4)
    each(s, "list-groups typed", ListGroupsRequest(types_filter=("Classic",)), first=5)
    each(s, "list-groups other type", ListGroupsRequest(types_filter=("consumer",)), first=5)
    each(
        s,
        "offset-delete",
        OffsetDeleteRequest(
            group_id=GroupId("simple"),
            topics=(
                OffsetDeleteRequestTopic(
                    name=TopicName(TOPIC),
                    partitions=(
                        OffsetDeleteRequestPartition(partition_index=i32(0)),
                        OffsetDeleteRequestPartition(partition_index=i32(3)),
                    ),
                ),
            ),
        ),
    )
    each(
        s,
        "offset-delete subscribed",
        OffsetDeleteRequest(
            group_id=GroupId(group),
            topics=(
                OffsetDeleteRequestTopic(
                    name=TopicName(TOPIC),
                    partitions=(OffsetDeleteRequestPartition(partition_index=i32(0)),),
                ),
            ),
        ),
    )
    for version in range(0, 3):
        group, member, _ = joined[version]
        s.send(
            "leave-group",
            LeaveGroupRequestV2(group_id=GroupId(group), member_id=member),
            version,
        )
        s.send(
            "leave-group unknown",
            LeaveGroupRequestV2(group_id=GroupId(group), member_id="who"),
            version,
        )
    for version in range(3, 6):
        group, member, _ = joined[version]
        s.send(
            "leave-group",
            LeaveGroupRequest(
                group_id=GroupId(group),
                members=(
                    MemberIdentity(member_id=member),
                    MemberIdentity(member_id="who", group_instance_id="nobody"),
                ),
            ),
            version,
        )
        s.send(
            "leave-group no group",
            LeaveGroupRequest(
                group_id=GroupId("nogroup"), members=(MemberIdentity(member_id="x"),)
            ),
            version,
        )
    for version in served(DeleteGroupsRequest()):
        s.send(
            "delete-groups",
            DeleteGroupsRequest(
                groups_names=(
                    GroupId(f"g{version}"),
                    GroupId(f"g{version + 6}"),
                    GroupId("missing"),
                )
            ),
            version,
        )

    consumer_groups(s)


def consumer_groups(s: Session) -> None:
    """The consumer group protocol (KIP-848): heartbeats, describe, and offsets with member
    epochs (OffsetCommit v9, OffsetFetch v8-9)."""
    topics = (TOPIC,)
    for version in served(
        ConsumerGroupHeartbeatRequest(
            group_id=GroupId("x"), member_id="", member_epoch=i32(0), topic_partitions=()
        )
    ):
        joined = s.send(
            "consumer-heartbeat join",
            ConsumerGroupHeartbeatRequest(
                group_id=GroupId(f"cg{version}"),
                member_id=f"member-{version}",
                member_epoch=i32(0),
                rebalance_timeout=ms(30_000),
                subscribed_topic_names=tuple(TopicName(t) for t in topics),
                topic_partitions=(),
            ),
            version,
        )
        s.send(
            "consumer-heartbeat fenced",
            ConsumerGroupHeartbeatRequest(
                group_id=GroupId(f"cg{version}"),
                member_id=joined.member_id,
                member_epoch=i32(joined.member_epoch + 3),
                topic_partitions=None,
            ),
            version,
        )
        s.send(
            "consumer-heartbeat invalid",
            ConsumerGroupHeartbeatRequest(
                group_id=GroupId(f"cg{version}"),
                member_id="m",
                member_epoch=i32(0),
                topic_partitions=(),
            ),
            version,
        )
    for version in served(ConsumerGroupDescribeRequest(include_authorized_operations=False)):
        s.send(
            "consumer-describe",
            ConsumerGroupDescribeRequest(
                group_ids=(GroupId("cg1"), GroupId("simple"), GroupId("missing")),
                include_authorized_operations=True,
            ),
            version,
        )
    member = s.send(
        "consumer-heartbeat",
        ConsumerGroupHeartbeatRequest(
            group_id=GroupId("cg1"),
            member_id="member-1",
            member_epoch=i32(1),
            topic_partitions=None,
        ),
    )
    commit = OffsetCommitRequestV9(
        group_id=GroupId("cg1"),
        generation_id_or_member_epoch=member.member_epoch,
        member_id="member-1",
        topics=(
            OffsetCommitRequestTopicV9(
                name=TopicName(TOPIC),
                partitions=(
                    OffsetCommitRequestPartitionV9(
                        partition_index=i32(0), committed_offset=i64(1), committed_metadata=None
                    ),
                ),
            ),
        ),
    )
    s.send("offset-commit member epoch", commit)
    s.send("offset-commit v8 by a consumer member", commit, 8)
    s.send(
        "offset-commit stale member epoch",
        dataclasses.replace(commit, generation_id_or_member_epoch=i32(member.member_epoch + 1)),
    )
    fetch_groups = (
        OffsetFetchRequestGroup(
            group_id=GroupId("cg1"),
            member_id="member-1",
            member_epoch=member.member_epoch,
            topics=(OffsetFetchRequestTopics(name=TopicName(TOPIC), partition_indexes=(i32(0),)),),
        ),
        OffsetFetchRequestGroup(
            group_id=GroupId("cg0"), member_id="member-0", member_epoch=i32(99), topics=None
        ),
        OffsetFetchRequestGroup(group_id=GroupId("simple"), topics=None),
    )
    each(s, "offset-fetch groups", OffsetFetchRequestV9(groups=fetch_groups), first=8)


def records_and_partitions(s: Session) -> None:
    """Metadata v8-10's cluster operations, DescribeTopicPartitions, DeleteRecords and
    DescribeLogDirs (issue 15)."""
    each(
        s,
        "metadata cluster operations",
        MetadataRequestV10(
            topics=(),
            allow_auto_topic_creation=False,
            include_cluster_authorized_operations=True,
            include_topic_authorized_operations=False,
        ),
        first=8,
    )
    named = (DescribedTopic(name=TopicName(n)) for n in (TOPIC, "compact", "missing", "bad name!"))
    s.send("describe-topic-partitions named", DescribeTopicPartitionsRequest(topics=tuple(named)))
    s.send(
        "describe-topic-partitions page",
        DescribeTopicPartitionsRequest(
            topics=(),
            response_partition_limit=i32(2),
            cursor=Cursor(topic_name=TopicName(TOPIC), partition_index=i32(1)),
        ),
    )
    s.send(
        "describe-topic-partitions bad cursor",
        DescribeTopicPartitionsRequest(
            topics=(DescribedTopic(name=TopicName(TOPIC)),),
            cursor=Cursor(topic_name=TopicName("compact"), partition_index=i32(0)),
        ),
    )
    asked = {TOPIC: {0: 1, 1: 99, 7: 0}, "compact": {0: 0}, "__consumer_offsets": {0: 0}}
    each(
        s,
        "delete-records",
        DeleteRecordsRequest(
            topics=tuple(
                DeleteRecordsTopic(
                    name=TopicName(name),
                    partitions=tuple(
                        DeleteRecordsPartition(partition_index=i32(p), offset=i64(o))
                        for p, o in offsets.items()
                    ),
                )
                for name, offsets in asked.items()
            ),
            timeout=ms(1000),
        ),
    )
    # The data dir's path and its disk's size differ from run to run: the recording has neither.
    s.broker.storage.disk_space = lambda path: (1 << 40, 1 << 39)  # type: ignore[method-assign]
    data_dir = os.path.abspath(s.broker.data_dir).encode().hex()
    wanted = (DescribableLogDirTopic(topic=TopicName(TOPIC), partitions=(i32(1), i32(5))),)
    for label, request in (
        ("describe-log-dirs", DescribeLogDirsRequest(topics=None)),
        ("describe-log-dirs named", DescribeLogDirsRequest(topics=wanted)),
    ):
        for version in served(request):
            s.send(label, request, version)
            name, answer = s.recorded[-1]
            s.recorded[-1] = (name, answer.replace(data_dir, "<data dir>"))


def acls(s: Session) -> None:
    """CreateAcls, DescribeAcls, DeleteAcls (issue 16): without an authorizer, then with one
    and the client a super user."""
    creation = AclCreation(
        resource_type=i8(2),
        resource_name="orders",
        resource_pattern_type=i8(4),
        principal="User:alice",
        host="*",
        operation=i8(3),
        permission_type=i8(3),
    )
    describe = DescribeAclsRequest(
        resource_type_filter=i8(1),
        resource_name_filter=None,
        pattern_type_filter=i8(1),
        principal_filter=None,
        host_filter=None,
        operation=i8(1),
        permission_type=i8(1),
    )
    delete = DeleteAclsRequest(
        filters=(
            DeleteAclsFilter(
                resource_type_filter=i8(2),
                resource_name_filter="orders-1",
                pattern_type_filter=i8(2),
                principal_filter=None,
                host_filter=None,
                operation=i8(1),
                permission_type=i8(1),
            ),
        )
    )
    unsecured = s.broker.config
    for label in ("no authorizer", "authorizer"):
        each(s, f"create-acls {label}", CreateAclsRequest(creations=(creation,)))
        each(s, f"describe-acls {label}", describe)
        each(s, f"delete-acls {label}", delete)
        s.broker.apply_config(
            dataclasses.replace(
                unsecured,
                authorizer_class_name=AUTHORIZER_CLASS_NAMES[0],
                super_users="User:ANONYMOUS",
            )
        )
    s.broker.apply_config(unsecured)


def not_served(s: Session) -> None:
    s.send(
        "api-versions from the future",
        ApiVersionsRequestV4(client_software_name="g", client_software_version="1"),
    )
    for version in range(0, 3):
        old = versions.convert(produce(TOPIC, 0, batch([b"old"])), ProduceRequestV3)
        data = codec.encode_request(99, "golden", old)
        # v0-2 bodies are v3's without the transactional id (a null string: two bytes).
        body = bytearray(data[4:])
        body[2:4] = version.to_bytes(2, "big")
        client_id_end = 8 + 2 + len(b"golden")
        raw = bytes(body[:client_id_end] + body[client_id_end + 2 :])
        answer = s._answer(s.broker.handle_frame(raw))
        encoded = answer if isinstance(answer, bytes) else codec.encode_response(99, answer)
        s.recorded.append((f"produce old v{version}", encoded.hex()))
    for api_key in range(API_KEYS_MAX):
        for version in range(VERSIONS_MAX):
            schema = codec.request_type(api_key, version)
            if schema is None or is_served(api_key, version) or api_key == ApiKey.PRODUCE:
                continue
            s.send(f"unserved api {api_key}", versions.default_instance(schema))


# ----------------------------------------------------------------------------- the test
@pytest.fixture
def seeded_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(14)
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=rng.getrandbits(128), version=4))


def run_script(data_dir: Path) -> list[tuple[str, str]]:
    session = Session(data_dir)
    script(session)
    return session.recorded


def test_every_response_is_byte_identical_to_the_recording(
    seeded_ids: None, tmp_path: Path
) -> None:
    recorded = run_script(tmp_path)
    if os.environ.get("SAMSA_RECORD_RESPONSES") == "1":
        lines = ",\n".join(json.dumps(entry) for entry in recorded)
        RECORDING.write_text(f"[\n{lines}\n]\n")
    expected = [tuple(entry) for entry in json.loads(RECORDING.read_text())]
    assert [label for label, _ in recorded] == [label for label, _ in expected]
    for (label, got), (_, want) in zip(recorded, expected, strict=True):
        assert got == want, f"{label}: the response bytes changed"


def test_the_script_covers_every_served_version(seeded_ids: None, tmp_path: Path) -> None:
    covered: dict[int, set[int]] = {}
    session = Session(tmp_path)
    original = session.broker.handle_frame

    def spy(data: bytes | memoryview, *context: str) -> Outcome:
        prefix = codec.peek_prefix(data)
        covered.setdefault(prefix.api_key, set()).add(prefix.api_version)
        return original(data, *context)

    session.broker.handle_frame = spy  # type: ignore[method-assign, assignment]
    script(session)
    for api_key, served_versions in SERVED.items():
        wanted = set(range(served_versions.min, served_versions.max + 1))
        assert wanted <= covered.get(api_key, set()), api_key
