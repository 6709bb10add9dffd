"""Poison records (issue 20): a record that cannot be deserialised, processed or produced,
under each handler choice, with in-process workers against one embedded samsa broker.

fail stops the instance with a message naming topic, partition and offset; skip and
dead_letter go on, and the records around the poison give exactly the outputs a clean input
would. Under exactly_once a dead-lettered record is in the same transaction as the outputs: an
instance that dies before the commit leaves no dead letter behind, the next one writes it once.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import confluent_kafka
import pytest

from samsa.streams import App, KeyValueStore, ProcessingError, Worker
from samsa.streams.handlers import HEADER_PREFIX
from samsa.testing.embedded import embedded_broker
from samsa.testing.topics import create_topic

from . import support

DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    with embedded_broker(settings={"num.partitions": "1"}) as broker:
        yield broker.bootstrap


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> list[int]:
    """Produce (key, value) records in order to partition 0; their offsets."""
    create_topic(bootstrap, topic, 1)
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    offsets: list[int] = []

    def delivered(error: Any, message: Any) -> None:
        assert error is None, error
        offsets.append(message.offset())

    for key, value in records:
        producer.produce(topic, value, key, partition=0, on_delivery=delivered)
    assert producer.flush(30) == 0
    return offsets


def read(bootstrap: str, topic: str, isolation: str = "read_committed") -> list[Any]:
    """Every record of partition 0 of `topic` (messages, headers included)."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{time.monotonic_ns()}",
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "log_level": 0,
        }
    )
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
    found: list[Any] = []
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for message in consumer.consume(100, 0.2):
                error = message.error()
                if error is None:
                    found.append(message)
                elif error.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                    return found
        raise AssertionError(f"no end of {topic}")
    finally:
        consumer.close()


