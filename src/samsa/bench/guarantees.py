"""`samsa bench guarantees`: what each delivery guarantee costs, measured in one run as ratios.

    samsa bench guarantees [--quick] [--out DIR] [--json]

Against `samsa serve` subprocesses (fresh temp data dirs, durable defaults), the guarantees
take turns within each round (in the reverse order every other round), and each ratio
compares figures of the same round, the median over rounds shown:

- plain vs idempotent producer (confluent-kafka, acks=all, 1 KB records, both at one request
  in flight as in `samsa.bench.idempotence`'s fair pairing): records/s;
- transactions committing every 10, 50, 100, 500 and 1000 ms vs the idempotent producer, each
  for the same time (`samsa.bench.transactions`), and the commit latencies of those runs;
- read_committed vs read_uncommitted consumers of what the 100 ms run wrote;
- the streams runtime, exactly_once vs at_least_once, a stateless app at a 100 ms commit
  interval (`samsa.bench.streams`);
- the payment pipeline with its idempotency layer (exactly-once) and without it (naive)
  (`samsa.payments.scenario`, no faults).

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
    produce_records: int  # plain vs idempotent: records per run
    stream_records: int
    orders: int  # payment pipeline
    repeat: int


FULL = Size(produce_s=5.0, produce_records=50_000, stream_records=50_000, orders=1000, repeat=3)
QUICK = Size(produce_s=1.0, produce_records=20_000, stream_records=5_000, orders=200, repeat=1)
TINY = Size(produce_s=0.2, produce_records=2_000, stream_records=300, orders=20, repeat=1)


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
    from samsa.bench.broker import broker_process
    from samsa.payments import scenario

    # Both at one request in flight: librdkafka's idempotent producer pipelines no further
    # (see `samsa.bench.idempotence`), so only idempotence differs.
    pairing = idempotence.PAIRINGS["max.in.flight=1 both"]

    def producers(round_: dict[str, Any], reverse: bool) -> None:
        order = [("plain", False), ("idempotent", True)]
        with broker_process() as broker:
            for name, idempotent in order[::-1] if reverse else order:
                config = {**idempotence.BASE_CONFIG, **pairing, "enable.idempotence": idempotent}
                seconds = idempotence.produce_s(broker.bootstrap, size.produce_records, config)
                round_[f"{name}_records_per_s"] = size.produce_records / seconds

    def txns(round_: dict[str, Any], reverse: bool) -> None:
        with broker_process() as broker:
            bootstrap = broker.bootstrap
            for interval in (0, *INTERVALS_MS)[::-1] if reverse else (0, *INTERVALS_MS):
                if interval == 0:  # the idempotent baseline
                    base = transactions.run_idempotent(bootstrap, _topic("idem"), size.produce_s)
                    round_["txn_baseline_records_per_s"] = base.records_per_s
                    continue
                topic = _topic(f"txn{interval}")
                run_ = transactions.run_transactional(bootstrap, topic, size.produce_s, interval)
                round_[f"txn_{interval}_records_per_s"] = run_.records_per_s
                round_[f"txn_{interval}_commit_ms"] = run_.commit_ms
                if interval == 100:
                    for isolation in ("read_uncommitted", "read_committed"):
                        seconds = transactions.consume_s(bootstrap, topic, isolation, run_.records)
                        round_[f"{isolation}_records_per_s"] = run_.records / seconds

    def stream_apps(round_: dict[str, Any], reverse: bool) -> None:
        order = ("at_least_once", "exactly_once")
        with broker_process() as broker:
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


def _topic(label: str) -> str:
    return f"bench-guarantees-{label}-{uuid.uuid4().hex[:8]}"


def measure(size: Size, show_progress: bool) -> dict[str, Any]:
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
        "ratios": ratios(rounds),
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
        out[f"txn {interval} ms/idempotent"] = median(
            f"txn_{interval}_records_per_s", "txn_baseline_records_per_s"
        )
    return out


# ----------------------------------------------------------------- reporting
def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="samsa bench guarantees: cost of each guarantee (same-round ratios)")
    table.add_column("comparison")
    table.add_column("ratio", justify="right")
    table.add_column("overhead", justify="right")
    for name, ratio in results["ratios"].items():
        table.add_row(name, f"{ratio:.3f}", f"{(1 - ratio) * 100:+.1f} %")
    console = Console()
    console.print(table)
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
    axes.plot(INTERVALS_MS, txn, "o-", label="transactional producer")
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
