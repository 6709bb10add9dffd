"""Pure parts of samsa.streams: serdes, the store's commit/rollback, the topology, the error
taxonomy, the guarantee names."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, Message
from hypothesis import given
from hypothesis import strategies as st

from samsa.streams import JSON, STR, App, Guarantee, KeyValueStore, StoreSpec
from samsa.streams.errors import Action, classify
from samsa.streams.refusals import Refusals, Verdict
from samsa.streams.topology import Topic

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=10,
)


@given(json_values.filter(lambda v: v is not None))
def test_json_roundtrip(value: Any) -> None:
    assert JSON.deserialize(JSON.serialize(value)) == value


def test_none_is_null_on_the_wire() -> None:
    assert JSON.serialize(None) is None and STR.deserialize(None) is None
    with pytest.raises(TypeError):
        STR.serialize(b"bytes")


def test_store_rollback_restores_the_committed_state() -> None:
    store = KeyValueStore(StoreSpec("s", STR, JSON), 0)
    store.put("a", {"n": 1})
    store.commit()
    value = store.get("a")
    value["n"] = 99  # a copy: mutating it changes nothing
    store.put("a", {"n": 2})
    store.delete("b")
    assert store.changes() == [(b"a", b'{"n":2}'), (b"b", None)]
    store.rollback()
    assert store.get("a") == {"n": 1} and store.changes() == []
    store.restore(b"a", None)
    assert "a" not in store and len(store) == 0


class FakeContext:
    def __init__(self) -> None:
        self.emitted: list[tuple[str, Any, Any]] = []
        self.stores: dict[str, KeyValueStore] = {}
        self.timestamp_ms = 0
        self.counters: dict[str, int] = {}

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def store(self, spec: StoreSpec) -> KeyValueStore:
        return self.stores.setdefault(spec.name, KeyValueStore(spec, 0))

    def emit(self, topic: Topic, key: Any, value: Any) -> None:
        self.emitted.append((topic.name, key, value))


def test_topology_fan_out_runs_a_stateful_step_once() -> None:
    app = App("t")
    source = app.topic("in", key="str", value="json")
    counts = app.store("counts")
    big, small, copy = (app.topic(n, key="str", value="json") for n in ("big", "small", "copy"))

    def count(key: str, value: int, store: KeyValueStore) -> list[tuple[str, int]]:
        store.put(key, store.get(key, 0) + 1)
        return [(key, value)]

    counted = app.stream(source).filter(lambda k, v: v >= 0).process(count, counts)
    counted.branch((lambda k, v: v > 10, big), default=small)
    counted.flat_map(lambda k, v: [(k, v), (k + "!", v)]).map_values(str).to(copy)
    ctx = FakeContext()
    for value in (5, 50, -1):
        app._sources["in"][1].push(ctx, "k", value)
    assert ctx.emitted == [
        ("small", "k", 5),
        ("copy", "k", "5"),
        ("copy", "k!", "5"),
        ("big", "k", 50),
        ("copy", "k", "50"),
        ("copy", "k!", "50"),
    ]
    assert ctx.stores["counts"].get("k") == 2


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (KafkaError(KafkaError._FENCED, fatal=True), Action.FENCED),
        (KafkaError(KafkaError.PRODUCER_FENCED), Action.FENCED),
        (KafkaError(KafkaError._TIMED_OUT, retriable=True), Action.RETRY),
        (KafkaError(KafkaError.INVALID_TXN_STATE, txn_requires_abort=True), Action.ABORT),
        (KafkaError(KafkaError.INVALID_TXN_STATE, fatal=True), Action.FATAL),
        (KafkaError(KafkaError.UNKNOWN), Action.FATAL),
    ],
)
def test_error_taxonomy(error: KafkaError, action: Action) -> None:
    assert classify(error) is action


def test_guarantee_names() -> None:
    assert Guarantee.parse("exactly-once") is Guarantee.EXACTLY_ONCE
    assert Guarantee.parse("exactly_once_v2") is Guarantee.EXACTLY_ONCE
    with pytest.raises(ValueError):
        Guarantee.parse("twice")
    with pytest.raises(ValueError):
        App("t", commit_interval_ms=0)


def test_exactly_once_commits_inside_the_transaction_timeout() -> None:
    # The coordinator aborts a transaction open past transaction.timeout.ms (10 s by default).
    with pytest.raises(ValueError, match=r"transaction\.timeout\.ms"):
        App("t", commit_interval_ms=10_000)
    App("t", commit_interval_ms=9_999)
    App("t", commit_interval_ms=10_000, processing_guarantee="at_least_once")
    longer = {"transaction.timeout.ms": 60_000}
    app = App("t", commit_interval_ms=30_000, producer_config=longer)
    app.stream(app.topic("in")).to(app.topic("out"))
    with pytest.raises(ValueError, match=r"transaction\.timeout\.ms"):
        app.worker(commit_interval_ms=60_000)  # as `samsa streams run --commit-interval-ms`
    with pytest.raises(ValueError, match="positive"):
        app.worker(commit_interval_ms=0)


def test_store_undo_record_takes_back_one_records_writes() -> None:
    store = KeyValueStore(StoreSpec("s", STR, JSON), 0)
    store.put("a", 1)
    store.begin_record()
    store.put("a", 2)
    store.put("b", 3)
    store.delete("a")
    store.undo_record()
    assert store.changes() == [(b"a", b"1")]


def test_error_handling_choices_are_checked_up_front() -> None:
    app = App("t", on_error="skip", on_production_error="dead-letter")
    from samsa.streams.handlers import ErrorKind, OnError

    assert app.settings.on(ErrorKind.DESERIALIZATION) is OnError.SKIP
    assert app.settings.on(ErrorKind.PRODUCTION) is OnError.DEAD_LETTER
    assert app.settings.dead_letters() == "t-dlq"
    with pytest.raises(ValueError, match="unknown error handling"):
        App("t", on_processing_error="ignore")


TOO_LARGE = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: Message size too large")


def refused(value: bytes, partition: int = 0) -> Message:
    return Message(topic="out", partition=partition, key=b"k", value=value)


def test_a_batch_refused_whole_makes_suspects_and_the_one_refused_alone_the_culprit() -> None:
    book = Refusals()
    assert not book.tracking
    for value in (b"a", b"huge", b"b"):  # one batch: the broker refused all three
        book.reported(TOO_LARGE, refused(value))
    book.reported(TOO_LARGE, refused(b"other", partition=1))  # alone in its partition
    assert book.pending and book.learn() == 4 and not book.pending and book.tracking
    first, second = ("in", 0, 7, 0), ("in", 0, 7, 1)
    assert book.verdict(first, ("out", b"k", b"a")) == (Verdict.PRODUCE_ALONE, None)
    verdict, refusal = book.verdict(second, ("out", b"k", b"other"))
    assert verdict is Verdict.REFUSED and refusal is not None
    assert "output to out[1] refused" in str(refusal) and "MSG_SIZE_TOO_LARGE" in str(refusal)
    assert book.verdict(("in", 0, 8, 0), ("out", b"k", b"new")) == (Verdict.PRODUCE, None)
    # Produced alone: "a" is delivered, "huge" refused again, alone now: the culprit.
    huge = ("in", 0, 8, 1)
    assert book.take(first) is None
    book.reported_output(huge, TOO_LARGE, refused(b"huge"))
    culprit = book.take(huge)
    assert culprit is not None
    book.confirm(huge, culprit)
    assert book.verdict(huge, ("out", b"k", b"changed")) == (Verdict.REFUSED, culprit)
    # A commit past offset 8 forgets it all; one up to 8 (next offset 8) keeps offset 8.
    book.committed({("in", 0): 8})
    assert book.verdict(huge, ("out", b"k", b"huge"))[0] is Verdict.REFUSED
    book.committed({("in", 0): 9})
    assert not book.tracking


def test_tracked_outputs_refused_together_are_suspects_until_refused_alone() -> None:
    book = Refusals()
    outputs = [("in", 0, n, 0) for n in range(3)]
    for n, output in enumerate(outputs):
        book.reported_output(output, TOO_LARGE, refused(bytes([n])))
    book.learn()
    assert {book.verdict(o, ("out", b"k", b"x"))[0] for o in outputs} == {Verdict.PRODUCE_ALONE}
    book.reported_output(outputs[2], TOO_LARGE, refused(b"\x02"))
    book.learn()  # a suspect refused again: it was produced alone
    assert book.verdict(outputs[2], ("out", b"k", b"x"))[0] is Verdict.REFUSED
    assert book.verdict(outputs[0], ("out", b"k", b"x"))[0] is Verdict.PRODUCE_ALONE