def run_until(worker: Worker, done: Any, deadline_s: float = DEADLINE_S) -> BaseException | None:
    """Run `worker` in a thread until done(), it stops by itself or `deadline_s` passed; what
    it raised."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            worker.run()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + deadline_s
    while thread.is_alive() and not done() and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop()
    thread.join(DEADLINE_S)
    assert not thread.is_alive()
    return raised[0] if raised else None


def committed_offset(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offset of partition 0 of `topic` (-1001: none)."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0}
    )
    try:
        found = consumer.committed([confluent_kafka.TopicPartition(topic, 0)], timeout=15)
        return int(found[0].offset)
    finally:
        consumer.close()


def test_fail_stops_with_the_poison_records_topic_partition_and_offset(bootstrap: str) -> None:
    from samsa.streams.examples import balances

    good = json.dumps({"id": 0, "amount": 5}).encode()
    offsets = produce(bootstrap, "transactions", [(b"acct0", good), (b"acct0", b"not json")])
    worker = balances.app.worker(bootstrap_servers=bootstrap, instance_id="fail")
    raised = run_until(worker, lambda: False)
    assert isinstance(raised, ProcessingError)
    assert f"deserialization of transactions[0]@{offsets[1]} failed" in str(raised)
    assert worker.counters["deserialization_errors"] == 1
    # Nothing after the first commit: the poison record and what came with it are aborted.
    assert worker.committed <= 1
    # `samsa streams run` (as `python -m samsa.streams`): the same record stops it, exit 1.
    command = [sys.executable, "-m", "samsa.streams", "run", "samsa.streams.examples.balances"]
    command += ["--bootstrap-servers", bootstrap, "--instance-id", "cli", "--on-error", "fail"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"deserialization of transactions[0]@{offsets[1]} failed" in done.stderr
    # The way out is no longer resetting the group's offsets by hand: restart with skip.
    again = balances.app.worker(bootstrap_servers=bootstrap, instance_id="fail", on_error="skip")
    assert run_until(again, lambda: again.counters["skipped"] == 1) is None  # stop: commit
    assert support.committed_offsets(bootstrap, 1) == {0: offsets[1] + 1}
    assert [json.loads(m.value())["balance"] for m in read(bootstrap, "balances")] == [5]


def balances_inputs() -> tuple[list[tuple[bytes, bytes]], list[tuple[str, dict[str, int]]]]:
    """The balances example's input with a malformed record (the issue's
    `echo 'acct0:not json' | kcat -P -t transactions -K:`) among good ones; the outputs a
    clean input gives."""
    records: list[tuple[bytes, bytes]] = []
    want: list[tuple[str, dict[str, int]]] = []
    balance: dict[str, int] = {}
    for i in range(40):
        account = f"acct{i % 3}"
        records.append((account.encode(), json.dumps({"id": i, "amount": i}).encode()))
        balance[account] = balance.get(account, 0) + i
        want.append((account, {"id": i, "balance": balance[account]}))
        if i == 20:
            records.append((b"acct0", b"not json"))
    return records, want


@pytest.mark.parametrize(
    "guarantee", ["exactly_once", pytest.param("at_least_once", marks=pytest.mark.slow)]
)
def test_skip_lets_the_balances_example_run_past_a_malformed_record(
    guarantee: str, bootstrap: str
) -> None:
    module = importlib.import_module("samsa.streams.examples.balances")
    records, want = balances_inputs()
    source, out = f"skip-{guarantee}-in", f"skip-{guarantee}-out"
    produce(bootstrap, source, records)
    app = App(f"skip-{guarantee}", bootstrap_servers=bootstrap, on_error="skip")
    store = app.store("balances")
    app.stream(app.topic(source, key="str", value="json")).filter(module.valid).process(
        module.apply, store
    ).to(app.topic(out, key="str", value="json"))
    worker = app.worker(processing_guarantee=guarantee, instance_id="one")
    assert run_until(worker, lambda: worker.committed == len(records)) is None
    got = [(m.key().decode(), json.loads(m.value())) for m in read(bootstrap, out)]
    assert got == want
    assert worker.counters == {"deserialization_errors": 1, "skipped": 1}


def test_dead_letters_are_in_the_transaction_and_written_once(bootstrap: str) -> None:
    """One record of each kind of error; the first instance dies after writing its outputs
    and dead letters but before committing, the second one commits."""
    records = [
        (b"a", b'{"amount": 1}'),
        (b"a", b"{broken"),  # deserialization
        (b"a", b'{"amount": 2, "explode": true}'),  # processing (after a store write)
        (b"a", b'{"amount": 3, "as": "int"}'),  # production: the output serde wants str
        (b"a", b'{"amount": 4, "pad": 20000}'),  # production: over message.max.bytes
        (b"a", b'{"amount": 5}'),
    ]
    offsets = produce(bootstrap, "dlq-in", records)
    app = App(
        "dlq",
        bootstrap_servers=bootstrap,
        on_error="dead_letter",
        producer_config={"message.max.bytes": 10_000},
    )
    store = app.store("sums")

    def add(key: str, value: dict[str, Any], state: KeyValueStore) -> list[Any]:
        total = int(state.get(key, 0)) + int(value["amount"])
        state.put(key, total)
        if value.get("explode"):
            raise RuntimeError("boom")
        if value.get("pad"):
            return [(key, "x" * value["pad"])]
        return [(key, total if value.get("as") == "int" else str(total))]

    source = app.topic("dlq-in", key="str", value="json")
    app.stream(source).process(add, store).to(app.topic("dlq-out", key="str", value="str"))
    crashes: list[int] = []

    def crash() -> None:
        if not crashes:
            crashes.append(1)
            raise RuntimeError("crash before the offsets")

    app.before_offsets_commit(crash)
    first = app.worker(instance_id="one")
    assert isinstance(run_until(first, lambda: False), RuntimeError)
    second = app.worker(instance_id="one")
    assert run_until(second, lambda: second.committed == len(records)) is None
    # The record that raised was undone whole (its +2 is not in the sum); the two whose output
    # could not be serialised or produced were processed, only their outputs are missing (+3
    # and +4 are in): 1 + 3 + 4 + 5.
    assert [m.value() for m in read(bootstrap, "dlq-out")] == [b"1", b"13"]
    letters = read(bootstrap, "dlq-dlq")
    # The first instance dead-lettered all four too, in the transaction it never committed
    # (whichever of them reached the broker before the abort are visible read_uncommitted).
    assert first.counters["dead_lettered"] == 4
    assert [(m.key(), m.value()) for m in letters] == records[1:5]
    kinds = []
    for message, offset in zip(letters, offsets[1:5], strict=True):
        headers = {k.removeprefix(HEADER_PREFIX): v.decode() for k, v in message.headers()}
        assert headers["topic"] == "dlq-in" and headers["partition"] == "0"
        assert headers["offset"] == str(offset)
        assert abs(int(headers["time"]) - time.time() * 1000) < 60_000
        kinds.append((headers["kind"], headers["exception"]))
    assert kinds == [
        ("deserialization", "JSONDecodeError"),
        ("processing", "RuntimeError"),
        ("production", "TypeError"),
        ("production", "KafkaException"),  # MSG_SIZE_TOO_LARGE, refused by the client
    ]
    assert second.counters == {
        "deserialization_errors": 1,
        "processing_errors": 1,
        "production_errors": 2,
        "dead_lettered": 4,
    }


# An output topic's max.message.bytes below the client's limit: the client sends the oversized
# output and the broker refuses its whole batch (MESSAGE_TOO_LARGE), good outputs batched with
# it included, in a delivery report after produce() returned.
OUTPUT_BYTES_MAX = 2_000


def oversized_app(
    bootstrap: str, choice: str, guarantee: str
) -> tuple[App, list[tuple[bytes, bytes]]]:
    """Inputs 0..11; input n gives outputs "n.0" and "n.1", except that input 5's second output
    is larger than the output topic accepts."""
    name = f"big-{choice}-{guarantee}"
    records = [(b"k", str(n).encode()) for n in range(12)]
    produce(bootstrap, f"{name}-in", records)
    app = App(name, bootstrap_servers=bootstrap, on_production_error=choice)

    def outputs(key: str, value: str) -> list[tuple[str, str]]:
        second = "x" * 3 * OUTPUT_BYTES_MAX if value == "5" else f"{value}.1"
        return [(key, f"{value}.0"), (key, second)]

    out = app.topic(
        f"{name}-out", key="str", value="str", config={"max.message.bytes": str(OUTPUT_BYTES_MAX)}
    )
    app.stream(app.topic(f"{name}-in", key="str", value="str")).flat_map(outputs).to(out)
    return app, records


@pytest.mark.parametrize(
    ("choice", "guarantee"),
    [
        ("skip", "exactly_once"),
        ("dead_letter", "exactly_once"),
        ("fail", "exactly_once"),
        ("skip", "at_least_once"),
        ("dead_letter", "at_least_once"),
    ],
)
def test_an_output_the_broker_refuses_is_handled_once(
    choice: str, guarantee: str, bootstrap: str
) -> None:
    """Under exactly_once the refusal aborts the transaction; the instance rewinds, and on
    reprocessing applies the handler to that one output, so the result is exactly once; it
    does not rewind forever."""
    app, records = oversized_app(bootstrap, choice, guarantee)
    name = app.settings.application_id
    want = [f"{n}.{i}" for n in range(12) for i in (0, 1) if (n, i) != (5, 1)]
    worker = app.worker(processing_guarantee=guarantee, instance_id="one", commit_interval_ms=50)
    began = time.monotonic()
    raised = run_until(worker, lambda: worker.committed == len(records), deadline_s=20)
    assert time.monotonic() - began < 20, "still rewinding after 20 s"
    got = [m.value().decode() for m in read(bootstrap, f"{name}-out")]
    assert worker.counters["production_errors"] == 1, (raised, worker.counters, got)
    # A batch refused whole, the culprit alone, the epoch bump librdkafka needs after it.
    assert 1 <= worker.aborts <= 3 if guarantee == "exactly_once" else worker.aborts == 0
    if choice == "fail":
        assert isinstance(raised, ProcessingError)
        assert f"production of {name}-in[0]@5 failed" in str(raised)
        assert f"{name}-out" in str(raised) and "MSG_SIZE_TOO_LARGE" in str(raised)
        assert got == want[: len(got)] and len(got) <= 10  # nothing of input 5 or later
        assert committed_offset(bootstrap, name, f"{name}-in") <= 5
        return
    assert raised is None
    letters = read(bootstrap, f"{name}-dlq") if choice == "dead_letter" else []
    dead = [(m.key(), m.value()) for m in letters]
    if guarantee == "at_least_once":  # rewound at the commit: outputs may repeat
        got, dead, want = sorted(set(got)), sorted(set(dead)), sorted(want)
    assert got == want
    if choice == "dead_letter":
        assert dead == [records[5]]
        headers = {k.removeprefix(HEADER_PREFIX): v.decode() for k, v in letters[0].headers()}
        assert (headers["kind"], headers["offset"]) == ("production", "5")
        assert worker.counters["dead_lettered"] == 1
    else:
        assert worker.counters["skipped"] == 1
