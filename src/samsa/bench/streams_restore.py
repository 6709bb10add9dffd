"""Restore time of a samsa.streams store (issue 20): 100,000 keys, with and without local
state and checkpoints (`state_dir`), after a clean stop and after kill -9.

    python -m samsa.bench.streams_restore [--keys 100000]

For each case a worker process (`python -m samsa.bench.streams_restore worker ...`) counts
the records of a one-partition input topic holding each key once, so its store, and its
changelog, hold one record per key. Once its offsets are committed to the end it is stopped:
SIGTERM (clean: commit, checkpoint, leave) or SIGKILL. Then a worker in this process starts
with the same instance id and state directory, and the figure is the time its restore took
(`Worker.restore_seconds`: the local state opened or discarded, the changelog read) and the
changelog records it read. Without a state directory the store is in memory: every start
reads the whole changelog. With one, a clean stop leaves a checkpoint (nothing to read); after
kill -9 exactly_once discards the local state (no checkpoint survives an unclean stop) and
reads it all, while at_least_once reads only what came after its last checkpoint (one every
10,000 changelog records). The broker is a `samsa serve` subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from samsa.bench.broker import broker_process
from samsa.streams import App, KeyValueStore
from samsa.testing.topics import create_topic

TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Case:
    stop: str  # "clean" or "kill -9"
    guarantee: str
    checkpoints: bool


CASES = [
    Case(stop, guarantee, checkpoints)
    for stop, guarantee in (
        ("clean", "exactly_once"),
        ("kill -9", "exactly_once"),
        ("kill -9", "at_least_once"),
    )
    for checkpoints in (False, True)
]


def build(bootstrap: str, name: str, guarantee: str, state_dir: str | None) -> App:
    app = App(
        name,
        bootstrap_servers=bootstrap,
        processing_guarantee=guarantee,
        instance_id="bench",
        state_dir=state_dir,
    )
    store = app.store("counts")

    def count(key: str, _value: Any, state: KeyValueStore) -> None:
        state.put(key, int(state.get(key, 0)) + 1)

    app.stream(app.topic(f"{name}-in", key="str", value="json")).process(count, store)
    return app


def fill(bootstrap: str, topic: str, keys: int) -> None:
    create_topic(bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for k in range(keys):
        while True:
            try:
                producer.produce(topic, b"{}", f"key-{k:07d}".encode())
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60) != 0:
        raise RuntimeError("input not delivered")


def committed(bootstrap: str, name: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": name})
    try:
        return int(consumer.committed([TopicPartition(f"{name}-in", 0)], timeout=15)[0].offset)
    finally:
        consumer.close()


def measure(bootstrap: str, case: Case, keys: int) -> dict[str, Any]:
    name = f"restore-{uuid.uuid4().hex[:8]}"
    state_dir = tempfile.mkdtemp(prefix="samsa-bench-state-") if case.checkpoints else None
    fill(bootstrap, f"{name}-in", keys)
    command = [sys.executable, "-m", "samsa.bench.streams_restore", "worker", bootstrap, name]
    command += [case.guarantee, state_dir or ""]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while committed(bootstrap, name) < keys:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name}: the first worker stopped or stalled")
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM if case.stop == "clean" else signal.SIGKILL)
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
    worker = build(bootstrap, name, case.guarantee, state_dir).worker()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT_S
    while not any(event == "assigned" for event, _ in worker.rebalances) or (
        worker.restore_seconds == 0.0
    ):
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{name}: the second worker did not restore")
        time.sleep(0.01)
    worker.stop()
    thread.join(60)
    if state_dir is not None:
        shutil.rmtree(state_dir, ignore_errors=True)
    return {
        "stop": case.stop,
        "guarantee": case.guarantee,
        "checkpoints": case.checkpoints,
        "restore_s": worker.restore_seconds,
        "records_read": worker.restored,
    }


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["worker"]:
        _bootstrap, name, guarantee, state_dir = args_in[1:5]
        return build(_bootstrap, name, guarantee, state_dir or None).run()
    parser = argparse.ArgumentParser(prog="python -m samsa.bench.streams_restore")
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(args_in)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    rows = []
    with broker_process() as broker:
        for case in CASES:
            row = measure(broker.bootstrap, case, args.keys)
            rows.append(row)
            if not args.json:
                print(
                    f"{row['stop']:<8} {row['guarantee']:<14} "
                    f"{'checkpoints' if row['checkpoints'] else 'in memory':<12} "
                    f"restore {row['restore_s']:6.2f} s, {row['records_read']:>7} records read"
                )
    if args.json:
        print(json.dumps({"keys": args.keys, "rows": rows}))
    else:
        print(
            f"({args.keys} keys; {platform.python_implementation()} "
            f"{platform.python_version()}, {os.cpu_count()} CPUs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
