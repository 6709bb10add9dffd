"""What the Prometheus endpoint costs: confluent-kafka produce throughput against `samsa serve`
without `prometheus.listener` and with it (scraped every second, as a busy Prometheus would),
as a ratio.

    python -m samsa.bench.metrics [--records N] [--repeat K] [--json]

Two workloads, each `samsa.bench.broker`'s produce (acks=all, one partition, fresh topic, from
the first produce() to the last delivery report, 100-byte values): "batched" with that
benchmark's client settings (linger.ms 5, batches up to 1 MB: few, large requests), and
"per-record" with linger.ms 0 and one record per request (batch.num.messages 1), where the
per-request cost of the metrics (a clock read and a histogram observation) weighs most; for it
both brokers acknowledge before fsync (`log.flush.interval.messages` high, as the broker
benchmark's "nofsync"), so the broker's CPU per request, not the disk, sets the pace. Each
repeat runs both brokers in turn, alternating which goes first; the figure is the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from samsa.bench import in_turn
from samsa.bench.broker import broker_process, machine, produce
from samsa.testing.process import free_port

VALUE_BYTES = 100
DEFAULT_RECORDS = 1_000_000
DEFAULT_REPEAT = 3
SCRAPE_INTERVAL_S = 1.0
# workload -> (client settings, broker settings)
WORKLOADS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "batched": ({}, ()),
    "per-record": (
        {"linger.ms": 0, "batch.num.messages": 1, "max.in.flight": 5},
        ("log.flush.interval.messages=1000000000",),
    ),
}
# The per-record workload sends a request per record: fewer records keep a run short.
PER_RECORD_SHARE = 50


@contextmanager
def scraping(url: str) -> Iterator[list[int]]:
    """Scrape `url` every `SCRAPE_INTERVAL_S` on a thread; yields the list of scrape sizes."""
    stop = threading.Event()
    sizes: list[int] = []

    def run() -> None:
        while not stop.wait(SCRAPE_INTERVAL_S):
            with urllib.request.urlopen(url, timeout=10) as response:
                sizes.append(len(response.read()))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield sizes
    finally:
        stop.set()
        thread.join(15)


def run_once(metrics: bool, records: int, client: dict[str, Any], broker: tuple[str, ...]) -> float:
    settings = list(broker)
    port = free_port()
    if metrics:
        settings.append(f"prometheus.listener=127.0.0.1:{port}")
    with broker_process(*settings) as running:
        topic = f"bench-metrics-{uuid.uuid4().hex[:8]}"
        if not metrics:
            return produce(running.bootstrap, topic, records, VALUE_BYTES, client)
        with scraping(f"http://127.0.0.1:{port}/metrics") as sizes:
            seconds = produce(running.bootstrap, topic, records, VALUE_BYTES, client)
        if seconds > 2 * SCRAPE_INTERVAL_S and not sizes:
            raise RuntimeError("the metrics endpoint was never scraped")
        return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samsa.bench.metrics", description=__doc__)
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS, help="batched, per run")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="runs per figure")
    parser.add_argument(
        "--workload", choices=sorted(WORKLOADS), action="append", help="only these (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    for name, (client, broker) in WORKLOADS.items():
        if args.workload and name not in args.workload:
            continue
        records = args.records if name == "batched" else args.records // PER_RECORD_SHARE
        runs: dict[bool, list[float]] = {False: [], True: []}
        for i in range(args.repeat):
            for metrics in in_turn((False, True), i):
                runs[metrics].append(run_once(metrics, records, client, broker))
                print(f"  {name} metrics={metrics}: {runs[metrics][-1]:.2f} s", file=sys.stderr)
        off, on = statistics.median(runs[False]), statistics.median(runs[True])
        results[name] = {
            "records": records,
            "off_records_per_s": records / off,
            "on_records_per_s": records / on,
            "ratio": off / on,
        }
    if args.json:
        print(json.dumps({"machine": machine(), "results": results}, indent=2))
        return 0
    print(f"{'workload':<12} {'records':>8} {'off rec/s':>11} {'on rec/s':>11} {'on/off':>7}")
    for name, row in results.items():
        print(
            f"{name:<12} {row['records']:>8.0f} {row['off_records_per_s']:>11,.0f} "
            f"{row['on_records_per_s']:>11,.0f} {row['ratio']:>7.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
