"""Offsets inside transactions at the protocol level (issue 5, parts 3 and 4): TxnOffsetCommit v3
is checked against the group's generation and members (KIP-447), so a zombie from an older
generation cannot commit; OffsetFetch v7 with require_stable reports UNSTABLE_OFFSET_COMMIT
while a transaction holds offsets for a partition (KIP-447), and the COMMIT or ABORT marker
settles them."""

from __future__ import annotations

import threading
from collections.abc import Callable

import confluent_kafka
import pytest
from kio.schema.errors import ErrorCode

from samsa.admin.client import AdminClient as Conn
from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.topics import create_topics

from .protocol import (
    Membership,
    add_offsets,
    end_txn,
    heartbeat,
    init_producer,
    join,
    offset_commit,
    offset_fetch,
    sync,
    txn_offset_commit,
)
from .support import wait_for

TOPIC = "txn-offsets"
P0, P1 = (TOPIC, 0), (TOPIC, 1)


def in_thread(action: Callable[[], Membership]) -> Callable[[], Membership]:
    """Start `action` (a JoinGroup that waits for the rebalance) in a thread; the returned
    function joins it and hands back its result."""
    result: list[Membership] = []
    thread = threading.Thread(target=lambda: result.append(action()), daemon=True)
    thread.start()

    def wait() -> Membership:
        thread.join(30)
        assert result, "JoinGroup never completed"
        return result[0]

    return wait


def test_txn_offset_commit_fences_older_generations(samsa_broker: EmbeddedBroker) -> None:
    bootstrap = samsa_broker.bootstrap
    create_topics(bootstrap, {TOPIC: 2})
    group = "zombie-protocol"
    with Conn(bootstrap) as a, Conn(bootstrap) as b, Conn(bootstrap) as txn:
        first = join(a, group)
        assert first.generation_id >= 1 and first.leader == first.member_id
        assert sync(a, group, first) == ErrorCode.none

        producer = init_producer(txn, "zombie-protocol-txn")
        assert add_offsets(txn, producer, group) == ErrorCode.none
        # The current generation may commit inside the transaction.
        assert txn_offset_commit(
            txn, producer, group, {P0: 5}, first.generation_id, first.member_id
        ) == {P0: ErrorCode.none}

        # A second member joins; the first rejoins: a new generation.
        joining = in_thread(lambda: join(b, group))
        wait_for(
            lambda: (
                heartbeat(a, group, first.member_id, first.generation_id)
                == ErrorCode.rebalance_in_progress
            ),
            "the rebalance to begin",
        )
        rejoined = join(a, group, first.member_id)
        second = joining()
        assert rejoined.generation_id == second.generation_id == first.generation_id + 1
        assert sync(a, group, rejoined) == ErrorCode.none
        assert sync(b, group, second) == ErrorCode.none

        # The zombie: work from the old generation cannot be committed ...
        assert txn_offset_commit(
            txn, producer, group, {P0: 7, P1: 7}, first.generation_id, first.member_id
        ) == {P0: ErrorCode.illegal_generation, P1: ErrorCode.illegal_generation}
        # ... nor by a member the group does not know ...
        assert txn_offset_commit(
            txn, producer, group, {P0: 8}, second.generation_id, "not-a-member"
        ) == {P0: ErrorCode.unknown_member_id}
        # ... nor with a generation of a group that does not exist (Kafka: ILLEGAL_GENERATION).
        assert txn_offset_commit(txn, producer, "no-such-group", {P0: 9}, 3, "someone") == {
            P0: ErrorCode.illegal_generation
        }
        # The current generation still can.
        assert txn_offset_commit(
            txn, producer, group, {P1: 11}, second.generation_id, second.member_id
        ) == {P1: ErrorCode.none}
        assert heartbeat(a, group, first.member_id, first.generation_id) == (
            ErrorCode.illegal_generation
        )
        assert end_txn(txn, producer, commit=True) == ErrorCode.none

        wait_for(
            lambda: (
                offset_fetch(a, group, [P0, P1], require_stable=True)
                == {P0: (5, ErrorCode.none), P1: (11, ErrorCode.none)}
            ),
            "the committed transaction's offsets (and none of the refused ones)",
        )


