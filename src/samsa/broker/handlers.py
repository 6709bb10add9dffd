"""The dispatch table: for each API, the request class its handler reads and the handler.

The class is kio's for the highest version samsa serves (`samsa.protocol.apis.SERVED`);
`samsa.broker.routing` converts a request of any served version to it.
"""

from __future__ import annotations

from kio.schema.add_offsets_to_txn.v3.request import AddOffsetsToTxnRequest
from kio.schema.add_partitions_to_txn.v3.request import AddPartitionsToTxnRequest
from kio.schema.alter_configs.v2.request import AlterConfigsRequest
from kio.schema.alter_user_scram_credentials.v0.request import AlterUserScramCredentialsRequest
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.consumer_group_describe.v1.request import ConsumerGroupDescribeRequest
from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest
from kio.schema.create_acls.v3.request import CreateAclsRequest
from kio.schema.create_partitions.v3.request import CreatePartitionsRequest
from kio.schema.create_topics.v7.request import CreateTopicsRequest
from kio.schema.delete_acls.v3.request import DeleteAclsRequest
from kio.schema.delete_groups.v2.request import DeleteGroupsRequest
from kio.schema.delete_records.v2.request import DeleteRecordsRequest
from kio.schema.delete_topics.v6.request import DeleteTopicsRequest
from kio.schema.describe_acls.v3.request import DescribeAclsRequest
from kio.schema.describe_cluster.v1.request import DescribeClusterRequest
from kio.schema.describe_configs.v4.request import DescribeConfigsRequest
from kio.schema.describe_groups.v5.request import DescribeGroupsRequest
from kio.schema.describe_log_dirs.v5.request import DescribeLogDirsRequest
from kio.schema.describe_producers.v0.request import DescribeProducersRequest
from kio.schema.describe_topic_partitions.v0.request import DescribeTopicPartitionsRequest
from kio.schema.describe_transactions.v0.request import DescribeTransactionsRequest
from kio.schema.describe_user_scram_credentials.v0.request import (
    DescribeUserScramCredentialsRequest,
)
from kio.schema.end_txn.v4.request import EndTxnRequest
from kio.schema.fetch.v12.request import FetchRequest
from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest
from kio.schema.heartbeat.v4.request import HeartbeatRequest
from kio.schema.incremental_alter_configs.v1.request import IncrementalAlterConfigsRequest
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.join_group.v9.request import JoinGroupRequest
from kio.schema.leave_group.v5.request import LeaveGroupRequest
from kio.schema.list_groups.v5.request import ListGroupsRequest
from kio.schema.list_offsets.v7.request import ListOffsetsRequest
from kio.schema.list_transactions.v1.request import ListTransactionsRequest
from kio.schema.offset_commit.v9.request import OffsetCommitRequest
from kio.schema.offset_delete.v0.request import OffsetDeleteRequest
from kio.schema.offset_fetch.v9.request import OffsetFetchRequest
from kio.schema.offset_for_leader_epoch.v4.request import OffsetForLeaderEpochRequest
from kio.schema.produce.v10.request import ProduceRequest
from kio.schema.sasl_authenticate.v2.request import SaslAuthenticateRequest
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest
from kio.schema.sync_group.v5.request import SyncGroupRequest
from kio.schema.txn_offset_commit.v3.request import TxnOffsetCommitRequest
from kio.schema.write_txn_markers.v1.request import WriteTxnMarkersRequest

from samsa.broker import (
    acls,
    admin,
    configs,
    consumer_groups,
    describe_topics,
    fetch,
    groups,
    logs,
    metadata,
    offsets,
    produce,
    scram,
    txn,
)
from samsa.broker.routing import Handler, route
from samsa.protocol.apis import ApiKey

HANDLERS: dict[ApiKey, Handler] = dict(
    [
        route(ProduceRequest, produce.handle_produce),
        route(FetchRequest, fetch.handle_fetch),
        route(
            ListOffsetsRequest,
            offsets.handle_list_offsets,
            older={0: offsets.handle_list_offsets_v0},
        ),
        route(OffsetForLeaderEpochRequest, offsets.handle_offset_for_leader_epoch),
        route(metadata.MetadataRequestView, metadata.handle_metadata),
        route(ApiVersionsRequest, metadata.handle_api_versions),
        route(DescribeClusterRequest, metadata.handle_describe_cluster),
        route(SaslHandshakeRequest, scram.handle_sasl_handshake),
        route(SaslAuthenticateRequest, scram.handle_sasl_authenticate),
        route(DescribeUserScramCredentialsRequest, scram.handle_describe_user_scram_credentials),
        route(AlterUserScramCredentialsRequest, scram.handle_alter_user_scram_credentials),
        route(CreateTopicsRequest, admin.handle_create_topics),
        route(DeleteTopicsRequest, admin.handle_delete_topics, admin.delete_topics_view),
        route(CreatePartitionsRequest, admin.handle_create_partitions),
        route(DescribeConfigsRequest, configs.handle_describe_configs),
        route(AlterConfigsRequest, configs.handle_alter_configs),
        route(IncrementalAlterConfigsRequest, configs.handle_incremental_alter_configs),
        route(InitProducerIdRequest, txn.handle_init_producer_id),
        route(FindCoordinatorRequest, txn.handle_find_coordinator, txn.find_coordinator_view),
        route(AddPartitionsToTxnRequest, txn.handle_add_partitions_to_txn),
        route(AddOffsetsToTxnRequest, txn.handle_add_offsets_to_txn),
        route(EndTxnRequest, txn.handle_end_txn),
        route(WriteTxnMarkersRequest, txn.handle_write_txn_markers),
        route(DescribeProducersRequest, txn.handle_describe_producers),
        route(DescribeTransactionsRequest, txn.handle_describe_transactions),
        route(ListTransactionsRequest, txn.handle_list_transactions),
        route(JoinGroupRequest, groups.handle_join_group),
        route(SyncGroupRequest, groups.handle_sync_group),
        route(HeartbeatRequest, groups.handle_heartbeat),
        route(LeaveGroupRequest, groups.handle_leave_group, groups.leave_group_view),
        route(OffsetCommitRequest, groups.handle_offset_commit),
        route(OffsetFetchRequest, groups.handle_offset_fetch, groups.offset_fetch_view),
        route(TxnOffsetCommitRequest, groups.handle_txn_offset_commit),
        route(ListGroupsRequest, groups.handle_list_groups),
        route(DescribeGroupsRequest, groups.handle_describe_groups),
        route(DeleteGroupsRequest, groups.handle_delete_groups),
        route(OffsetDeleteRequest, groups.handle_offset_delete),
        route(DeleteRecordsRequest, logs.handle_delete_records),
        route(DescribeLogDirsRequest, logs.handle_describe_log_dirs),
        route(DescribeTopicPartitionsRequest, describe_topics.handle_describe_topic_partitions),
        route(ConsumerGroupHeartbeatRequest, consumer_groups.handle_consumer_group_heartbeat),
        route(ConsumerGroupDescribeRequest, consumer_groups.handle_consumer_group_describe),
        route(DescribeAclsRequest, acls.handle_describe_acls),
        route(CreateAclsRequest, acls.handle_create_acls),
        route(DeleteAclsRequest, acls.handle_delete_acls),
    ]
)
