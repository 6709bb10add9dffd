"""`samsa bench guarantees`: what each delivery guarantee costs, measured in one run as ratios.

    samsa bench guarantees [--quick] [--out DIR] [--json]

Against `samsa serve` subprocesses (fresh temp data dirs, durable defaults but bounded
retention, `samsa.bench.transactions.RECYCLING_SETTINGS`, so every run writes into recycled page
cache as a long-running broker does), one broker per comparison per round, each warmed by one
unmeasured run. Every producer run writes a fresh topic for the same time and deletes it after.
The ratios are taken inside a round, between runs next to each other, and the median over the
rounds is reported:

- plain vs idempotent producer (confluent-kafka, acks=all, 1 KB records, both at one request
  in flight as in `samsa.bench.idempotence`'s fair pairing), run plain, idempotent, idempotent,
  plain (the reverse every other round): records/s; the same runs against librdkafka's mock
  cluster in the same round, as the anchor (what the client's idempotence costs by itself);
- transactions committing every 10, 50, 100, 500 and 1000 ms vs the idempotent producer
  (`samsa.bench.transactions`), each transactional run between two idempotent runs
  (I T10 I T50 I ... T1000 I, the intervals reversed every other round) and compared with
  their mean; and the commit latencies of those runs;
- read_committed vs read_uncommitted consumers of a topic a 100 ms transactional producer
  wrote, alternating;
- the streams runtime, exactly_once vs at_least_once, a stateless app at a 100 ms commit
  interval (`samsa.bench.streams`), in turns;
- the payment pipeline with its idempotency layer (exactly-once) and without it (naive)
  (`samsa.payments.scenario`, no faults), in turns.

The broker's CPU time per record written is kept for each producer run.

It prints a table, writes `guarantees.json`, `throughput.png` (throughput against commit
interval per guarantee, relative to the idempotent producer) and `commit-latency.png` (the
distribution of `commit_transaction()` times per interval) into DIR, with a progress bar on a
terminal (none with --json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samsa.usage import UsageError

INTERVALS_MS = (10, 50, 100, 500, 1000)


@dataclass(frozen=True)
class Size:
    produce_s: float  # seconds per producer run
    stream_records: int
    orders: int  # payment pipeline
    reads: int  # reads per isolation level per round
    repeat: int

    @property
    def read_topic_s(self) -> float:  # how long the read topic is written
        return min(self.produce_s, 1.0)


FULL = Size(produce_s=3.0, stream_records=50_000, orders=1000, reads=2, repeat=3)
QUICK = Size(produce_s=1.0, stream_records=5_000, orders=200, reads=1, repeat=1)
TINY = Size(produce_s=0.2, stream_records=300, orders=20, reads=1, repeat=1)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure what samsa's guarantees cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="bench_command", required=True)
    guarantees = commands.add_parser("guarantees", help="each guarantee's cost, as ratios")
    guarantees.add_argument("--quick", action="store_true", help="one short round (~1 minute)")
    guarantees.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests
    guarantees.add_argument("--out", default="bench-guarantees", help="directory for JSON, PNGs")
    guarantees.add_argument("--json", action="store_true", help="print the JSON, not a table")


def run(args: argparse.Namespace) -> int:
    size = TINY if args.tiny else QUICK if args.quick else FULL
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise UsageError("the plots need matplotlib: pip install 'samsa[bench]'") from exc
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write to {out}: {exc.strerror}") from exc
    show = not args.json and sys.stderr.isatty()
    results = measure(size, show)
    (out / "guarantees.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)
        print(
            f"wrote {out / 'guarantees.json'}, {out / 'throughput.png'}, "
            f"{out / 'commit-latency.png'}"
        )
    return 0


# ----------------------------------------------------------------- measuring
def steps(size: Size) -> list[tuple[str, Callable[[dict[str, Any], bool], None]]]:
    """The work of one round, as (description, step) pairs, for the progress bar; a step's
    second argument reverses the order of its runs (odd rounds)."""
    from samsa.bench import idempotence, streams, transactions
    from samsa.bench.broker import broker_process, mock_cluster
    from samsa.payments import scenario

    settings = transactions.RECYCLING_SETTINGS
    # Both at one request in flight: librdkafka's idempotent producer pipelines no further
    # (see `samsa.bench.idempotence`), so only idempotence differs.
    pairing = idempotence.PAIRINGS["max.in.flight=1 both"]

    def producers(round_: dict[str, Any], reverse: bool) -> None:
        with broker_process(*settings) as broker:

            def producer(idempotent: bool) -> transactions.ProduceRun:
                def run(topic: str) -> transactions.ProduceRun:
                    return transactions.run_producer(
                        broker.bootstrap, topic, size.produce_s, idempotent, pairing
                    )

                return transactions.on_fresh_topic(broker, "producer", run)

            producer(True)  # warm-up, not measured
            order = [True, False, False, True] if reverse else [False, True, True, False]
            runs = [producer(idempotent) for idempotent in order]
            for name in ("plain", "idempotent"):
                _keep(round_, name, [r for r in runs if r.label == name])
        # The same runs against librdkafka's mock cluster (in memory, in this process): what
        # the client's idempotent producer costs by itself, the anchor for samsa's figure.
        with mock_cluster() as mock:
            runs = [
                transactions.run_producer(
                    mock, f"mock-{uuid.uuid4().hex[:8]}", size.produce_s, idempotent, pairing
                )
                for idempotent in [True, *order]
            ][1:]  # the first warms the cluster up
            for name in ("plain", "idempotent"):
                _keep(round_, f"mock_{name}", [r for r in runs if r.label == name])

    def txns(round_: dict[str, Any], reverse: bool) -> None:
        with broker_process(*settings) as broker:
            bootstrap = broker.bootstrap

            def idempotent() -> transactions.ProduceRun:
                def run(topic: str) -> transactions.ProduceRun:
                    return transactions.run_idempotent(bootstrap, topic, size.produce_s)

                return transactions.on_fresh_topic(broker, "idem", run)

            def transactional(interval: int) -> Callable[[], transactions.ProduceRun]:
                def run(topic: str) -> transactions.ProduceRun:
                    return transactions.run_transactional(
                        bootstrap, topic, size.produce_s, interval
                    )

                return lambda: transactions.on_fresh_topic(broker, f"txn{interval}", run)

            idempotent()  # warm-up, not measured
            order = INTERVALS_MS[::-1] if reverse else INTERVALS_MS
            bases, rated = transactions.bracketed(idempotent, [transactional(i) for i in order])
            _keep(round_, "txn_baseline", bases)
            for interval, (run_, ratio) in zip(order, rated, strict=True):
                _keep(round_, f"txn_{interval}", [run_])
                round_[f"txn_{interval}_ratio"] = ratio
                round_[f"txn_{interval}_commit_ms"] = run_.commit_ms
            topic, records = transactions.write_read_topic(bootstrap, size.read_topic_s)
            levels = ["read_uncommitted", "read_committed"]
            reads: dict[str, list[float]] = {level: [] for level in levels}
            for index in range(size.reads):
                for level in levels[::-1] if reverse != (index % 2 == 1) else levels:
                    seconds = transactions.consume_s(bootstrap, topic, level, records)
                    reads[level].append(records / seconds)
            for level, rates in reads.items():
                round_[f"{level}_records_per_s"] = statistics.median(rates)

    def stream_apps(round_: dict[str, Any], reverse: bool) -> None:
        order = ("at_least_once", "exactly_once")
        with broker_process(*settings) as broker:
            for guarantee in order[::-1] if reverse else order:
                result = streams.measure(broker, "stateless", guarantee, size.stream_records, 100)
                round_[f"streams_{guarantee}_records_per_s"] = result.records_per_s

    def payments(round_: dict[str, Any], reverse: bool) -> None:
        for mode in scenario.MODES[::-1] if reverse else scenario.MODES:
            outcome = scenario.run(mode, size.orders, 1, faults=False)
            if not outcome.completed:
                raise RuntimeError(f"payments {mode}: the pipeline did not finish")
            round_[f"payments_{mode}_per_s"] = outcome.payments_per_s

    return [
        ("plain vs idempotent producer", producers),
        ("transactions, consumers", txns),
        ("streams", stream_apps),
        ("payment pipeline", payments),
    ]


def _keep(round_: dict[str, Any], name: str, runs: list[Any]) -> None:
    """A round's figures of one kind of producer run: the mean rate and broker CPU per record
    of its runs there (`transactions.ProduceRun`s), and each run's rate in run order."""
    round_[f"{name}_runs_records_per_s"] = [r.records_per_s for r in runs]
    round_[f"{name}_records_per_s"] = statistics.mean(r.records_per_s for r in runs)
    cpu = [r.broker_us_per_record for r in runs if r.broker_us_per_record is not None]
    if cpu:  # none for the mock cluster, which runs in this process
        round_[f"{name}_broker_us_per_record"] = statistics.mean(cpu)


