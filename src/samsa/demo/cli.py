"""`samsa demo ...`: each demonstration is a sub-subcommand.

    samsa demo guarantees [--records N] [--seed S] [--json] [--console [PORT]]
    samsa demo payments [--orders N] [--seed S] [--json] [--postgres URL] [--console [PORT]]

The demonstrations drive a real client (confluent-kafka, from the `clients` extra) against an
embedded broker; they are imported only when run, so `samsa serve` does not need the clients.
With --console, `samsa console` serves on PORT (8080) while the demo runs and follows its broker.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from typing import Any

from samsa.usage import UsageError

CONSOLE_PORT = 8080


def register(subparsers: Any) -> None:
    """Add the `demo` subcommand to the `samsa` parser."""
    parser = subparsers.add_parser(
        "demo",
        help="run a demonstration on an embedded broker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demos = parser.add_subparsers(dest="demo", required=True)
    guarantees = demos.add_parser(
        "guarantees",
        help="at-most-once, at-least-once and exactly-once under the same faults",
    )
    guarantees.add_argument("--records", type=_positive, default=None, metavar="N")
    guarantees.add_argument("--seed", type=int, default=None, metavar="S")
    guarantees.add_argument("--json", action="store_true", help="print one JSON object")
    payments = demos.add_parser(
        "payments", help="the payment system end to end under faults, audited, vs a naive consumer"
    )
    payments.add_argument("--orders", type=_positive, default=None, metavar="N")
    payments.add_argument("--seed", type=int, default=None, metavar="S")
    payments.add_argument("--json", action="store_true", help="print one JSON object")
    payments.add_argument("--postgres", default=None, metavar="URL", help="PostgreSQL, not SQLite")
    for demo in (guarantees, payments):
        demo.add_argument(
            "--console",
            type=int,
            nargs="?",
            const=CONSOLE_PORT,
            default=None,
            metavar="PORT",
            help=f"watch it in `samsa console` on PORT ({CONSOLE_PORT})",
        )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        if args.console is not None:
            from samsa.console.server import following_demos

            try:
                console = stack.enter_context(following_demos(args.console))
            except OSError as exc:
                raise UsageError(f"--console: cannot serve on port {args.console}: {exc}") from exc
            print(f"samsa demo: watch it at {console.url}", file=sys.stderr, flush=True)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        from samsa.demo import guarantees
    except ImportError as exc:
        print(
            f"samsa demo: needs the Kafka clients (pip install 'samsa[clients]'): {exc}",
            file=sys.stderr,
        )
        return 2
    if args.demo == "guarantees":
        records = guarantees.RECORDS_DEFAULT if args.records is None else args.records
        seed = guarantees.SEED_DEFAULT if args.seed is None else args.seed
        from samsa.demo import consumers

        return guarantees.main(
            records,
            seed,
            args.json,
            lambda bootstrap, progress: consumers.run(bootstrap, records, seed, progress),
        )
    if args.demo == "payments":
        from samsa.effects.db import postgres_problem
        from samsa.payments import demo as payments_demo

        problem = None if args.postgres is None else postgres_problem(args.postgres)
        if problem is not None:
            raise UsageError(f"--postgres {args.postgres}: {problem}")

        orders = payments_demo.ORDERS_DEFAULT if args.orders is None else args.orders
        seed = payments_demo.SEED_DEFAULT if args.seed is None else args.seed
        return payments_demo.main(orders, seed, args.json, args.postgres)
    return 2
