"""Each handler reads the highest served version of its request (`samsa.broker.routing`): what
converting an older version up would lose is known, and the views keep what handlers need."""

from __future__ import annotations

import datetime

import pytest
from kio.schema.delete_topics.v1.request import DeleteTopicsRequest as DeleteTopicsRequestV1
from kio.schema.find_coordinator.v0.request import (
    FindCoordinatorRequest as FindCoordinatorRequestV0,
)
from kio.schema.find_coordinator.v2.request import (
    FindCoordinatorRequest as FindCoordinatorRequestV2,
)
from kio.schema.leave_group.v0.request import LeaveGroupRequest as LeaveGroupRequestV0
from kio.schema.produce.v9.request import ProduceRequest as ProduceRequestV9
from kio.schema.types import GroupId, TopicName
from kio.static.primitive import i8, i32Timedelta
from kio.static.protocol import RequestPayload

from samsa.broker import admin, groups, produce, txn
from samsa.broker.handlers import HANDLERS
from samsa.broker.routing import route
from samsa.protocol import codec, versions
from samsa.protocol.apis import SERVED, ApiKey
from samsa.protocol.codec import Request

# Request fields of a served version that the highest served version does not have. A handler
# cannot read them: each is either one samsa has no use for, or moved by the route's view.
DROPPED = {
    # OffsetCommit v2-4's retention time (gone in v5, KIP-211): samsa never used it.
    (ApiKey.OFFSET_COMMIT, "retention_time"),
    # OffsetCommit v1's per-partition commit timestamp: Kafka 3.9 used it only to expire the
    # offset, and samsa does not expire committed offsets.
    (ApiKey.OFFSET_COMMIT, "topics.partitions.commit_timestamp"),
    # ListOffsets v0 has a handler of its own (`offsets.handle_list_offsets_v0`).
    (ApiKey.LIST_OFFSETS, "topics.partitions.max_num_offsets"),
    # Moved by the views (Metadata's: a subclass of v12 that keeps it; the rest below).
    (ApiKey.METADATA, "include_cluster_authorized_operations"),
    (ApiKey.FIND_COORDINATOR, "key"),
    (ApiKey.LEAVE_GROUP, "member_id"),
    (ApiKey.DELETE_TOPICS, "topic_names"),
}


def test_every_served_api_has_a_handler() -> None:
    assert set(HANDLERS) == set(SERVED)


def test_what_converting_up_drops_is_known() -> None:
    dropped = set()
    for api_key, served in SERVED.items():
        top = codec.request_type(api_key, served.max)
        assert top is not None
        for version in range(served.min, served.max):
            old = codec.request_type(api_key, version)
            assert old is not None
            dropped |= {(ApiKey(api_key), name) for name in versions.dropped(old, top)}
    assert dropped == DROPPED


def test_a_handler_of_another_version_than_the_highest_served_is_refused() -> None:
    with pytest.raises(RuntimeError, match="v10 is the highest served"):
        route(ProduceRequestV9, produce.handle_produce)  # type: ignore[arg-type]


def request(payload: RequestPayload) -> Request[RequestPayload]:
    return Request(type(payload).__api_key__, type(payload).__version__, 1, "t", payload)


def test_leave_group_before_v3_is_a_batch_of_its_one_member() -> None:
    view = groups.leave_group_view(
        request(LeaveGroupRequestV0(group_id=GroupId("g"), member_id="m"))
    )
    assert view.group_id == "g"
    assert [(m.member_id, m.group_instance_id) for m in view.members] == [("m", None)]


def test_delete_topics_before_v6_names_each_topic_without_an_id() -> None:
    old = DeleteTopicsRequestV1(
        topic_names=(TopicName("a"), TopicName("b")),
        timeout=i32Timedelta.parse(datetime.timedelta(seconds=3)),
    )
    view = admin.delete_topics_view(request(old))
    assert [(t.name, t.topic_id) for t in view.topics] == [("a", None), ("b", None)]
    assert view.timeout == datetime.timedelta(seconds=3)


def test_find_coordinator_before_v4_asks_for_its_one_key() -> None:
    view = txn.find_coordinator_view(request(FindCoordinatorRequestV0(key="g")))
    assert (view.key_type, view.coordinator_keys) == (0, ("g",))  # v0 has groups only
    view = txn.find_coordinator_view(request(FindCoordinatorRequestV2(key="t", key_type=i8(1))))
    assert (view.key_type, view.coordinator_keys) == (1, ("t",))
