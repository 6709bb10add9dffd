"""Streams runtime benchmark (issue 6): records per second through a stateless and a stateful
application under each processing guarantee, against a `samsa serve` subprocess.

    python -m samsa.bench.streams [--records N] [--repeat K] [--commit-interval-ms 100]
                                  [--kinds stateless,stateful] [--guarantees ...] [--json]

For each (application, guarantee) a fresh input topic (3 partitions) is filled with N JSON
records first; then one worker runs in this process and the figure is N divided by the time from
its first processed record to the commit that covers the last one (so start-up, group join and
restore are not counted). The guarantees take turns, in a rotated order each round, K rounds;
each figure is the median. Stateless: filter + map_values + to. Stateful: the balances example
(a store read and write per record, changelog records each commit). Windowed: tumbling 1 s
windows (200 ms grace) summing amounts per account, every update emitted. Grouped: re-keyed
into 100 groups through a repartition topic (produced and read back by the same worker,
inside its transactions), then a running total per group in a store. The exactly_once /
at_least_once ratio is given twice: of the two medians, and as the median of each round's own
ratio (the two runs of a round are under a minute apart, so slow drift of the machine moves
both), with a 90% bootstrap interval of that median.

Beside each rate it reports where the time went: the number of commits and the wall time the
worker spent in them, its idle time (polls that returned nothing), and the CPU seconds of this
process (the worker and its librdkafka threads) and of the broker during the timed span. On a
machine with few cores the two processes share them, so CPU the broker spends on transactions
is CPU the worker cannot use.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from samsa.bench.broker import broker_process
from samsa.streams import App, KeyValueStore
from samsa.testing.process import BrokerProcess

GUARANTEES = ("at_most_once", "at_least_once", "exactly_once")
KINDS = ("stateless", "stateful", "windowed", "grouped")
# Input records each kind commits per record produced (grouped: the input, then the
# repartition topic).
COMMITTED_PER_RECORD = {"stateless": 1, "stateful": 1, "windowed": 1, "grouped": 2}
PARTITIONS = 3
ACCOUNTS = 1000
TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Run:
    records_per_s: float
    seconds: float
    commits: int
    commit_s: float  # wall time inside the worker's commits
    idle_s: float  # wall time in the worker's polls that returned no record
    worker_cpu_s: float  # this process: the worker and its clients' threads
    broker_cpu_s: float

    @property
    def commit_mean_ms(self) -> float:
        return 1000 * self.commit_s / max(self.commits, 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux); 0 where that is missing."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    elif kind == "windowed":
        windows = stream.window("sums", 1000, grace_ms=200)
        windows.sum(lambda v: v["amount"]).to(out)
    elif kind == "grouped":
        store = app.store("totals")

        def total(key: str, value: dict[str, Any], state: KeyValueStore) -> list[Any]:
            running = int(state.get(key, 0)) + int(value["amount"])
            state.put(key, running)
            return [(key, running)]

        regrouped = stream.group_by(lambda k, v: f"group-{v['id'] % 100}", "by-group", key="str")
        regrouped.process(total, store).to(out)
    else:
        store = app.store("balances")

        def apply(key: str, value: dict[str, Any], state: KeyValueStore) -> list[Any]:
            balance = int(state.get(key, 0)) + int(value["amount"])
            state.put(key, balance)
            return [(key, {"id": value["id"], "balance": balance})]

        stream.process(apply, store).to(out)
    return app


def measure(broker: BrokerProcess, kind: str, guarantee: str, records: int, interval: int) -> Run:
    bootstrap = broker.bootstrap
    pid = broker.process.pid if broker.process is not None else 0
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
    worker_cpu, broker_cpu = time.process_time(), cpu_seconds(pid)
    commits, commit_s, idle_s = worker.commits, worker.commit_seconds, worker.idle_seconds
    while worker.committed < records * COMMITTED_PER_RECORD[kind]:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{app_id}: committed {worker.committed} of {records}")
        time.sleep(0.002)
    elapsed = time.monotonic() - began
    run = Run(
        records_per_s=records / elapsed,
        seconds=elapsed,
        commits=worker.commits - commits,
        commit_s=worker.commit_seconds - commit_s,
        idle_s=worker.idle_seconds - idle_s,
        worker_cpu_s=time.process_time() - worker_cpu,
        broker_cpu_s=cpu_seconds(pid) - broker_cpu,
    )
    worker.stop()
    thread.join(60)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samsa.bench.streams", description=__doc__)
    parser.add_argument("--records", type=int, default=200_000, help="per run")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; each figure the median")
    parser.add_argument("--commit-interval-ms", type=int, default=100)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated")
    parser.add_argument("--guarantees", default=",".join(GUARANTEES), help="comma-separated")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    kinds = [k for k in KINDS if k in args.kinds.split(",")]
    guarantees = [g for g in GUARANTEES if g in args.guarantees.split(",")]
    runs: dict[str, dict[str, list[Run]]] = {k: {g: [] for g in guarantees} for k in kinds}
    with broker_process() as broker:
        for round_ in range(args.repeat):
            for kind in kinds:
                shift = round_ % len(guarantees)
                for guarantee in guarantees[shift:] + guarantees[:shift]:
                    run = measure(broker, kind, guarantee, args.records, args.commit_interval_ms)
                    runs[kind][guarantee].append(run)
                    if not args.json:
                        print(f"round {round_}: {kind:<10} {guarantee:<14} {_line(run)}")
    results = {
        k: {g: statistics.median(r.records_per_s for r in rs) for g, rs in by.items()}
        for k, by in runs.items()
    }
    paired = {k: paired_ratios(by) for k, by in runs.items()}
    if args.json:
        detail = {k: {g: [asdict(r) for r in rs] for g, rs in by.items()} for k, by in runs.items()}
        intervals = {k: median_interval(ratios) for k, ratios in paired.items() if ratios}
        print(
            json.dumps(
                {
                    "records": args.records,
                    "results": results,
                    "paired": paired,
                    "paired_median_90": intervals,
                    "runs": detail,
                }
            )
        )
        return 0
    print(
        f"(median of {args.repeat}; {args.records} records, "
        f"commit interval {args.commit_interval_ms} ms, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs)"
    )
    for kind, rates in results.items():
        print(kind, ", ".join(f"{g} {r:,.0f}/s" for g, r in rates.items()))
        if paired[kind]:
            ratio = rates["exactly_once"] / rates["at_least_once"]
            rounds = ", ".join(f"{r:.2f}" for r in paired[kind])
            low, high = median_interval(paired[kind])
            print(
                f"{kind}: exactly_once / at_least_once = {ratio:.2f} (of the medians); "
                f"per round {rounds}: median {statistics.median(paired[kind]):.2f}, "
                f"90% bootstrap interval {low:.2f}-{high:.2f}"
            )
    return 0


def median_interval(values: list[float], resamples: int = 2000) -> tuple[float, float]:
    """A 90% percentile-bootstrap interval of the median (seeded: the same runs, the same
    interval). On a shared VM one run moves by a quarter; this says how far the median of
    a handful of runs can be trusted."""
    draw = random.Random(0)
    medians = sorted(
        statistics.median(draw.choices(values, k=len(values))) for _ in range(resamples)
    )
    return medians[int(0.05 * resamples)], medians[int(0.95 * resamples) - 1]


def paired_ratios(by_guarantee: dict[str, list[Run]]) -> list[float]:
    """exactly_once / at_least_once of each round: the two ran under a minute apart, so slow
    drift of the machine (other tenants, CPU steal) moves both alike."""
    eos, alo = by_guarantee.get("exactly_once", []), by_guarantee.get("at_least_once", [])
    return [e.records_per_s / a.records_per_s for e, a in zip(eos, alo, strict=False)]


def _line(run: Run) -> str:
    return (
        f"{run.records_per_s:>9,.0f} records/s in {run.seconds:5.2f} s; "
        f"{run.commits:>4} commits, {run.commit_s:5.2f} s ({run.commit_mean_ms:4.1f} ms each); "
        f"idle {run.idle_s:5.2f} s; "
        f"CPU worker {run.worker_cpu_s:5.2f} s, broker {run.broker_cpu_s:5.2f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
