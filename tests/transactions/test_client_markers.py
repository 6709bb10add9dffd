"""WriteTxnMarkers from a client (issue 13): transaction markers only from where they belong.

In Kafka, WriteTxnMarkers is the coordinator's request to partition leaders; a client sends it
only to abort a hanging transaction (KIP-664). Here an anonymous client aims it at producer A's
transaction, as an attacker or a careless tool would:

- a COMMIT is refused with CLUSTER_AUTHORIZATION_FAILED and writes nothing, so when A aborts,
  a read_committed reader sees none of A's records (before: the COMMIT was written and A's
  records stayed visible after A's abort succeeded);
- an ABORT of a transaction the coordinator holds is carried out by the coordinator: every
  partition of the transaction is aborted, A is fenced, and DescribeTransactions, DescribeProducers
  and the last stable offsets agree (before: one partition was aborted behind the coordinator's
  back, and A's commit then made the rest visible);
- an ABORT of a hanging transaction (a write the coordinator does not hold) is written to the
  partition, under Kafka's epoch rule, and the transactional id goes on working.
"""

from __future__ import annotations

import confluent_kafka
import pytest
from kio.schema.errors import ErrorCode

from samsa.admin.client import READ_COMMITTED, READ_UNCOMMITTED
from samsa.admin.client import AdminClient as SamsaAdmin
from samsa.log.partition import LogConfig, PartitionLog, partition_directory
from samsa.log.storage import OsStorage
from samsa.protocol.batch import validate_produced
from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.topics import create_topics

from .support import (
    assert_fenced,
    offsets,
    read_confluent,
    txn_batch,
    txn_producer,
    wait_stable,
    wall_ms,
)
from .test_txn_cli import samsa_txn

pytestmark = pytest.mark.interop

TOPIC = "guarded"
TPS = [(TOPIC, 0), (TOPIC, 1)]
LONG_TIMEOUT_MS = 900_000  # the coordinator must not abort A on its own during a test


def send_marker(
    bootstrap: str, partition: int, producer_id: int, producer_epoch: int, commit: bool
) -> ErrorCode:
    """One WriteTxnMarkers, as any client may send it; the partition's error code."""
    with SamsaAdmin(bootstrap) as admin:
        response = admin.write_txn_markers(TOPIC, partition, producer_id, producer_epoch, 0, commit)
    (error,) = [p.error_code for m in response.markers for t in m.topics for p in t.partitions]
    return error


def coordinator_view(bootstrap: str, transactional_id: str) -> tuple[str, int, int, list[str]]:
    """DescribeTransactions: (state, producer id, epoch, partitions)."""
    with SamsaAdmin(bootstrap) as admin:
        (state,) = admin.describe_transactions([transactional_id]).transaction_states
    assert state.error_code == ErrorCode.none, state.error_code
    partitions = [f"{t.topic}-{p}" for t in state.topics for p in t.partitions]
    return (
        state.transaction_state,
        int(state.producer_id),
        int(state.producer_epoch),
        partitions,
    )


def partition_view(bootstrap: str, producer_id: int) -> dict[int, tuple[int, int]]:
    """DescribeProducers: partition -> (the producer's epoch there, its open transaction's
    first offset or -1)."""
    with SamsaAdmin(bootstrap) as admin:
        response = admin.describe_producers({TOPIC: [0, 1]})
    return {
        int(p.partition_index): (int(a.producer_epoch), int(a.current_txn_start_offset))
        for t in response.topics
        for p in t.partitions
        for a in p.active_producers
        if int(a.producer_id) == producer_id
    }


def open_transaction(bootstrap: str) -> tuple[confluent_kafka.Producer, int, int]:
    """Creates the topic; producer A ("victim-tx") with records in both partitions of an open
    transaction, its producer id and epoch."""
    create_topics(bootstrap, {TOPIC: 2})
    producer = txn_producer(bootstrap, "victim-tx", **{"transaction.timeout.ms": LONG_TIMEOUT_MS})
    producer.init_transactions(30)
    producer.begin_transaction()
    for p in range(2):
        producer.produce(TOPIC, b"A", partition=p)
    assert producer.flush(30) == 0
    state, producer_id, epoch, partitions = coordinator_view(bootstrap, "victim-tx")
    assert (state, partitions) == ("Ongoing", [f"{TOPIC}-0", f"{TOPIC}-1"])
    return producer, producer_id, epoch


