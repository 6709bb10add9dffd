"""Streams runtime benchmark (issue 6): records per second through a stateless and a stateful
application under each processing guarantee, against a `samsa serve` subprocess.

    python -m samsa.bench.streams [--records N] [--repeat K] [--commit-interval-ms 100] [--json]

For each (application, guarantee) a fresh input topic (3 partitions) is filled with N JSON
records first; then one worker runs in this process and the figure is N divided by the time from
its first processed record to the commit that covers the last one (so start-up, group join and
restore are not counted). The guarantees take turns, in a rotated order each round, K rounds;
each figure is the median. Stateless: filter + map_values + to. Stateful: the balances example
(a store read and write per record, changelog records each commit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from samsa.bench.broker import samsa_process
from samsa.streams import App, KeyValueStore

GUARANTEES = ("at_most_once", "at_least_once", "exactly_once")
KINDS = ("stateless", "stateful")
PARTITIONS = 3
ACCOUNTS = 1000
TIMEOUT_S = 600.0


def fill(bootstrap: str, topic: str, records: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(15)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    for i in range(records):
        value = json.dumps({"id": i, "amount": i % 101 - 50}).encode()
        while True:
            try:
                producer.produce(topic, value, f"acct-{i % ACCOUNTS}".encode())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def build(kind: str, app_id: str, topic: str, bootstrap: str, guarantee: str, interval: int) -> App:
    app = App(
        app_id,
        bootstrap_servers=bootstrap,
        processing_guarantee=guarantee,
        commit_interval_ms=interval,
        instance_id="bench",
    )
    source = app.topic(topic, key="str", value="json")
    out = app.topic(f"{app_id}-out", key="str", value="json")
    stream = app.stream(source).filter(lambda k, v: "amount" in v)
    if kind == "stateless":
        stream.map_values(lambda v: {"id": v["id"], "double": 2 * v["amount"]}).to(out)
    else:
        store = app.store("balances")

        def apply(key: str, value: dict[str, Any], state: KeyValueStore) -> list[Any]:
            balance = int(state.get(key, 0)) + int(value["amount"])
            state.put(key, balance)
            return [(key, {"id": value["id"], "balance": balance})]

        stream.process(apply, store).to(out)
    return app


def measure(bootstrap: str, kind: str, guarantee: str, records: int, interval: int) -> float:
    app_id = f"bench-{kind}-{guarantee}-{uuid.uuid4().hex[:6]}"
    topic = f"{app_id}-in"
    fill(bootstrap, topic, records)
    worker = build(kind, app_id, topic, bootstrap, guarantee, interval).worker()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT_S
    while worker.processed == 0:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{app_id}: no record processed")
        time.sleep(0.002)
    began = time.monotonic()
    while worker.committed < records:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{app_id}: committed {worker.committed} of {records}")
        time.sleep(0.002)
    elapsed = time.monotonic() - began
    worker.stop()
    thread.join(60)
    return records / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samsa.bench.streams", description=__doc__)
    parser.add_argument("--records", type=int, default=200_000, help="per run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each figure the median")
    parser.add_argument("--commit-interval-ms", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    runs: dict[str, dict[str, list[float]]] = {k: {g: [] for g in GUARANTEES} for k in KINDS}
    with samsa_process() as bootstrap:
        for round_ in range(args.repeat):
            for kind in KINDS:
                shift = round_ % len(GUARANTEES)
                for guarantee in GUARANTEES[shift:] + GUARANTEES[:shift]:
                    rate = measure(
                        bootstrap, kind, guarantee, args.records, args.commit_interval_ms
                    )
                    runs[kind][guarantee].append(rate)
                    if not args.json:
                        print(
                            f"round {round_}: {kind:<10} {guarantee:<14} {rate:>10,.0f} records/s",
                            flush=True,
                        )
    results = {k: {g: statistics.median(r) for g, r in by.items()} for k, by in runs.items()}
    if args.json:
        print(json.dumps({"records": args.records, "results": results, "runs": runs}))
    else:
        print(
            f"(median of {args.repeat}; {args.records} records, "
            f"commit interval {args.commit_interval_ms} ms, "
            f"{platform.python_implementation()} {platform.python_version()}, "
            f"{os.cpu_count()} CPUs)"
        )
        for kind, rates in results.items():
            print(kind, ", ".join(f"{g} {r:,.0f}/s" for g, r in rates.items()))
            ratio = rates["exactly_once"] / rates["at_least_once"]
            print(f"{kind}: exactly_once / at_least_once = {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
