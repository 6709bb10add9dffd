"""`samsa verify`: a Jepsen-style workload against a broker under faults, and a checker.

    samsa verify --duration 60                   # samsa serve behind the chaos proxy, all faults
    samsa verify --duration 20 --json            # one JSON object on stdout
    samsa verify --bootstrap kafka:9092          # any cluster; only client crashes
    samsa verify --check history.jsonl           # check a kept history again

Exit status: 0 if no anomaly was found, 1 if one was, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import socket
from typing import Any

from samsa.progress import Progress
from samsa.usage import UsageError, positive_float
from samsa.verify import checker, runner
from samsa.verify.faults import ALL_FAULTS
from samsa.verify.history import HistoryError, load


def register(subparsers: Any) -> None:
    """Add the `verify` subcommand to the `samsa` parser; its handler is `args.handler`."""
    parser = subparsers.add_parser(
        "verify",
        help="run a Jepsen-style workload under faults and check the history",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=positive_float, default=60.0, help="seconds of workload")
    parser.add_argument("--seed", type=int, help="seed of the workload and faults")
    parser.add_argument(
        "--bootstrap", help="test this cluster instead of a samsa started for the run"
    )
    parser.add_argument(
        "--faults",
        default=",".join(ALL_FAULTS),
        help=f"comma-separated fault kinds (default all: {','.join(ALL_FAULTS)}; 'none')",
    )
    parser.add_argument(
        "--fault-interval", type=positive_float, default=3.0, help="mean seconds between faults"
    )
    parser.add_argument("--history", help="keep the history here (JSON lines)")
    parser.add_argument("--data-dir", help="the broker's data dir (default: a temporary one)")
    parser.add_argument("--check", metavar="HISTORY", help="only check a kept history")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--topic-prefix",
        metavar="PREFIX",
        help="name the run's topics, groups and transactional ids PREFIX-... "
        "(default: a fresh verify-<random> for every run)",
    )
    parser.add_argument(
        "--reuse-topics",
        action="store_true",
        help="run on PREFIX's topics although they exist; their earlier records are read "
        "and checked too",
    )
    parser.add_argument(
        "--group-protocol",
        choices=["classic", "consumer"],
        default="classic",
        help="the consumers' group protocol (consumer: KIP-848, the broker assigns)",
    )
    parser.set_defaults(handler=run)


BOOTSTRAP_CONNECT_TIMEOUT_S = 5.0


def _check_reachable(bootstrap: str) -> None:
    """A UsageError unless some broker of `bootstrap` accepts a connection: the workload
    would otherwise spend its topic-creation timeout finding out."""
    problems = []
    for address in (a.strip() for a in bootstrap.split(",") if a.strip()):
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise UsageError(f"--bootstrap: {address!r} is not HOST:PORT")
        try:
            socket.create_connection(
                (host.strip("[]"), int(port)), BOOTSTRAP_CONNECT_TIMEOUT_S
            ).close()
            return
        except OSError as exc:
            problems.append(f"{address}: {exc.strerror or exc}")
    raise UsageError(f"--bootstrap: cannot connect to {'; '.join(problems) or 'nothing'}")


def run(args: argparse.Namespace) -> int:
    if args.check:
        try:
            ops = load(args.check)
        except HistoryError as exc:
            raise UsageError(str(exc)) from None
        report = runner.report(ops, checker.check(ops))
    else:
        faults = tuple(f for f in args.faults.split(",") if f and f != "none")
        unknown = set(faults) - set(ALL_FAULTS)
        if unknown:
            raise UsageError(f"unknown fault kinds {sorted(unknown)}")
        if args.bootstrap:
            _check_reachable(args.bootstrap)
        options = runner.Options(
            duration_s=args.duration,
            seed=args.seed,
            faults=faults,
            fault_interval_s=args.fault_interval,
            target=runner.EXTERNAL if args.bootstrap else runner.SUBPROCESS,
            bootstrap=args.bootstrap,
            history_path=args.history,
            data_dir=args.data_dir,
            workload={"group_protocol": args.group_protocol},
            topic_prefix=args.topic_prefix,
            reuse_topics=args.reuse_topics,
        )
        with Progress.for_command(args.json) as progress:
            report = runner.run(options, progress)
    if args.json:
        print(json.dumps(report), flush=True)
    else:
        print(runner.table(report), flush=True)
    return 0 if report["valid"] else 1
