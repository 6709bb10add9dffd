"""Metadata v8-10 ask for the cluster's authorized operations (v11 dropped the flag, KIP-700):
the handler reads v12 through a view that keeps it, and answers as Kafka without an authorizer."""

from __future__ import annotations

import pytest
from kio.schema.metadata.v8.request import MetadataRequest as MetadataRequestV8
from kio.schema.metadata.v10.request import MetadataRequest as MetadataRequestV10
from kio.schema.metadata.v12.request import MetadataRequest as MetadataRequestV12

from samsa.broker.metadata import AUTHORIZED_OPERATIONS_OMITTED, CLUSTER_OPERATIONS
from samsa.testing import EmbeddedBroker
from samsa.testing.wire import Conn


@pytest.mark.parametrize("request_class", [MetadataRequestV8, MetadataRequestV10])
def test_v8_to_v10_answer_the_cluster_operations_when_asked(
    samsa_broker: EmbeddedBroker, request_class: type[MetadataRequestV10]
) -> None:
    with Conn(samsa_broker.bootstrap) as conn:
        for asked, expected in ((True, CLUSTER_OPERATIONS), (False, AUTHORIZED_OPERATIONS_OMITTED)):
            answer = conn.request(
                request_class(
                    topics=None,
                    allow_auto_topic_creation=False,
                    include_cluster_authorized_operations=asked,
                    include_topic_authorized_operations=False,
                )
            )
            assert answer.cluster_authorized_operations == expected
            assert answer.brokers[0].node_id == 1


def test_v12_has_no_cluster_operations(samsa_broker: EmbeddedBroker) -> None:
    with Conn(samsa_broker.bootstrap) as conn:
        answer = conn.request(
            MetadataRequestV12(
                topics=None,
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=True,
            )
        )
    assert not hasattr(answer, "cluster_authorized_operations")
    assert {t.name for t in answer.topics} >= {"__consumer_offsets"}