def test_txn_offset_commit_fences_replaced_static_member(samsa_broker: EmbeddedBroker) -> None:
    bootstrap = samsa_broker.bootstrap
    create_topics(bootstrap, {TOPIC: 2})
    group = "zombie-static"
    with Conn(bootstrap) as old, Conn(bootstrap) as new, Conn(bootstrap) as txn:
        first = join(old, group, instance_id="instance-1")
        assert sync(old, group, first, "instance-1") == ErrorCode.none
        # A new process with the same group.instance.id takes over (KIP-345).
        second = join(new, group, instance_id="instance-1")
        assert second.member_id != first.member_id
        assert sync(new, group, second, "instance-1") == ErrorCode.none

        producer = init_producer(txn, "zombie-static-txn")
        assert add_offsets(txn, producer, group) == ErrorCode.none
        assert txn_offset_commit(
            txn, producer, group, {P0: 3}, first.generation_id, first.member_id, "instance-1"
        ) == {P0: ErrorCode.fenced_instance_id}
        assert heartbeat(old, group, first.member_id, first.generation_id, "instance-1") == (
            ErrorCode.fenced_instance_id
        )
        assert txn_offset_commit(
            txn, producer, group, {P0: 4}, second.generation_id, second.member_id, "instance-1"
        ) == {P0: ErrorCode.none}
        assert end_txn(txn, producer, commit=True) == ErrorCode.none
        wait_for(
            lambda: (
                offset_fetch(txn, group, [P0], require_stable=True) == {P0: (4, ErrorCode.none)}
            ),
            "the new instance's offset",
        )


def test_offset_fetch_require_stable(samsa_broker: EmbeddedBroker) -> None:
    bootstrap = samsa_broker.bootstrap
    create_topics(bootstrap, {TOPIC: 2})
    group = "require-stable"
    with Conn(bootstrap) as conn, Conn(bootstrap) as txn:
        offset_commit(conn, group, {P0: 5})
        producer = init_producer(txn, "require-stable-txn")

        # A transaction with offsets for P0 is open.
        assert add_offsets(txn, producer, group) == ErrorCode.none
        assert txn_offset_commit(txn, producer, group, {P0: 10}) == {P0: ErrorCode.none}
        assert offset_fetch(conn, group, [P0, P1], require_stable=True) == {
            P0: (-1, ErrorCode.unstable_offset_commit),
            P1: (-1, ErrorCode.none),  # no offset, none pending
        }
        # Without require_stable the last committed offset is returned.
        assert offset_fetch(conn, group, [P0], require_stable=False) == {P0: (5, ErrorCode.none)}
        assert_librdkafka_waits_while_unstable(bootstrap, group)

        assert end_txn(txn, producer, commit=True) == ErrorCode.none
        wait_for(
            lambda: (
                offset_fetch(conn, group, [P0], require_stable=True)[P0][1]
                != ErrorCode.unstable_offset_commit
            ),
            "the COMMIT marker to settle the pending offset",
        )
        assert offset_fetch(conn, group, [P0], require_stable=True) == {P0: (10, ErrorCode.none)}

        # Again, and abort: the old offset comes back.
        assert add_offsets(txn, producer, group) == ErrorCode.none
        assert txn_offset_commit(txn, producer, group, {P0: 20}) == {P0: ErrorCode.none}
        assert offset_fetch(conn, group, [P0], require_stable=True) == {
            P0: (-1, ErrorCode.unstable_offset_commit)
        }
        assert end_txn(txn, producer, commit=False) == ErrorCode.none
        wait_for(
            lambda: (
                offset_fetch(conn, group, [P0], require_stable=True)[P0][1]
                != ErrorCode.unstable_offset_commit
            ),
            "the ABORT marker to settle the pending offset",
        )
        assert offset_fetch(conn, group, [P0], require_stable=True) == {P0: (10, ErrorCode.none)}

    # And after a restart, from the log alone.
    samsa_broker.restart()
    with Conn(samsa_broker.bootstrap) as conn:
        assert offset_fetch(conn, group, [P0], require_stable=True) == {P0: (10, ErrorCode.none)}


def assert_librdkafka_waits_while_unstable(bootstrap: str, group: str) -> None:
    """librdkafka asks with require_stable under read_committed and retries UNSTABLE_OFFSET_COMMIT
    until its timeout; under read_uncommitted it gets the last committed offset."""
    for isolation, expect_offset in (("read_committed", None), ("read_uncommitted", 5)):
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "isolation.level": isolation,
                "enable.auto.commit": False,
                "log_level": 0,
            }
        )
        try:
            if expect_offset is None:
                with pytest.raises(confluent_kafka.KafkaException) as raised:
                    consumer.committed([confluent_kafka.TopicPartition(*P0)], timeout=2)
                assert raised.value.args[0].code() == confluent_kafka.KafkaError._TIMED_OUT
            else:
                [found] = consumer.committed([confluent_kafka.TopicPartition(*P0)], timeout=10)
                assert found.offset == expect_offset
        finally:
            consumer.close()