def measure(size: Size, show_progress: bool) -> dict[str, Any]:
    from samsa.bench.transactions import RECYCLING_SETTINGS

    load = os.getloadavg()[0]
    started = time.time()
    rounds: list[dict[str, Any]] = []
    work = steps(size)
    with _progress(show_progress, size.repeat * len(work)) as advance:
        for index in range(size.repeat):
            round_: dict[str, Any] = {}
            for description, step in work:
                advance(f"round {index + 1}/{size.repeat}: {description}")
                step(round_, index % 2 == 1)
            rounds.append(round_)
            advance(None)
    return {
        "size": size.__dict__,
        "load_average": [load, os.getloadavg()[0]],
        "nproc": os.cpu_count(),
        "seconds": time.time() - started,
        "broker_settings": list(RECYCLING_SETTINGS),
        "ratios": ratios(rounds),
        "broker_cpu_ratios": cpu_ratios(rounds),
        "mock_ratios": {
            "idempotent/plain": statistics.median(
                r["mock_idempotent_records_per_s"] / r["mock_plain_records_per_s"] for r in rounds
            )
        },
        "rounds": rounds,
    }


class _Bar:
    def __init__(self, show: bool, total: int) -> None:
        self._show = show
        self._total = total

    def __enter__(self) -> Callable[[str | None], None]:
        if not self._show:
            return lambda _description: None
        from rich.progress import Progress

        self._progress = Progress(transient=True)
        self._progress.start()
        task = self._progress.add_task("starting", total=self._total)
        pending = [False]

        def advance(description: str | None) -> None:
            if pending[0]:
                self._progress.advance(task)
            pending[0] = description is not None
            if description is not None:
                self._progress.update(task, description=description)

        return advance

    def __exit__(self, *_exc: object) -> None:
        if self._show:
            self._progress.stop()


