"""The ACL matrix: for each API, the rights Kafka's request handlers check (KafkaApis,
ControllerApis, AclApis in Kafka 3.9/4.x), in their order, each refused with Kafka's error code
until granted, over the wire against a real broker.

A row is an API's request and its steps: the error the request gets while the principal lacks
a right, and the ACL that grants it; after the last step no authorization error is left. The
attacks of issue 16 are rows too: a principal without rights cannot commit or abort another
transactional id, fence it (InitProducerId), read the internal topics, or delete topics.

Principals come from `samsa.testing.principals` (by client id), a test stand-in for an
authenticated connection; test_acl_matrix_sasl.py walks the same `ROWS` with SCRAM users over a
SASL_PLAINTEXT listener.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from kio.schema.add_offsets_to_txn.v3.request import AddOffsetsToTxnRequest
from kio.schema.add_partitions_to_txn.v3.request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
)
from kio.schema.alter_user_scram_credentials.v0.request import (
    AlterUserScramCredentialsRequest,
    ScramCredentialDeletion,
)
from kio.schema.consumer_group_describe.v1.request import ConsumerGroupDescribeRequest
from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest
from kio.schema.create_acls.v3.request import AclCreation, CreateAclsRequest
from kio.schema.create_partitions.v3.request import CreatePartitionsRequest, CreatePartitionsTopic
from kio.schema.delete_groups.v2.request import DeleteGroupsRequest
from kio.schema.delete_records.v2.request import (
    DeleteRecordsPartition,
    DeleteRecordsRequest,
    DeleteRecordsTopic,
)
from kio.schema.delete_topics.v6.request import DeleteTopicsRequest, DeleteTopicState
from kio.schema.describe_cluster.v1.request import DescribeClusterRequest
from kio.schema.describe_configs.v4.request import DescribeConfigsRequest, DescribeConfigsResource
from kio.schema.describe_groups.v5.request import DescribeGroupsRequest
from kio.schema.describe_log_dirs.v5.request import DescribeLogDirsRequest
from kio.schema.describe_producers.v0.request import DescribeProducersRequest, TopicRequest
from kio.schema.describe_topic_partitions.v0.request import DescribeTopicPartitionsRequest
from kio.schema.describe_topic_partitions.v0.request import TopicRequest as DescribedTopic
from kio.schema.describe_transactions.v0.request import DescribeTransactionsRequest
from kio.schema.describe_user_scram_credentials.v0.request import (
    DescribeUserScramCredentialsRequest,
)
from kio.schema.end_txn.v4.request import EndTxnRequest
from kio.schema.errors import ErrorCode
from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest
from kio.schema.heartbeat.v4.request import HeartbeatRequest
from kio.schema.incremental_alter_configs.v1.request import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
)
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.join_group.v9.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.leave_group.v5.request import LeaveGroupRequest, MemberIdentity
from kio.schema.list_groups.v5.request import ListGroupsRequest
from kio.schema.list_transactions.v1.request import ListTransactionsRequest
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.offset_commit.v8.request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kio.schema.offset_delete.v0.request import (
    OffsetDeleteRequest,
    OffsetDeleteRequestPartition,
    OffsetDeleteRequestTopic,
)
from kio.schema.offset_fetch.v7.request import OffsetFetchRequest, OffsetFetchRequestTopic
from kio.schema.offset_for_leader_epoch.v4.request import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)
from kio.schema.sync_group.v5.request import SyncGroupRequest
from kio.schema.txn_offset_commit.v3.request import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestPartition,
    TxnOffsetCommitRequestTopic,
)
from kio.schema.types import BrokerId, TopicName, TransactionalId
from kio.schema.write_txn_markers.v1.request import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
)
from kio.static.primitive import i8, i32, i64
from kio.static.protocol import RequestPayload

from samsa.protocol import versions
from samsa.protocol.batch_writer import record_batch
from samsa.protocol.legacy.list_offsets.v0 import request as v0
from samsa.security.acl import CLUSTER_NAME, AclOperation, ResourceType
from samsa.testing import EmbeddedBroker
from samsa.testing.principals import as_principals, authorizer_settings
from samsa.testing.wire import (
    Conn,
    create_topics_request,
    fetch_request,
    list_offsets_request,
    produce_request,
)

pytestmark = pytest.mark.interop

Op = AclOperation
Kind = ResourceType
TOPIC_DENIED = ErrorCode.topic_authorization_failed
GROUP_DENIED = ErrorCode.group_authorization_failed
CLUSTER_DENIED = ErrorCode.cluster_authorization_failed
TXN_DENIED = ErrorCode.transactional_id_authorization_failed
AUTH_ERRORS = {TOPIC_DENIED, GROUP_DENIED, CLUSTER_DENIED, TXN_DENIED}
TOPIC = "orders"  # exists; a row's topics are its own unless it names this one
MINUTE = datetime.timedelta(minutes=1)


E = TypeVar("E")


def make(cls: type[E], **fields: Any) -> E:
    """A kio request entity with these fields, the rest at their defaults."""
    entity: E = dataclasses.replace(versions.default_instance(cls), **fields)  # type: ignore[type-var]
    return entity


@dataclass(frozen=True)
class Grant:
    kind: ResourceType
    name: str
    op: AclOperation


@dataclass(frozen=True)
class Row:
    """An API's request and its checks in order: the error while a right is missing, and
    the ACL that grants it."""

    api: str
    request: Callable[[str], RequestPayload]  # of the row's resource name
    steps: tuple[tuple[ErrorCode, Callable[[str], Grant]], ...]
    client: str = "alice"  # the principal: User:<client>
    setup: Callable[[str], RequestPayload] | None = None  # sent first, by a super user


def on(kind: ResourceType, op: AclOperation, name: str | None = None) -> Callable[[str], Grant]:
    return lambda own: Grant(kind, name if name is not None else own, op)


def cluster(op: AclOperation) -> Callable[[str], Grant]:
    return on(Kind.CLUSTER, op, CLUSTER_NAME)


def txn_batch() -> bytes:
    return record_batch(
        [b"v"], timestamp_ms=0, producer_id=1, producer_epoch=0, base_sequence=0, attributes=0x10
    )


def offsets_commit(name: str) -> OffsetCommitRequest:
    return make(
        OffsetCommitRequest,
        group_id=name,
        topics=(
            make(
                OffsetCommitRequestTopic,
                name=name,
                partitions=(make(OffsetCommitRequestPartition, committed_offset=1),),
            ),
        ),
    )


def txn_offsets_commit(name: str) -> TxnOffsetCommitRequest:
    return make(
        TxnOffsetCommitRequest,
        transactional_id=name,
        group_id=name,
        topics=(
            make(
                TxnOffsetCommitRequestTopic,
                name=name,
                partitions=(make(TxnOffsetCommitRequestPartition, committed_offset=1),),
            ),
        ),
    )


ROWS = [
    Row(
        "Produce",
        lambda n: produce_request(n, {0: b""}),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.WRITE)),),
    ),
    Row(
        "Produce transactional",
        lambda n: dataclasses.replace(
            produce_request(n, {0: txn_batch()}), transactional_id=TransactionalId(n)
        ),
        (
            (TXN_DENIED, on(Kind.TRANSACTIONAL_ID, Op.WRITE)),
            (TOPIC_DENIED, on(Kind.TOPIC, Op.WRITE)),
        ),
    ),
    Row("Fetch", lambda n: fetch_request(n, [0]), ((TOPIC_DENIED, on(Kind.TOPIC, Op.READ)),)),
    Row(
        "Fetch __consumer_offsets",
        lambda n: fetch_request("__consumer_offsets", [0]),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.READ, "__consumer_offsets")),),
    ),
    Row(
        "Fetch __transaction_state",
        lambda n: fetch_request("__transaction_state", [0]),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.READ, "__transaction_state")),),
    ),
    Row(
        "ListOffsets",
        lambda n: list_offsets_request(n, 0, -1),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.DESCRIBE)),),
    ),
    Row(
        "ListOffsets v0",
        lambda n: v0.ListOffsetsRequest(
            replica_id=BrokerId(-1),
            topics=(
                v0.ListOffsetsTopic(
                    name=TopicName(n),
                    partitions=(
                        v0.ListOffsetsPartition(partition_index=i32(0), timestamp=i64(-1)),
                    ),
                ),
            ),
        ),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.DESCRIBE)),),
    ),
    Row(
        "OffsetForLeaderEpoch",
        lambda n: make(
            OffsetForLeaderEpochRequest,
            topics=(
                make(OffsetForLeaderTopic, topic=n, partitions=(make(OffsetForLeaderPartition),)),
            ),
        ),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.DESCRIBE)),),
    ),
    Row(
        "Metadata",
        lambda n: make(
            MetadataRequest,
            topics=(make(MetadataRequestTopic, name=n),),
            allow_auto_topic_creation=False,
        ),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.DESCRIBE)),),
    ),
    Row(
        "Metadata auto-create",
        lambda n: make(
            MetadataRequest,
            topics=(make(MetadataRequestTopic, name=n),),
            allow_auto_topic_creation=True,
        ),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.DESCRIBE)), (TOPIC_DENIED, on(Kind.TOPIC, Op.CREATE))),
    ),
    Row(
        "DescribeTopicPartitions",
        lambda n: make(DescribeTopicPartitionsRequest, topics=(make(DescribedTopic, name=n),)),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.DESCRIBE)),),
    ),
    # Made once CREATE is granted, its configs shown only with DESCRIBE_CONFIGS (then the
    # topic exists: TOPIC_ALREADY_EXISTS).
    Row(
        "CreateTopics",
        lambda n: create_topics_request(n, 1),
        (
            (TOPIC_DENIED, on(Kind.TOPIC, Op.CREATE)),
            (TOPIC_DENIED, on(Kind.TOPIC, Op.DESCRIBE_CONFIGS)),
        ),
    ),
    Row(
        "CreateTopics by cluster right",
        lambda n: create_topics_request(n, 1),
        ((TOPIC_DENIED, cluster(Op.CREATE)), (TOPIC_DENIED, on(Kind.TOPIC, Op.DESCRIBE_CONFIGS))),
        client="carol",
    ),
    Row(
        "DeleteTopics",
        lambda n: make(DeleteTopicsRequest, topics=(make(DeleteTopicState, name=n),)),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.DELETE)),),
    ),
    Row(
        "DeleteTopics __consumer_offsets",
        lambda n: make(
            DeleteTopicsRequest, topics=(make(DeleteTopicState, name="__consumer_offsets"),)
        ),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.DELETE, "__consumer_offsets")),),
    ),
    Row(
        "CreatePartitions",
        lambda n: make(
            CreatePartitionsRequest, topics=(make(CreatePartitionsTopic, name=n, count=3),)
        ),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.ALTER)),),
    ),
    Row(
        "DescribeConfigs topic",
        lambda n: make(
            DescribeConfigsRequest,
            resources=(make(DescribeConfigsResource, resource_type=i8(2), resource_name=n),),
        ),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.DESCRIBE_CONFIGS)),),
    ),
    Row(
        "DescribeConfigs broker",
        lambda n: make(
            DescribeConfigsRequest,
            resources=(make(DescribeConfigsResource, resource_type=i8(4), resource_name="1"),),
        ),
        ((CLUSTER_DENIED, cluster(Op.DESCRIBE_CONFIGS)),),
    ),
    Row(
        "IncrementalAlterConfigs topic",
        lambda n: make(
            IncrementalAlterConfigsRequest,
            resources=(
                make(
                    AlterConfigsResource,
                    resource_type=i8(2),
                    resource_name=n,
                    configs=(make(AlterableConfig, name="retention.ms", value="1000"),),
                ),
            ),
        ),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.ALTER_CONFIGS)),),
    ),
    Row(
        "DeleteRecords",
        lambda n: make(
            DeleteRecordsRequest,
            topics=(make(DeleteRecordsTopic, name=n, partitions=(make(DeleteRecordsPartition),)),),
        ),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.DELETE)),),
    ),
    Row(
        "DescribeLogDirs",
        lambda n: make(DescribeLogDirsRequest),
        ((CLUSTER_DENIED, cluster(Op.DESCRIBE)),),
    ),
    Row(
        "InitProducerId transactional (fencing another id)",
        lambda n: make(InitProducerIdRequest, transactional_id=n, transaction_timeout=MINUTE),
        ((TXN_DENIED, on(Kind.TRANSACTIONAL_ID, Op.WRITE)),),
    ),
    Row(
        "InitProducerId idempotent, by cluster right",
        lambda n: make(InitProducerIdRequest, transactional_id=None),
        ((CLUSTER_DENIED, cluster(Op.IDEMPOTENT_WRITE)),),
        client="bob",
    ),
    Row(
        "InitProducerId idempotent, by any topic's WRITE (KIP-679)",
        lambda n: make(InitProducerIdRequest, transactional_id=None),
        ((CLUSTER_DENIED, on(Kind.TOPIC, Op.WRITE)),),
        client="dave",
    ),
    Row(
        "AddPartitionsToTxn",
        lambda n: make(
            AddPartitionsToTxnRequest,
            v3_and_below_transactional_id=n,
            v3_and_below_topics=(make(AddPartitionsToTxnTopic, name=n, partitions=(0,)),),
        ),
        (
            (TXN_DENIED, on(Kind.TRANSACTIONAL_ID, Op.WRITE)),
            (TOPIC_DENIED, on(Kind.TOPIC, Op.WRITE)),
        ),
    ),
    Row(
        "AddOffsetsToTxn",
        lambda n: make(AddOffsetsToTxnRequest, transactional_id=n, group_id=n),
        (
            (TXN_DENIED, on(Kind.TRANSACTIONAL_ID, Op.WRITE)),
            (GROUP_DENIED, on(Kind.GROUP, Op.READ)),
        ),
    ),
    Row(
        "EndTxn commit (another's transaction)",
        lambda n: make(EndTxnRequest, transactional_id=n, committed=True),
        ((TXN_DENIED, on(Kind.TRANSACTIONAL_ID, Op.WRITE)),),
    ),
    Row(
        "EndTxn abort (another's transaction)",
        lambda n: make(EndTxnRequest, transactional_id=n, committed=False),
        ((TXN_DENIED, on(Kind.TRANSACTIONAL_ID, Op.WRITE)),),
    ),
    Row(
        "TxnOffsetCommit",
        txn_offsets_commit,
        (
            (TXN_DENIED, on(Kind.TRANSACTIONAL_ID, Op.WRITE)),
            (GROUP_DENIED, on(Kind.GROUP, Op.READ)),
            (TOPIC_DENIED, on(Kind.TOPIC, Op.READ)),
        ),
    ),
    Row(
        "WriteTxnMarkers",
        lambda n: make(
            WriteTxnMarkersRequest,
            markers=(
                make(
                    WritableTxnMarker,
                    producer_id=1,
                    transaction_result=False,
                    topics=(make(WritableTxnMarkerTopic, name=n, partition_indexes=(0,)),),
                ),
            ),
        ),
        ((CLUSTER_DENIED, cluster(Op.CLUSTER_ACTION)),),
    ),
    Row(
        "FindCoordinator group",
        lambda n: make(FindCoordinatorRequest, key_type=i8(0), coordinator_keys=(n,)),
        ((GROUP_DENIED, on(Kind.GROUP, Op.DESCRIBE)),),
    ),
    Row(
        "FindCoordinator transaction",
        lambda n: make(FindCoordinatorRequest, key_type=i8(1), coordinator_keys=(n,)),
        ((TXN_DENIED, on(Kind.TRANSACTIONAL_ID, Op.DESCRIBE)),),
    ),
    Row(
        "JoinGroup",
        lambda n: make(
            JoinGroupRequest,
            group_id=n,
            session_timeout=MINUTE,
            rebalance_timeout=MINUTE,
            member_id="m",
            protocol_type="consumer",
            protocols=(make(JoinGroupRequestProtocol, name="range"),),
        ),
        ((GROUP_DENIED, on(Kind.GROUP, Op.READ)),),
    ),
    Row(
        "SyncGroup",
        lambda n: make(SyncGroupRequest, group_id=n),
        ((GROUP_DENIED, on(Kind.GROUP, Op.READ)),),
    ),
    Row(
        "Heartbeat",
        lambda n: make(HeartbeatRequest, group_id=n),
        ((GROUP_DENIED, on(Kind.GROUP, Op.READ)),),
    ),
    Row(
        "LeaveGroup",
        lambda n: make(
            LeaveGroupRequest, group_id=n, members=(make(MemberIdentity, member_id="m"),)
        ),
        ((GROUP_DENIED, on(Kind.GROUP, Op.READ)),),
    ),
    Row(
        "OffsetCommit",
        offsets_commit,
        ((GROUP_DENIED, on(Kind.GROUP, Op.READ)), (TOPIC_DENIED, on(Kind.TOPIC, Op.READ))),
    ),
    Row(
        "OffsetFetch",
        lambda n: make(
            OffsetFetchRequest,
            group_id=n,
            topics=(make(OffsetFetchRequestTopic, name=n, partition_indexes=(0,)),),
        ),
        ((GROUP_DENIED, on(Kind.GROUP, Op.DESCRIBE)), (TOPIC_DENIED, on(Kind.TOPIC, Op.DESCRIBE))),
    ),
    Row(
        "DescribeGroups",
        lambda n: make(DescribeGroupsRequest, groups=(n,)),
        ((GROUP_DENIED, on(Kind.GROUP, Op.DESCRIBE)),),
    ),
    Row(
        "DeleteGroups",
        lambda n: make(DeleteGroupsRequest, groups_names=(n,)),
        ((GROUP_DENIED, on(Kind.GROUP, Op.DELETE)),),
    ),
    Row(
        "OffsetDelete",
        lambda n: make(
            OffsetDeleteRequest,
            group_id=n,
            topics=(
                make(
                    OffsetDeleteRequestTopic,
                    name=n,
                    partitions=(make(OffsetDeleteRequestPartition),),
                ),
            ),
        ),
        ((GROUP_DENIED, on(Kind.GROUP, Op.DELETE)), (TOPIC_DENIED, on(Kind.TOPIC, Op.READ))),
        # A group that does not exist is answered GROUP_ID_NOT_FOUND alone, as in Kafka.
        setup=lambda n: dataclasses.replace(offsets_commit(n), topics=offsets_commit(TOPIC).topics),
    ),
    Row(
        "DescribeProducers",
        lambda n: make(
            DescribeProducersRequest, topics=(make(TopicRequest, name=n, partition_indexes=(0,)),)
        ),
        ((TOPIC_DENIED, on(Kind.TOPIC, Op.READ)),),
    ),
    Row(
        "ConsumerGroupHeartbeat",
        lambda n: make(
            ConsumerGroupHeartbeatRequest,
            group_id=n,
            member_id=f"member-{n}",
            rebalance_timeout=MINUTE,
            subscribed_topic_names=(n,),
            topic_partitions=(),
        ),
        ((GROUP_DENIED, on(Kind.GROUP, Op.READ)), (TOPIC_DENIED, on(Kind.TOPIC, Op.DESCRIBE))),
    ),
    Row(
        "ConsumerGroupDescribe",
        lambda n: make(ConsumerGroupDescribeRequest, group_ids=(n,)),
        ((GROUP_DENIED, on(Kind.GROUP, Op.DESCRIBE)),),
    ),
    Row(
        "DescribeUserScramCredentials",
        lambda n: make(DescribeUserScramCredentialsRequest, users=None),
        ((CLUSTER_DENIED, cluster(Op.DESCRIBE)),),
        client="frank",  # alice has DESCRIBE on the cluster from DescribeLogDirs' row
    ),
    Row(
        "AlterUserScramCredentials",
        lambda n: make(
            AlterUserScramCredentialsRequest,
            deletions=(make(ScramCredentialDeletion, name=n, mechanism=1),),
            upsertions=(),
        ),
        ((CLUSTER_DENIED, cluster(Op.ALTER)),),
    ),
    Row(
        "DescribeTransactions",
        lambda n: make(DescribeTransactionsRequest, transactional_ids=(n,)),
        ((TXN_DENIED, on(Kind.TRANSACTIONAL_ID, Op.DESCRIBE)),),
    ),
]


def error_codes(value: object) -> set[int]:
    """Every error code anywhere in a response."""
    if isinstance(value, tuple):
        return {code for item in value for code in error_codes(item)}
    if not dataclasses.is_dataclass(value):
        return set()
    found: set[int] = set()
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if f.name.endswith("error_code") and isinstance(item, int):
            found.add(int(item))
        else:
            found |= error_codes(item)
    return found


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    data_dir = str(tmp_path_factory.mktemp("acl-matrix"))
    with EmbeddedBroker(data_dir, authorizer_settings()) as running:
        clients = ("admin", "alice", "bob", "carol", "dave", "frank")
        as_principals(running, {client: f"User:{client}" for client in clients})
        with Conn(running.bootstrap, client_id="admin") as conn:
            created = conn.request(create_topics_request(TOPIC, 1))
        assert error_codes(created) == {ErrorCode.none}
        yield running


def create_acl(conn: Conn, g: Grant, principal: str) -> None:
    """CreateAcls of one literal ALLOW, sent on `conn` (a super user's)."""
    creation = AclCreation(
        resource_type=i8(g.kind),
        resource_name=g.name,
        resource_pattern_type=i8(3),
        principal=principal,
        host="*",
        operation=i8(g.op),
        permission_type=i8(3),
    )
    response = conn.request(CreateAclsRequest(creations=(creation,)))
    assert [r.error_code for r in response.results] == [ErrorCode.none]


def grant(broker: EmbeddedBroker, g: Grant, principal: str = "User:alice") -> None:
    with Conn(broker.bootstrap, client_id="admin") as conn:
        create_acl(conn, g, principal)


def sent(broker: EmbeddedBroker, client: str, request: RequestPayload) -> set[int]:
    """The error codes of `request`'s answer, sent as User:<client>."""
    with Conn(broker.bootstrap, client_id=client) as conn:
        return error_codes(conn.request(request))


# How a row's requests reach the broker: (client, request) -> the answer's error codes. Here by
# client id (`as_principals`); a SASL test passes one that authenticates as User:<client>.
Send = Callable[[str, RequestPayload], set[int]]


def walk(row: Row, send: Send, grant_to: Callable[[Grant, str], None]) -> None:
    """Check one row: each step's error, then its grant; no authorization error at the end.
    `grant_to(grant, principal)` adds an ACL as a super user."""
    name = "r-" + "".join(c if c.isalnum() else "-" for c in row.api.lower())
    if row.setup is not None:
        assert send("admin", row.setup(name)) == {ErrorCode.none}
    for refused, granting in row.steps:
        codes = send(row.client, row.request(name))
        assert refused in codes, f"{row.api}: expected {refused!r}, got {codes}"
        grant_to(granting(name), f"User:{row.client}")
    codes = send(row.client, row.request(name))
    assert not codes & AUTH_ERRORS, f"{row.api}: still refused after every grant: {codes}"


@pytest.mark.parametrize("row", ROWS, ids=[row.api for row in ROWS])
def test_each_right_is_checked_in_kafkas_order(broker: EmbeddedBroker, row: Row) -> None:
    walk(
        row,
        lambda client, request: sent(broker, client, request),
        lambda g, principal: grant(broker, g, principal),
    )


def test_authorized_operations_come_from_the_acls(broker: EmbeddedBroker) -> None:
    grant(broker, Grant(Kind.TOPIC, TOPIC, Op.READ), "User:gina")
    grant(broker, Grant(Kind.TOPIC, TOPIC, Op.ALTER_CONFIGS), "User:gina")
    grant(broker, Grant(Kind.GROUP, "gina-group", Op.READ), "User:gina")
    as_principals(broker, {"gina": "User:gina"})
    topic_ops = bits(Op.READ, Op.DESCRIBE, Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS)
    with Conn(broker.bootstrap, client_id="gina") as conn:
        metadata = conn.request(
            make(
                MetadataRequest,
                topics=(make(MetadataRequestTopic, name=TOPIC),),
                include_topic_authorized_operations=True,
            )
        )
        cluster_ops = conn.request(
            make(DescribeClusterRequest, include_cluster_authorized_operations=True)
        ).cluster_authorized_operations
        groups = conn.request(
            make(DescribeGroupsRequest, groups=("gina-group",), include_authorized_operations=True)
        ).groups
    assert metadata.topics[0].topic_authorized_operations == topic_ops
    assert cluster_ops == 0  # no Describe on the cluster: none, as Kafka answers
    assert groups[0].authorized_operations == bits(Op.READ, Op.DESCRIBE)
    grant(broker, Grant(Kind.CLUSTER, CLUSTER_NAME, Op.DESCRIBE), "User:gina")
    grant(broker, Grant(Kind.CLUSTER, CLUSTER_NAME, Op.IDEMPOTENT_WRITE), "User:gina")
    with Conn(broker.bootstrap, client_id="gina") as conn:
        cluster_ops = conn.request(
            make(DescribeClusterRequest, include_cluster_authorized_operations=True)
        ).cluster_authorized_operations
    assert cluster_ops == bits(Op.DESCRIBE, Op.IDEMPOTENT_WRITE)


def bits(*ops: AclOperation) -> int:
    return sum(1 << op for op in ops)


def test_listings_show_only_what_the_principal_may_describe(broker: EmbeddedBroker) -> None:
    """ListGroups, ListTransactions and Metadata of every topic leave out, rather than refuse,
    what the principal may not describe; the internal topics too."""
    for group in ("listed-a", "listed-b"):
        commit = dataclasses.replace(offsets_commit(group), topics=offsets_commit(TOPIC).topics)
        assert sent(broker, "admin", commit) == {ErrorCode.none}
    grant(broker, Grant(Kind.GROUP, "listed-a", Op.DESCRIBE), "User:erin")
    grant(broker, Grant(Kind.TOPIC, TOPIC, Op.READ), "User:erin")
    as_principals(broker, {"erin": "User:erin"})
    with Conn(broker.bootstrap, client_id="erin") as conn:
        groups = conn.request(make(ListGroupsRequest)).groups
        topics = conn.request(make(MetadataRequest, topics=None)).topics
        listed = conn.request(make(ListTransactionsRequest)).transaction_states
    assert {g.group_id for g in groups} == {"listed-a"}
    assert {t.name for t in topics} == {TOPIC}
    assert listed == ()
    with Conn(broker.bootstrap, client_id="admin") as conn:
        groups = conn.request(make(ListGroupsRequest)).groups
        topics = conn.request(make(MetadataRequest, topics=None)).topics
    assert {"listed-a", "listed-b"} <= {g.group_id for g in groups}
    assert {"__consumer_offsets", "__transaction_state", TOPIC} <= {t.name for t in topics}


def test_deny_wins_over_the_wire(broker: EmbeddedBroker) -> None:
    grant(broker, Grant(Kind.TOPIC, "*", Op.ALL), "User:frank")
    deny = AclCreation(
        resource_type=i8(Kind.TOPIC),
        resource_name="secret-",
        resource_pattern_type=i8(4),  # PREFIXED
        principal="User:*",
        host="*",
        operation=i8(Op.READ),
        permission_type=i8(2),  # DENY
    )
    with Conn(broker.bootstrap, client_id="admin") as conn:
        conn.request(CreateAclsRequest(creations=(deny,)))
    as_principals(broker, {"frank": "User:frank"})
    assert TOPIC_DENIED in sent(broker, "frank", fetch_request("secret-payroll", [0]))
    assert TOPIC_DENIED not in sent(broker, "frank", fetch_request(TOPIC, [0]))
    # DENY READ does not deny DESCRIBE, which ALL implies
    metadata = make(MetadataRequest, topics=(make(MetadataRequestTopic, name="secret-payroll"),))
    assert TOPIC_DENIED not in sent(broker, "frank", metadata)