def produce_plain(bootstrap: str, value: bytes) -> None:
    plain = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    for p in range(2):
        plain.produce(TOPIC, value, partition=p)
    assert plain.flush(30) == 0


def test_a_client_commit_is_refused_and_the_owner_abort_holds(
    samsa_broker: EmbeddedBroker,
) -> None:
    bootstrap = samsa_broker.bootstrap
    a, producer_id, epoch = open_transaction(bootstrap)
    before = offsets(bootstrap, TPS, READ_UNCOMMITTED)

    refused = send_marker(bootstrap, 0, producer_id, epoch, commit=True)
    after = offsets(bootstrap, TPS, READ_UNCOMMITTED)
    a.abort_transaction(30)  # succeeds: A is not fenced by a refused request
    produce_plain(bootstrap, b"after")

    ends = wait_stable(bootstrap, TPS)
    committed = read_confluent(bootstrap, TPS, "read_committed", ends)
    assert committed == {tp: [b"after"] for tp in TPS}  # none of A's records
    assert refused == ErrorCode.cluster_authorization_failed
    assert after == before  # nothing written
    assert coordinator_view(bootstrap, "victim-tx")[0] == "CompleteAbort"


def test_a_client_abort_of_a_held_transaction_goes_through_the_coordinator(
    samsa_broker: EmbeddedBroker,
) -> None:
    bootstrap = samsa_broker.bootstrap
    a, producer_id, epoch = open_transaction(bootstrap)

    # An ABORT naming one partition of the transaction: answered once the coordinator's
    # markers are durable in every partition of it.
    assert send_marker(bootstrap, 0, producer_id, epoch, commit=False) == ErrorCode.none
    assert coordinator_view(bootstrap, "victim-tx") == ("CompleteAbort", producer_id, epoch + 1, [])
    assert partition_view(bootstrap, producer_id) == {0: (epoch + 1, -1), 1: (epoch + 1, -1)}
    stable = offsets(bootstrap, TPS, READ_COMMITTED)
    assert stable == offsets(bootstrap, TPS, READ_UNCOMMITTED) == {tp: 2 for tp in TPS}
    described = samsa_txn(bootstrap, "describe", "--transactional-id", "victim-tx").stdout
    assert described.splitlines()[1].split()[:4] == [
        "victim-tx",
        "CompleteAbort",
        str(producer_id),
        str(epoch + 1),
    ]

    assert_fenced(a, TOPIC, range(2))

    produce_plain(bootstrap, b"after")
    ends = wait_stable(bootstrap, TPS)
    assert read_confluent(bootstrap, TPS, "read_committed", ends) == {tp: [b"after"] for tp in TPS}
    everything = read_confluent(bootstrap, TPS, "read_uncommitted", ends)
    assert all(b"zombie-after" not in everything[tp] for tp in TPS)  # refused, not hidden


