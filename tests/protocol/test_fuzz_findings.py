"""Requests the request fuzzer (test_request_fuzz.py) found mishandled, each pinned by the
smallest request that showed it, against a real broker."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.types import TopicName

from samsa.testing import EmbeddedBroker

from .fuzz_requests import at_version
from .wire import Conn


def assert_still_serving(conn: Conn) -> None:
    response = conn.request(
        MetadataRequest(
            topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False
        )
    )
    assert [b.node_id for b in response.brokers] == [1]


def metadata_request(version: int, name: str | None, topic_id: uuid.UUID | None) -> Any:
    v12 = MetadataRequest(
        topics=(
            MetadataRequestTopic(topic_id=topic_id, name=None if name is None else TopicName(name)),
        ),
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    return at_version(v12, version)


@pytest.mark.parametrize("version", [10, 11])
@pytest.mark.parametrize(
    ("name", "topic_id"), [(None, None), (None, uuid.UUID(int=0)), ("t", uuid.UUID(int=7))]
)
def test_metadata_v10_v11_with_a_null_name_or_a_topic_id_is_an_invalid_request(
    broker: EmbeddedBroker, version: int, name: str | None, topic_id: uuid.UUID | None
) -> None:
    """Topic ids are in the v10 schema but usable from v12 on. Before: the broker answered
    with a null topic name, which v10/v11 cannot encode, so the request failed and the
    connection was closed. Kafka answers INVALID_REQUEST for each topic, a null name as ""."""
    with Conn(broker.bootstrap) as conn:
        response = conn.request(metadata_request(version, name, topic_id))
        [topic] = response.topics
        assert topic.error_code == ErrorCode.invalid_request
        assert topic.name == (name or "")
        assert_still_serving(conn)


def test_metadata_v12_looks_a_topic_up_by_id_or_says_it_is_unknown(
    broker: EmbeddedBroker,
) -> None:
    with Conn(broker.bootstrap) as conn:
        response = conn.request(metadata_request(12, None, uuid.UUID(int=7)))
        [topic] = response.topics
        assert (topic.error_code, topic.name) == (ErrorCode.unknown_topic_id, None)
