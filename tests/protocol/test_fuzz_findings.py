"""Requests the request fuzzer (test_request_fuzz.py) found mishandled, each pinned by the
smallest request that showed it, against a real broker."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from samsa.protocol.apis import ApiKey
from samsa.protocol.batch import TRANSACTIONAL_FLAG
from samsa.protocol.batch_writer import record_batch
from samsa.protocol.build import build
from samsa.testing import EmbeddedBroker

from .fuzz_requests import request_class
from .wire import Conn, create_topics_request


def assert_still_serving(conn: Conn) -> None:
    response = conn.request(
        build(
            request_class(ApiKey.METADATA, 12),
            {
                "topics": None,
                "allow_auto_topic_creation": False,
                "include_topic_authorized_operations": False,
            },
        )
    )
    assert [b.node_id for b in response.brokers] == [1]


def metadata_request(version: int, name: str | None, topic_id: uuid.UUID | None) -> Any:
    return build(
        request_class(ApiKey.METADATA, version),
        {
            "topics": [{"name": name, "topic_id": topic_id}],
            "allow_auto_topic_creation": False,
            "include_cluster_authorized_operations": False,  # v8-v10 only
            "include_topic_authorized_operations": False,
        },
    )


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


def _request(api: ApiKey, version: int, fields: dict[str, Any]) -> Any:
    return build(request_class(api, version), fields)


@pytest.mark.xfail(
    strict=True,
    reason="issue 13, 'Transaction markers only from where they belong' (branch markers): "
    "a client's ABORT marker for a transaction the coordinator holds open is written as is",
)
def test_a_client_abort_marker_cannot_split_an_open_transaction(broker: EmbeddedBroker) -> None:
    """Found by test_flow_fuzz: InitProducerId, AddPartitionsToTxn, a transactional produce,
    then a client's WriteTxnMarkers(ABORT) for that producer, then EndTxn(commit). Today the
    marker aborts the record on its partition and the commit is still answered with success:
    the transaction is committed without its record. Kafka's rule (KIP-664) is that such an
    abort goes through the coordinator, which fences the producer, so the commit fails."""
    topic, txn_id = "fuzz-findings-markers", "fuzz-findings-txn"
    with Conn(broker.bootstrap) as conn:
        assert conn.request(create_topics_request(topic, 1)).topics[0].error_code == 0
        init = conn.request(
            _request(
                ApiKey.INIT_PRODUCER_ID,
                4,
                {
                    "transactional_id": txn_id,
                    "transaction_timeout": 60_000,
                    "producer_id": -1,
                    "producer_epoch": -1,
                },
            )
        )
        ids = {"producer_id": init.producer_id, "producer_epoch": init.producer_epoch}
        added = conn.request(
            _request(
                ApiKey.ADD_PARTITIONS_TO_TXN,
                3,
                {
                    "v3_and_below_transactional_id": txn_id,
                    "v3_and_below_producer_id": init.producer_id,
                    "v3_and_below_producer_epoch": init.producer_epoch,
                    "v3_and_below_topics": [{"name": topic, "partitions": [0]}],
                },
            )
        )
        [result] = added.results_by_topic_v3_and_below[0].results_by_partition
        assert result.partition_error_code == ErrorCode.none
        batch = record_batch(
            [b"in the transaction"],
            timestamp_ms=int(time.time() * 1000),
            producer_id=init.producer_id,
            producer_epoch=init.producer_epoch,
            base_sequence=0,
            attributes=TRANSACTIONAL_FLAG,
        )
        produced = conn.request(
            _request(
                ApiKey.PRODUCE,
                9,
                {
                    "transactional_id": txn_id,
                    "acks": -1,
                    "timeout": 10_000,
                    "topic_data": [
                        {"name": topic, "partition_data": [{"index": 0, "records": batch}]}
                    ],
                },
            )
        )
        assert produced.responses[0].partition_responses[0].error_code == 0
        marker = {
            **ids,
            "transaction_result": False,
            "topics": [{"name": topic, "partition_indexes": [0]}],
            "coordinator_epoch": 0,
        }
        conn.request(_request(ApiKey.WRITE_TXN_MARKERS, 1, {"markers": [marker]}))
        ended = conn.request(
            _request(ApiKey.END_TXN, 3, {"transactional_id": txn_id, **ids, "committed": True})
        )
        fetched = conn.request(
            _request(
                ApiKey.FETCH,
                12,
                {
                    "max_wait": 0,
                    "min_bytes": 0,
                    "max_bytes": 1 << 20,
                    "isolation_level": 1,
                    "topics": [
                        {
                            "topic": topic,
                            "partitions": [
                                {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}
                            ],
                        }
                    ],
                    "forgotten_topics_data": [],
                },
            )
        )
    aborted = fetched.responses[0].partitions[0].aborted_transactions or ()
    record_aborted = any(a.producer_id == init.producer_id for a in aborted)
    # Either the commit is refused (the producer was fenced by the abort) or it holds.
    assert ended.error_code != ErrorCode.none or not record_aborted