def test_a_hanging_transaction_is_aborted_on_the_partition(
    samsa_broker: EmbeddedBroker,
) -> None:
    """The hanging write is planted while the broker is down: a transactional batch of a
    producer the coordinator knows, on a partition its transaction does not hold (what a lost
    marker, or a write that outlived its transaction, leaves behind)."""
    bootstrap = samsa_broker.bootstrap
    create_topics(bootstrap, {TOPIC: 2})
    txn_producer(bootstrap, "late-tx").init_transactions(30)
    owner = txn_producer(bootstrap, "late-tx")
    owner.init_transactions(30)  # epoch 1
    owner.begin_transaction()
    owner.produce(TOPIC, b"committed", partition=1)
    owner.commit_transaction(30)
    _, producer_id, epoch, _ = coordinator_view(bootstrap, "late-tx")
    assert epoch == 1

    samsa_broker.stop()
    log = PartitionLog.open(
        OsStorage(),
        partition_directory(samsa_broker.data_dir, TOPIC, 0),
        TOPIC,
        0,
        LogConfig(),
        wall_ms(),
        False,
    )
    batch = txn_batch([b"hanging"], producer_id, epoch, 0)
    log.append(batch, validate_produced(batch, 1 << 20), wall_ms(), lambda _: ErrorCode.none)
    assert log.close()
    samsa_broker.start()

    assert coordinator_view(bootstrap, "late-tx") == ("CompleteCommit", producer_id, epoch, [])
    hanging = samsa_txn(bootstrap, "find-hanging").stdout.splitlines()[1:]
    assert [row.split()[-1] for row in hanging] == ["HANGING"]
    high = offsets(bootstrap, TPS, READ_UNCOMMITTED)
    assert offsets(bootstrap, TPS, READ_COMMITTED)[(TOPIC, 0)] == 0  # held back

    # Refused, with nothing written: a COMMIT; an ABORT from an epoch older than the
    # partition's (Kafka's rule); one from an epoch the coordinator never handed out.
    assert (
        send_marker(bootstrap, 0, producer_id, epoch, True)
        == ErrorCode.cluster_authorization_failed
    )
    assert (
        send_marker(bootstrap, 0, producer_id, epoch - 1, False) == ErrorCode.invalid_producer_epoch
    )
    assert (
        send_marker(bootstrap, 0, producer_id, epoch + 1, False) == ErrorCode.invalid_producer_epoch
    )
    assert offsets(bootstrap, TPS, READ_UNCOMMITTED) == high

    aborted = samsa_txn(
        bootstrap, "abort", "--topic", TOPIC, "--partition", "0", "--producer-id", str(producer_id)
    )
    assert f"last stable offset now {high[(TOPIC, 0)] + 1}" in aborted.stdout, aborted.stdout
    assert coordinator_view(bootstrap, "late-tx") == ("CompleteCommit", producer_id, epoch, [])
    assert samsa_txn(bootstrap, "find-hanging").stdout.splitlines()[1:] == []

    # The transactional id goes on: its next instance commits on the released partition.
    successor = txn_producer(bootstrap, "late-tx")
    successor.init_transactions(30)
    successor.begin_transaction()
    successor.produce(TOPIC, b"successor", partition=0)
    successor.commit_transaction(30)
    ends = wait_stable(bootstrap, TPS)
    assert read_confluent(bootstrap, TPS, "read_committed", ends) == {
        (TOPIC, 0): [b"successor"],
        (TOPIC, 1): [b"committed"],
    }


def test_an_abort_where_nothing_is_open_writes_nothing(samsa_broker: EmbeddedBroker) -> None:
    """An idempotent producer has no transaction: an ABORT naming it, from any epoch at least
    its own, is answered NONE and writes nothing, so its epoch on the partition stays its own.
    (Kafka writes the marker and takes the producer's epoch there to the one sent: its next
    write there would be refused as from an older epoch.)"""
    bootstrap = samsa_broker.bootstrap
    create_topics(bootstrap, {TOPIC: 2})
    idempotent = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "log_level": 0}
    )
    idempotent.produce(TOPIC, b"one", partition=0)
    assert idempotent.flush(30) == 0
    with SamsaAdmin(bootstrap) as admin:
        response = admin.describe_producers({TOPIC: [0]})
    (producer,) = response.topics[0].partitions[0].active_producers
    producer_id, epoch = int(producer.producer_id), int(producer.producer_epoch)
    high = offsets(bootstrap, TPS, READ_UNCOMMITTED)

    assert send_marker(bootstrap, 0, producer_id, 30_000, commit=False) == ErrorCode.none
    assert offsets(bootstrap, TPS, READ_UNCOMMITTED) == high
    assert partition_view(bootstrap, producer_id) == {0: (epoch, -1)}
    idempotent.produce(TOPIC, b"two", partition=0)
    assert idempotent.flush(30) == 0
    assert read_confluent(bootstrap, TPS, "read_committed")[(TOPIC, 0)] == [b"one", b"two"]
    assert partition_view(bootstrap, producer_id) == {0: (epoch, -1)}
