"""Stores on local disk with checkpoints (issue 20), with in-process workers against one
embedded samsa broker: a clean stop leaves a checkpoint, so the next start restores nothing
but the changelog's tail; after an unclean stop exactly_once discards the local state and
restores all of it, while at_least_once trusts its last checkpoint."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import confluent_kafka
import pytest

from samsa.streams import App, KeyValueStore
from samsa.streams.local import CHECKPOINT
from samsa.testing.embedded import embedded_broker
from samsa.testing.topics import create_topic

from .test_errors import read, run_until

KEYS = 200


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    with embedded_broker(settings={"num.partitions": "1"}) as broker:
        yield broker.bootstrap


def counting_app(bootstrap: str, name: str, state_dir: str, crash: bool = False) -> App:
    app = App(name, bootstrap_servers=bootstrap, instance_id="one", state_dir=state_dir)
    store = app.store("counts")

    def count(key: str, _value: Any, state: KeyValueStore) -> list[Any]:
        state.put(key, int(state.get(key, 0)) + 1)
        return [(key, state.get(key))]

    source = app.topic(f"{name}-in", key="str", value="json")
    app.stream(source).process(count, store).to(app.topic(f"{name}-out", key="str", value="json"))
    if crash:

        def die() -> None:
            raise RuntimeError("unclean stop")

        app.before_offsets_commit(die)
    return app


def fill(bootstrap: str, topic: str, rounds: int) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    for _ in range(rounds):
        for k in range(KEYS):
            producer.produce(topic, b"{}", f"k{k}".encode())
    assert producer.flush(30) == 0


def last_counts(bootstrap: str, topic: str) -> dict[str, int]:
    return {m.key().decode(): json.loads(m.value()) for m in read(bootstrap, topic)}


def first_run(bootstrap: str, name: str, **overrides: Any) -> tuple[App, str]:
    """Count two rounds of the keys with a state directory and stop cleanly; the app and
    its state directory. Then a third round is produced."""
    state_dir = tempfile.mkdtemp(prefix="samsa-state-")
    create_topic(bootstrap, f"{name}-in", 1)
    fill(bootstrap, f"{name}-in", 2)
    app = counting_app(bootstrap, name, state_dir)
    first = app.worker(**overrides)
    assert run_until(first, lambda: first.committed == 2 * KEYS) is None
    fill(bootstrap, f"{name}-in", 1)
    return app, state_dir


@pytest.mark.parametrize(
    "guarantee", ["exactly_once", pytest.param("at_least_once", marks=pytest.mark.slow)]
)
def test_a_clean_stop_leaves_a_checkpoint_and_the_restart_restores_only_the_tail(
    bootstrap: str, guarantee: str
) -> None:
    name = f"clean-{guarantee}"
    app, state_dir = first_run(bootstrap, name, processing_guarantee=guarantee)
    checkpoint = os.path.join(state_dir, f"{name}-one", "0", CHECKPOINT)
    assert os.path.exists(checkpoint)
    second = app.worker(processing_guarantee=guarantee)
    assert run_until(second, lambda: second.committed == KEYS) is None
    assert second.restored == 0, "a clean stop's checkpoint is the changelog's end"
    assert last_counts(bootstrap, f"{name}-out") == {f"k{k}": 3 for k in range(KEYS)}


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_after_an_unclean_stop_exactly_once_restores_everything(
    bootstrap: str, guarantee: str
) -> None:
    name = f"unclean-{guarantee}"
    app, state_dir = first_run(
        bootstrap, name, processing_guarantee=guarantee, checkpoint_interval_records=1
    )
    crashing = counting_app(bootstrap, name, state_dir, crash=True)
    second = crashing.worker(processing_guarantee=guarantee, checkpoint_interval_records=1)
    assert isinstance(run_until(second, lambda: False), RuntimeError)
    whole = len(read(bootstrap, f"{name}-counts-changelog"))
    third = app.worker(processing_guarantee=guarantee, checkpoint_interval_records=1)
    assert run_until(third, lambda: third.committed == KEYS) is None
    if guarantee == "exactly_once":
        # The checkpoint was deleted when the second instance opened the task: the local
        # state was discarded and all of the changelog read again.
        assert third.restored == whole
        assert last_counts(bootstrap, f"{name}-out") == {f"k{k}": 3 for k in range(KEYS)}
    else:
        # The first instance's last checkpoint stood: only what came after it was read (the
        # crashed one's changelog records, flushed before its offsets: applied twice).
        assert 0 < third.restored < whole
