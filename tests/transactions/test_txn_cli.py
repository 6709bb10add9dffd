"""`samsa txn` (KIP-664 tooling) against a hanging transaction.

A producer with a 15-minute transaction timeout writes in a transaction and never ends it: the
partition's last stable offset stays at the transaction's first offset and read_committed
readers stall. `samsa txn list` and `find-hanging` show it; `samsa txn abort` writes the ABORT
marker, and the readers move past it.
"""

from __future__ import annotations

import subprocess

import confluent_kafka
import pytest

from samsa.admin.client import READ_COMMITTED, READ_UNCOMMITTED
from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.topics import create_topics

from .support import SAMSA, offsets, read_confluent, txn_producer

pytestmark = pytest.mark.interop

TPS = [("stuck", 0), ("stuck", 1)]


def samsa_txn(bootstrap: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [SAMSA, "txn", "--bootstrap", bootstrap, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_find_and_abort_hanging_transaction(samsa_broker: EmbeddedBroker) -> None:
    bootstrap = samsa_broker.bootstrap
    create_topics(bootstrap, {"stuck": 2})
    plain = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    plain.produce("stuck", b"before", partition=0)
    plain.flush(30)

    hanging = txn_producer(bootstrap, "stuck-tx", **{"transaction.timeout.ms": 900_000})
    hanging.init_transactions(30)
    hanging.begin_transaction()
    hanging.produce("stuck", b"never-committed", partition=0)
    assert hanging.flush(30) == 0
    done = txn_producer(bootstrap, "done-tx")
    done.init_transactions(30)
    done.begin_transaction()
    done.produce("stuck", b"committed-after", partition=0)
    done.commit_transaction(30)
    plain.produce("stuck", b"after", partition=0)
    plain.flush(30)
    assert offsets(bootstrap, TPS, READ_COMMITTED)[("stuck", 0)] == 1  # held back
    assert offsets(bootstrap, TPS, READ_UNCOMMITTED)[("stuck", 0)] == 5

    listed = samsa_txn(bootstrap, "list").stdout
    rows = {line.split()[0]: line.split() for line in listed.splitlines()[1:]}
    assert rows["stuck-tx"][1] == "Ongoing"
    assert rows["stuck-tx"][-1] == "stuck-0"
    assert int(rows["stuck-tx"][5]) >= 0  # age of the open transaction, in ms
    assert rows["done-tx"][1] == "CompleteCommit"
    assert rows["done-tx"][5] == "-"  # no open transaction, no age
    producer_id = int(rows["stuck-tx"][2])

    described = samsa_txn(bootstrap, "describe", "--transactional-id", "stuck-tx").stdout
    assert described.splitlines()[1].split()[:3] == ["stuck-tx", "Ongoing", str(producer_id)]
    missing = samsa_txn(bootstrap, "describe", "--transactional-id", "nobody", check=False)
    assert missing.returncode == 1 and "transactional_id_not_found" in missing.stderr

    hanging_rows = [
        line.split() for line in samsa_txn(bootstrap, "find-hanging").stdout.splitlines()[1:]
    ]
    assert len(hanging_rows) == 1, hanging_rows
    topic, partition, pid, _epoch, start, lso, hw, _age, coordinator = hanging_rows[0]
    assert (topic, partition, int(pid), start, lso, hw) == (
        "stuck",
        "0",
        producer_id,
        "1",
        "1",
        "5",
    )
    assert coordinator == "ongoing"

    aborted = samsa_txn(
        bootstrap,
        "abort",
        "--topic",
        "stuck",
        "--partition",
        "0",
        "--producer-id",
        str(producer_id),
    )
    assert "last stable offset now 6" in aborted.stdout, aborted.stdout  # past the marker
    assert offsets(bootstrap, TPS, READ_COMMITTED) == offsets(bootstrap, TPS, READ_UNCOMMITTED)
    committed = read_confluent(bootstrap, TPS, "read_committed")
    assert committed[("stuck", 0)] == [b"before", b"committed-after", b"after"]
    assert samsa_txn(bootstrap, "find-hanging").stdout.splitlines()[1:] == []

    again = samsa_txn(
        bootstrap,
        "abort",
        "--topic",
        "stuck",
        "--partition",
        "0",
        "--producer-id",
        str(producer_id),
        check=False,
    )
    assert again.returncode == 1 and "no open transaction" in again.stderr
