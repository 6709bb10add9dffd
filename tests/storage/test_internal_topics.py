"""The coordinators' logs belong to the broker: clients can neither delete nor grow them.

Before the storage commit DeleteTopics on `__consumer_offsets` succeeded: the broker created it
again, empty, and every group's committed offsets were gone (consumers restarted from
auto.offset.reset). CreatePartitions on it succeeded too, though the coordinators only use
partition 0.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient, NewPartitions
from kio.schema.delete_topics.v6.request import DeleteTopicsRequest, DeleteTopicState
from kio.schema.errors import ErrorCode
from kio.schema.types import TopicName
from kio.static.primitive import i32Timedelta

from protocol.wire import Conn
from samsa.testing.topics import create_topic

from .conftest import StartBroker
from .support import WAIT_TIMEOUT_S, commit, committed, produce_acked, values

TOPIC = "consumed"
GROUP = "keeps-its-offsets"
COMMITTED = 42
INTERNAL_TOPICS = ("__consumer_offsets", "__transaction_state")


def refusal(future: object) -> confluent_kafka.KafkaError:
    with pytest.raises(confluent_kafka.KafkaException) as raised:
        future.result(timeout=WAIT_TIMEOUT_S)  # type: ignore[attr-defined]
    error: confluent_kafka.KafkaError = raised.value.args[0]
    return error


def delete_raw(bootstrap: str, name: str) -> tuple[ErrorCode, str | None]:
    """DeleteTopics v6 on the wire: its error code and message."""
    request = DeleteTopicsRequest(
        topics=(DeleteTopicState(name=TopicName(name), topic_id=None),),
        timeout=i32Timedelta.parse(datetime.timedelta(seconds=10)),
    )
    with Conn(bootstrap) as conn:
        [result] = conn.request(request).responses
    return result.error_code, result.error_message


def test_internal_topics_cannot_be_deleted_or_grown_and_offsets_survive(
    tmp_path: Path, start_broker: StartBroker
) -> None:
    broker = start_broker(tmp_path / "data")
    create_topic(broker.bootstrap, TOPIC, 1)
    produce_acked(broker.bootstrap, TOPIC, values(100, "consumed"), 1)
    commit(broker.bootstrap, GROUP, TOPIC, COMMITTED)
    # A transaction, so __transaction_state holds records as well.
    transactional = confluent_kafka.Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": "t-1", "log_level": 0}
    )
    transactional.init_transactions(WAIT_TIMEOUT_S)
    transactional.begin_transaction()
    transactional.produce(TOPIC, b"in a transaction", partition=0)
    transactional.commit_transaction(WAIT_TIMEOUT_S)

    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
    for name in INTERNAL_TOPICS:
        deleted = refusal(admin.delete_topics([name], operation_timeout=10)[name])
        grown = refusal(admin.create_partitions([NewPartitions(name, 4)])[name])
        for error in (deleted, grown):
            assert error.code() == confluent_kafka.KafkaError.TOPIC_EXCEPTION, error
        # librdkafka's DeleteTopics (v1..v4) has no room for the broker's message; v6 has.
        assert f"cannot add partitions to internal topic {name}" in grown.str(), grown.str()
        code, message = delete_raw(broker.bootstrap, name)
        assert code == ErrorCode.invalid_topic_exception, code
        assert f"cannot delete internal topic {name}" in (message or ""), message
        described = admin.list_topics(name, timeout=WAIT_TIMEOUT_S).topics[name]
        assert described.error is None and len(described.partitions) == 1, described

    broker.kill9()
    broker.start()
    assert committed(broker.bootstrap, GROUP, TOPIC) == COMMITTED