def _progress(show: bool, total: int) -> _Bar:
    return _Bar(show, total)


def ratios(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """Each ratio per round, then the median over rounds (same-round ratios)."""

    def median(numerator: str, denominator: str) -> float:
        return statistics.median(float(r[numerator]) / float(r[denominator]) for r in rounds)

    out = {
        "idempotent/plain": median("idempotent_records_per_s", "plain_records_per_s"),
        "read_committed/read_uncommitted": median(
            "read_committed_records_per_s", "read_uncommitted_records_per_s"
        ),
        "streams exactly_once/at_least_once": median(
            "streams_exactly_once_records_per_s", "streams_at_least_once_records_per_s"
        ),
        "payments exactly-once/naive": median(
            "payments_exactly-once_per_s", "payments_naive_per_s"
        ),
    }
    for interval in INTERVALS_MS:
        out[f"txn {interval} ms/idempotent"] = statistics.median(
            float(r[f"txn_{interval}_ratio"]) for r in rounds
        )
    return out


def cpu_ratios(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """The broker's CPU time per record written, as the same ratios as the throughput's."""

    def median(numerator: str, denominator: str) -> float:
        return statistics.median(
            float(r[f"{numerator}_broker_us_per_record"])
            / float(r[f"{denominator}_broker_us_per_record"])
            for r in rounds
        )

    out = {"idempotent/plain": median("idempotent", "plain")}
    for interval in INTERVALS_MS:
        out[f"txn {interval} ms/idempotent"] = median(f"txn_{interval}", "txn_baseline")
    return out


# ----------------------------------------------------------------- reporting
def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="samsa bench guarantees: cost of each guarantee (same-round ratios)")
    table.add_column("comparison")
    table.add_column("ratio", justify="right")
    table.add_column("overhead", justify="right")
    table.add_column("broker CPU/record", justify="right")
    cpu = results["broker_cpu_ratios"]
    for name, ratio in results["ratios"].items():
        cpu_ratio = f"{cpu[name]:.3f}" if name in cpu else "-"
        table.add_row(name, f"{ratio:.3f}", f"{(1 - ratio) * 100:+.1f} %", cpu_ratio)
    console = Console()
    console.print(table)
    console.print(
        "librdkafka's mock cluster, same runs, same rounds: idempotent/plain"
        f" {results['mock_ratios']['idempotent/plain']:.3f}"
    )
    load = results["load_average"]
    console.print(
        f"{len(results['rounds'])} round(s), {results['seconds']:.0f} s; load average"
        f" {load[0]:.1f} -> {load[1]:.1f} on {results['nproc']} CPUs"
    )


def plot(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = results["ratios"]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    txn = [r[f"txn {i} ms/idempotent"] for i in INTERVALS_MS]
    axes.plot(INTERVALS_MS, txn, "o-", label="transactional producer (median of rounds)")
    for round_ in results["rounds"]:
        each = [round_[f"txn_{i}_ratio"] for i in INTERVALS_MS]
        axes.plot(INTERVALS_MS, each, ".", color="tab:blue", alpha=0.4)
    axes.axhline(1.0, color="grey", linestyle="--", label="idempotent producer (baseline)")
    axes.axhline(
        1 / r["idempotent/plain"], color="tab:green", linestyle=":", label="plain producer"
    )
    axes.plot([100], [r["streams exactly_once/at_least_once"]], "s", label="streams exactly_once")
    axes.axhline(0.97, color="tab:red", linewidth=0.8, label="article: 3 % overhead")
    axes.set_xscale("log")
    axes.set_xlabel("commit interval (ms)")
    axes.set_ylabel("throughput / baseline")
    axes.set_title("Throughput against commit interval, per guarantee")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(out / "throughput.png", dpi=100)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(7, 4.5))
    samples = [
        [ms for round_ in results["rounds"] for ms in round_[f"txn_{i}_commit_ms"]]
        for i in INTERVALS_MS
    ]
    axes.boxplot(samples, tick_labels=[f"{i} ms" for i in INTERVALS_MS], showfliers=True)
    axes.set_yscale("log")
    axes.set_xlabel("commit interval")
    axes.set_ylabel("commit_transaction() (ms)")
    axes.set_title("Commit latency per commit interval")
    figure.tight_layout()
    figure.savefig(out / "commit-latency.png", dpi=100)
    plt.close(figure)
