"""`samsa sim`: run the deterministic simulation over a range of seeds.

samsa sim --seeds 1000            # seeds 0..999
samsa sim --first 42 --seeds 1    # replay one seed
samsa sim --disk-faults           # also failing writes and fsyncs, and flipped bits
samsa sim --groups                # also consumer groups and transactional offset commits
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from typing import Any

from samsa.progress import QUIET, Progress
from samsa.sim import world
from samsa.usage import non_negative_int, positive_int

STEPS_DEFAULT = 300


def register(commands: Any) -> None:
    parser = commands.add_parser("sim", help="run the deterministic simulation of the broker")
    parser.add_argument("--seeds", type=positive_int, default=200, help="how many seeds")
    parser.add_argument("--first", type=non_negative_int, default=0, help="the first seed")
    parser.add_argument("--steps", type=positive_int, default=STEPS_DEFAULT, help="steps per seed")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--disk-faults",
        action="store_true",
        help="the disk fails writes and fsyncs and flips bits at rest (see samsa.sim.world)",
    )
    parser.add_argument(
        "--groups",
        action="store_true",
        help="add consumer-group members that commit offsets in transactions (invariant 7)",
    )


def simulate(
    first: int,
    seeds: int,
    steps: int,
    odds: world.Odds | None = None,
    groups: bool = False,
    progress: Progress = QUIET,
) -> dict[str, Any]:
    totals: dict[str, int] = {}
    failures: list[dict[str, Any]] = []
    started = time.monotonic()
    progress.phase(f"simulating {steps} steps per seed", total=seeds)
    for seed in range(first, first + seeds):
        progress.advance()
        simulated = world.run(seed, steps, odds, groups)
        for name, value in dataclasses.asdict(simulated.stats).items():
            totals[name] = totals.get(name, 0) + value
        anomalies = simulated.anomalies()
        if anomalies:
            failures.append(
                {"seed": seed, "anomalies": [dataclasses.asdict(a) for a in anomalies[:20]]}
            )
    return {
        "seeds": seeds,
        "first_seed": first,
        "steps_per_seed": steps,
        "totals": totals,
        "failed_seeds": [f["seed"] for f in failures],
        "failures": failures,
        "seconds": round(time.monotonic() - started, 1),
    }


def run(args: argparse.Namespace) -> int:
    # Recovery's WARNINGs (torn tails cut) and ERRORs (partitions offline) are what the
    # simulated crashes and faults are meant to cause: hundreds per run, not news.
    logging.getLogger("samsa").setLevel(logging.CRITICAL)
    odds = world.DISK_FAULTS if args.disk_faults else None
    with Progress.for_command(args.json) as progress:
        report = simulate(args.first, args.seeds, args.steps, odds, args.groups, progress)
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['seeds']} seeds from {report['first_seed']}, {report['steps_per_seed']} "
            f"steps each, {report['seconds']} s"
        )
        for name, value in report["totals"].items():
            print(f"  {name:<16} {value}")
        for failure in report["failures"]:
            print(
                f"seed {failure['seed']} FAILED (replay: samsa sim --first {failure['seed']} "
                "--seeds 1):",
                file=sys.stderr,
            )
            for anomaly in failure["anomalies"]:
                print(f"  {anomaly['kind']}: {anomaly['detail']}", file=sys.stderr)
        if not report["failures"]:
            print("no invariant violated")
    return 1 if report["failures"] else 0
